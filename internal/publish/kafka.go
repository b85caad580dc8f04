package publish

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
)

// Reader is what KafkaIndex needs of the bus; *bus.Bus satisfies it.
type Reader interface {
	ReadKeys(ctx context.Context, topic string, keys []string, fn func(kafka.Message) error) error
	Authentic(m kafka.Message) bool
}

// KafkaIndex answers Index questions by reading Kafka: the partition of
// the alerts topic and of the pending log that hold the id, and the
// receipts of referenced alerts. The CLI uses it; the api role uses its
// materialised view, which folds the same records the same way.
type KafkaIndex struct{ R Reader }

// Existing implements Index.
func (k KafkaIndex) Existing(ctx context.Context, id string) (*Existing, error) {
	ex := &Existing{}
	err := k.R.ReadKeys(ctx, bus.TopicAlerts, []string{id}, func(m kafka.Message) error {
		if ex.Published != "" || !k.R.Authentic(m) {
			return nil
		}
		// The first authentic record whose alert id is its key, as the
		// fan-out and the view judge it.
		if a, err := alerts.Decode(m.Value); err == nil && a.ID == string(m.Key) {
			a.Normalize()
			ex.Published = a.Digest()
			ex.IssuedBy, ex.ApprovedBy = a.IssuedBy, a.ApprovedBy
			ex.Partition, ex.Offset = m.Partition, m.Offset
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	err = k.R.ReadKeys(ctx, bus.TopicPending, []string{id}, func(m kafka.Message) error {
		var ev record.Release
		if !k.R.Authentic(m) || json.Unmarshal(m.Value, &ev) != nil || ev.ID != id {
			return nil
		}
		ex.Release.Apply(ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read pending alerts: %w", err)
	}
	if ex.Published == "" && ex.Release.Submitted == nil {
		return nil, nil
	}
	return ex, nil
}

// Lookup implements Index.
func (k KafkaIndex) Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error) {
	return ledger.FromBus(k.R).Lookup(ctx, ids)
}
