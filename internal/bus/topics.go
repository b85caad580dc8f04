package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/config"
)

// Topic describes one of Herald's topics: its name (without prefix) and how
// long it must keep its records.
type Topic struct {
	Name string
	// Compacted topics keep the latest record of every key for ever.
	Compacted bool
	// Retention is how long records are kept (retention.ms) when not
	// compacted.
	Retention time.Duration
	// Key names the configuration key of the retention.
	Key string
}

// Topics returns Herald's topics with the retention cfg asks for each,
// for retryTiers retry tiers (PRODUCT.md §6).
func Topics(cfg config.Kafka, retryTiers int) []Topic {
	r := cfg.Retention
	ts := []Topic{
		{Name: TopicAlerts, Retention: r.Alerts, Key: "kafka.retention.alerts"},
		{Name: TopicSubscribers, Compacted: true},
		{Name: TopicDeliveries, Retention: r.Deliveries, Key: "kafka.retention.deliveries"},
		{Name: TopicDead, Retention: r.Dead, Key: "kafka.retention.dead"},
		{Name: TopicQuarantine, Retention: r.Quarantine, Key: "kafka.retention.quarantine"},
		{Name: TopicReceipts, Retention: r.Receipts, Key: "kafka.retention.receipts"},
		{Name: TopicPending, Retention: r.Pending, Key: "kafka.retention.pending"},
		{Name: TopicAudit, Retention: r.Audit, Key: "kafka.retention.audit"},
		{Name: TopicAlertIDs, Compacted: true},
	}
	for i := range retryTiers {
		ts = append(ts, Topic{Name: RetryTopic(i), Retention: r.Retry, Key: "kafka.retention.retry"})
	}
	return ts
}

// configEntries are the topic configs Herald sets when it creates t. A
// topic that deletes by time also sets retention.bytes to -1, so that a
// broker's log.retention.bytes never deletes records younger than its
// retention.
func (t Topic) configEntries() []kafka.ConfigEntry {
	if t.Compacted {
		return []kafka.ConfigEntry{{ConfigName: "cleanup.policy", ConfigValue: "compact"}}
	}
	return []kafka.ConfigEntry{
		{ConfigName: "cleanup.policy", ConfigValue: "delete"},
		{ConfigName: "retention.ms", ConfigValue: strconv.FormatInt(t.Retention.Milliseconds(), 10)},
		{ConfigName: "retention.bytes", ConfigValue: "-1"},
	}
}

