package deliver

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// ReasonReplayed is the reason of the pending receipt Replay writes.
const ReasonReplayed = "replayed"

// TopicReader reads a whole topic; *bus.Bus satisfies it.
type TopicReader interface {
	ReadAll(ctx context.Context, topic string, fn func(kafka.Message) error) error
}

// ReplayBus is what Replay needs of Kafka; *bus.Bus satisfies it.
type ReplayBus interface {
	TopicReader
	Producer(topic string) *bus.Producer
}

// DeadFilter selects dead letters; empty fields match everything.
type DeadFilter struct {
	// Subscriber is a subscriber id.
	Subscriber string
	// Alert is an alert id.
	Alert string
}

func (f DeadFilter) match(d *DeadLetter) bool {
	if d.Job == nil {
		return f.Subscriber == "" && f.Alert == ""
	}
	return (f.Subscriber == "" || d.Job.Subscriber == f.Subscriber) &&
		(f.Alert == "" || (d.Job.Alert != nil && d.Job.Alert.ID == f.Alert))
}

// DeadLetter is one record of the dead topic.
type DeadLetter struct {
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	// Reason is why the job is dead (a delivery.Reason… constant).
	Reason string `json:"reason"`
	// Error is the last error.
	Error string `json:"error,omitempty"`
	// Job is the dead job with its attempt history; nil when the record
	// could not be decoded (Reason is then "invalid" and Raw holds it).
	Job *delivery.Job `json:"job,omitempty"`
	// Raw is the record's value when it is not a job.
	Raw []byte `json:"raw,omitempty"`
}

// ListDead returns the dead letters that match filter, in topic order
// (partition by partition, oldest first).
func ListDead(ctx context.Context, b TopicReader, filter DeadFilter) ([]DeadLetter, error) {
	var out []DeadLetter
	err := b.ReadAll(ctx, bus.TopicDead, func(m kafka.Message) error {
		d := DeadLetter{Partition: m.Partition, Offset: m.Offset, Time: m.Time,
			Reason: bus.Header(m, HeaderReason), Error: bus.Header(m, HeaderError)}
		if job, err := delivery.DecodeJob(m.Value, nil); err == nil {
			d.Job = job
		} else {
			d.Raw = m.Value
		}
		if d.Error == "" && d.Job != nil && len(d.Job.History) > 0 {
			d.Error = d.Job.History[len(d.Job.History)-1].Error
		}
		if filter.match(&d) {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// Replay re-queues the dead jobs that match filter to the deliveries
// topic, with their attempt count reset and their history kept, and writes
// a pending receipt (reason "replayed") for each. It returns how many it
// re-queued.
//
// A delivery is replayed only while its latest outcome receipt is dead or
// disabled (or it has none): a delivery that was delivered, or replayed and
// not dead again, since it was dead-lettered is skipped, so that running
// Replay twice sends nothing twice. Of several dead letters of one
// delivery, the latest is replayed. Undecodable records are never
// replayed. An endpoint disabled by 410 Gone stays disabled: its jobs are
// withheld at delivery time until an administrator re-enables it.
func Replay(ctx context.Context, b ReplayBus, filter DeadFilter, now time.Time) (int, error) {
	dead, err := ListDead(ctx, b, filter)
	if err != nil {
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	latest := make(map[string]*delivery.Job)
	var order []string
	for _, d := range dead {
		if d.Job == nil {
			continue
		}
		if _, ok := latest[d.Job.ID]; !ok {
			order = append(order, d.Job.ID)
		}
		latest[d.Job.ID] = d.Job
	}
	if len(order) == 0 {
		return 0, nil
	}
	state := make(map[string]string)
	err = b.ReadAll(ctx, bus.TopicReceipts, func(m kafka.Message) error {
		var rc delivery.Receipt
		if json.Unmarshal(m.Value, &rc) != nil || rc.Kind != delivery.KindOutcome {
			return nil
		}
		if _, ok := latest[rc.DeliveryID]; ok {
			state[rc.DeliveryID] = rc.State
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("replay dead letters: read receipts: %w", err)
	}
	var jobs, receipts []kafka.Message
	for _, id := range order {
		if s, ok := state[id]; ok && s != delivery.StateDead && s != delivery.StateDisabled {
			continue
		}
		j := *latest[id]
		j.Attempt = 0
		j.NotBefore = time.Time{}
		v, err := j.Encode()
		if err != nil {
			return 0, fmt.Errorf("replay dead letters: encode job %s: %w", id, err)
		}
		jobs = append(jobs, kafka.Message{Key: []byte(j.Subscriber), Value: v})
		rv, err := json.Marshal(delivery.Receipt{Kind: delivery.KindOutcome, AlertID: j.Alert.ID, DeliveryID: j.ID,
			Subscriber: j.Subscriber, Channel: j.Channel, Target: j.Target, State: delivery.StatePending,
			Reason: ReasonReplayed, At: now})
		if err != nil {
			return 0, fmt.Errorf("replay dead letters: encode receipt %s: %w", id, err)
		}
		receipts = append(receipts, kafka.Message{Key: []byte(j.Alert.ID), Value: rv})
	}
	// Jobs first: a receipt never claims a replay that is not queued.
	if err := b.Producer(bus.TopicDeliveries).Write(ctx, jobs...); err != nil {
		return 0, fmt.Errorf("replay dead letters: %w", err)
	}
	if err := b.Producer(bus.TopicReceipts).Write(ctx, receipts...); err != nil {
		return len(jobs), fmt.Errorf("replay dead letters: jobs re-queued, receipts not written: %w", err)
	}
	return len(jobs), nil
}
