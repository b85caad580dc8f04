package bus

import "fmt"

// Topic names without the configured prefix (PRODUCT.md §6).
const (
	// TopicAlerts carries published alerts, keyed by alert id.
	TopicAlerts = "alerts"
	// TopicSubscribers carries subscriber records, keyed by subscriber id;
	// compacted, and an empty value (tombstone) deletes the subscriber.
	TopicSubscribers = "subscribers"
	// TopicDeliveries carries delivery jobs, keyed by subscriber id: a
	// record holds one job, or packs jobs of one alert for partners whose
	// ids go to its partition, keyed by one of them (delivery.PackJobs).
	TopicDeliveries = "deliveries"
	// TopicDead carries jobs that failed for good, keyed by subscriber id.
	TopicDead = "dead"
	// TopicQuarantine carries invalid or forbidden messages found on the
	// alerts topic, with the original key and value.
	TopicQuarantine = "quarantine"
	// TopicReceipts carries every decision and delivery attempt, keyed by
	// alert id.
	TopicReceipts = "receipts"
	// TopicPending carries the release log of alerts that wait for a
	// second analyst (submitted, rejected), keyed by alert id.
	TopicPending = "pending"
	// TopicAudit carries the audit trail: who did what, when, keyed by the
	// object acted on.
	TopicAudit = "audit"
	// TopicAlertIDs binds every alert id the fan-out fanned out to the
	// content it names (record.Binding), keyed by alert id; compacted, so
	// that "an id names one alert forever" outlives the retention of the
	// alerts and receipts topics. The fan-out is its only writer.
	TopicAlertIDs = "alert-ids"
)

// RetryTopic returns the name (without prefix) of the retry topic for tier,
// the index of the wait in the retry schedule: "retry.0", "retry.1", …
func RetryTopic(tier int) string { return fmt.Sprintf("retry.%d", tier) }