// EnsureTopics makes sure Herald's topics exist: the fixed topics and
// retryTiers retry topics. With kafka.create_topics it creates the missing
// ones through the admin API, each with the retention it needs (the
// subscribers and alert-ids topics compacted), and waits until every broker's metadata
// shows them with a leader for every partition; otherwise it only checks
// and names the missing ones. Topics that exist are never changed: check
// them with CheckRetentionOf.
func (b *Bus) EnsureTopics(ctx context.Context, retryTiers int) error {
	if retryTiers < 0 {
		return fmt.Errorf("ensure kafka topics: negative retry tier count %d", retryTiers)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, time.Minute, errors.New("ensure kafka topics: not done within 1m"))
	defer cancel()
	topics := Topics(b.cfg, retryTiers)
	var want []string
	byName := map[string]Topic{}
	for _, t := range topics {
		want = append(want, b.Topic(t.Name))
		byName[b.Topic(t.Name)] = t
	}
	missing, err := b.missingTopics(ctx, want)
	if err != nil {
		return fmt.Errorf("ensure kafka topics: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	if !b.cfg.CreateTopics {
		return fmt.Errorf("ensure kafka topics: missing %s and kafka.create_topics is off", strings.Join(missing, ", "))
	}
	rf := b.cfg.ReplicationFactor
	if rf < 1 && b.Embedded() {
		rf = 1
	}
	req := &kafka.CreateTopicsRequest{}
	for _, name := range missing {
		req.Topics = append(req.Topics, kafka.TopicConfig{Topic: name, NumPartitions: b.cfg.Partitions,
			ReplicationFactor: rf, ConfigEntries: byName[name].configEntries()})
	}
	res, err := b.client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("ensure kafka topics: create %s: %w", strings.Join(missing, ", "), cause(ctx, err))
	}
	for _, t := range missing {
		if err := res.Errors[t]; err != nil && !errors.Is(err, kafka.TopicAlreadyExists) {
			return fmt.Errorf("ensure kafka topics: create %s: %w", t, err)
		}
	}
	b.log.Info("created kafka topics", "topics", missing, "partitions", b.cfg.Partitions, "replication_factor", rf)
	for {
		missing, err = b.missingTopics(ctx, want)
		if err == nil && len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("still missing %s", strings.Join(missing, ", "))
			}
			return fmt.Errorf("ensure kafka topics: wait for metadata: %w", cause(ctx, err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TopicConfig is what the brokers report of one topic's retention.
type TopicConfig struct {
	// Compacted reports cleanup.policy including compact.
	Compacted bool
	// Deletes reports cleanup.policy including delete.
	Deletes bool
	// Retention is retention.ms; negative means for ever.
	Retention time.Duration
	// Bytes is retention.bytes, the size of a partition beyond which a
	// deleting topic deletes its oldest segments; negative means no limit.
	Bytes int64
}

// DescribeTopics reads the retention settings of topics (given without
// prefix) through the admin API.
func (b *Bus) DescribeTopics(ctx context.Context, topics []string) (map[string]TopicConfig, error) {
	ctx, cancel := withTimeout(ctx, "describe kafka topics")
	defer cancel()
	req := &kafka.DescribeConfigsRequest{}
	for _, t := range topics {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: b.Topic(t),
			ConfigNames: []string{"cleanup.policy", "retention.ms", "retention.bytes"},
		})
	}
	res, err := b.client.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe kafka topics: %w", cause(ctx, err))
	}
	out := make(map[string]TopicConfig, len(topics))
	for _, r := range res.Resources {
		name := strings.TrimPrefix(r.ResourceName, b.cfg.TopicPrefix)
		if errors.Is(r.Error, kafka.UnknownTopicOrPartition) {
			// A deployment that creates its topics by hand, upgraded to a
			// release that needs one more (alert-ids, say).
			return nil, fmt.Errorf("kafka topic %s does not exist: Herald creates its topics at start only with kafka.create_topics on; create it as the operator guide's topics table says: %w", r.ResourceName, r.Error)
		}
		if r.Error != nil {
			return nil, fmt.Errorf("describe kafka topic %s: %w", r.ResourceName, r.Error)
		}
		tc := TopicConfig{Retention: 7 * 24 * time.Hour, Deletes: true, Bytes: -1} // Kafka's defaults
		for _, e := range r.ConfigEntries {
			switch e.ConfigName {
			case "cleanup.policy":
				policies := strings.Split(e.ConfigValue, ",")
				tc.Compacted = slices.Contains(policies, "compact")
				tc.Deletes = slices.Contains(policies, "delete")
			case "retention.ms":
				ms, err := strconv.ParseInt(e.ConfigValue, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("describe kafka topic %s: retention.ms %q: %w", r.ResourceName, e.ConfigValue, err)
				}
				if ms < 0 {
					tc.Retention = -1
				} else {
					tc.Retention = time.Duration(ms) * time.Millisecond
				}
			case "retention.bytes":
				n, err := strconv.ParseInt(e.ConfigValue, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("describe kafka topic %s: retention.bytes %q: %w", r.ResourceName, e.ConfigValue, err)
				}
				tc.Bytes = max(n, -1)
			}
		}
		out[name] = tc
	}
	for _, t := range topics {
		if _, ok := out[t]; !ok {
			return nil, fmt.Errorf("describe kafka topic %s: missing from the answer", b.Topic(t))
		}
	}
	return out, nil
}

// RetentionError says that topics keep records for less time than the
// configuration asks.
type RetentionError struct {
	Problems []string
}

func (e *RetentionError) Error() string {
	return "kafka topics keep records for too short a time: " + strings.Join(e.Problems, "; ") +
		" (or set kafka.retention.accept_shorter: true to accept losing older records)"
}

// CheckRetentionOf reads the retention of the topics several readers read
// (the roles of one process, say): groups maps each reader to the topics
// it reads (names without prefix, among Topics). It reads the
// configuration of every topic once, and returns a *RetentionError for
// each group that reads a topic keeping records for less time than
// configured, or not compacted when it must be, naming that group's
// topics with both durations, in the group's order; groups whose topics
// are all right are absent. With kafka.retention.accept_shorter each
// problem is logged once as a warning and no group fails. The error is
// for topics it could not describe, or a name that is not one of Herald's
// topics.
func (b *Bus) CheckRetentionOf(ctx context.Context, groups map[string][]string, retryTiers int) (map[string]error, error) {
	want := map[string]Topic{}
	for _, t := range Topics(b.cfg, retryTiers) {
		want[t.Name] = t
	}
	var names []string // every group's topics, once, in a stable order
	for _, g := range slices.Sorted(maps.Keys(groups)) {
		for _, n := range groups[g] {
			if _, ok := want[n]; !ok {
				return nil, fmt.Errorf("check retention: %s is not one of Herald's topics", n)
			}
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	got, err := b.DescribeTopics(ctx, names)
	if err != nil {
		return nil, err
	}
	problem := map[string]string{} // topic → what is wrong with it
	for _, n := range names {
		t, g := want[n], got[n]
		switch {
		case t.Compacted && !g.Compacted:
			problem[n] = fmt.Sprintf("%s is not compacted (cleanup.policy=compact), so its records expire after %s", b.Topic(n), g.Retention)
		case t.Compacted && g.Deletes && g.Retention >= 0:
			// A partner's latest record, its tombstone and its overlays
			// must stay for as long as the partner may be asked about.
			problem[n] = fmt.Sprintf("%s also deletes records older than %s (cleanup.policy=compact,delete), so a partner's latest record goes with them; set cleanup.policy=compact", b.Topic(n), days(g.Retention))
		case t.Compacted && g.Deletes && g.Bytes >= 0:
			problem[n] = fmt.Sprintf("%s also deletes its oldest records beyond %d bytes a partition (cleanup.policy=compact,delete, retention.bytes), so a partner's latest record goes with them; set cleanup.policy=compact", b.Topic(n), g.Bytes)
		case t.Compacted:
		case g.Compacted:
			// compact,delete too: compaction keeps only the latest
			// record of each key whatever the deletion keeps.
			problem[n] = fmt.Sprintf("%s is compacted: it keeps only the latest record of each key, and %s needs every record for %s; set cleanup.policy=delete", b.Topic(n), n, days(t.Retention))
		case g.Retention >= 0 && g.Retention < t.Retention:
			problem[n] = fmt.Sprintf("%s keeps records for %s, %s asks for %s; raise its retention.ms", b.Topic(n), days(g.Retention), t.Key, days(t.Retention))
		case g.Bytes >= 0:
			problem[n] = fmt.Sprintf("%s deletes its oldest records beyond %d bytes a partition (retention.bytes), whatever their age, and %s asks to keep them %s; set retention.bytes=-1", b.Topic(n), g.Bytes, t.Key, days(t.Retention))
		}
	}
	if len(problem) == 0 {
		return nil, nil
	}
	if b.cfg.Retention.AcceptShorter {
		for _, n := range names {
			if p, ok := problem[n]; ok {
				b.log.Warn("kafka topic retention shorter than configured, accepted by kafka.retention.accept_shorter", "problem", p)
			}
		}
		return nil, nil
	}
	failed := map[string]error{}
	for g, ns := range groups {
		var problems []string
		for _, n := range ns {
			if p, ok := problem[n]; ok && !slices.Contains(problems, p) {
				problems = append(problems, p)
			}
		}
		if len(problems) > 0 {
			failed[g] = &RetentionError{Problems: problems}
		}
	}
	return failed, nil
}

// days renders a duration in days when it is a whole number of them.
func days(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// RetiredRetryTiers returns, in order, the tiers from retryTiers on whose
// retry topics exist: those of a longer delivery.retry_schedule configured
// before, where jobs may still wait for their time. Nothing else reads
// them, so the deliver role reads them until they are empty.
func (b *Bus) RetiredRetryTiers(ctx context.Context, retryTiers int) ([]int, error) {
	ctx, cancel := withTimeout(ctx, "list retired retry topics")
	defer cancel()
	md, err := b.client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("list retired retry topics: %w", cause(ctx, err))
	}
	prefix := b.Topic(RetryTopic(0))
	prefix = prefix[:len(prefix)-1]
	var tiers []int
	for _, t := range md.Topics {
		rest, ok := strings.CutPrefix(t.Name, prefix)
		if !ok || t.Error != nil {
			continue
		}
		n, err := strconv.Atoi(rest)
		if err != nil || n < retryTiers || b.Topic(RetryTopic(n)) != t.Name {
			continue
		}
		tiers = append(tiers, n)
	}
	slices.Sort(tiers)
	return tiers, nil
}
