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
// the alerts topic, of the alert-ids topic and of the pending log that
// hold the id, and the receipts and bindings of referenced alerts. The
// CLI uses it; the api role uses its materialised view, which folds the
// same records the same way.
type KafkaIndex struct{ R Reader }

// published returns the alert published under id and its record: the
// first authentic record of the alerts topic whose alert id is its key,
// as the fan-out and the view judge it; nil when the topic holds none.
func (k KafkaIndex) published(ctx context.Context, id string) (*alerts.Alert, kafka.Message, error) {
	var first *alerts.Alert
	var at kafka.Message
	err := k.R.ReadKeys(ctx, bus.TopicAlerts, []string{id}, func(m kafka.Message) error {
		if first != nil || !k.R.Authentic(m) {
			return nil
		}
		if a, err := alerts.Decode(m.Value); err == nil && a.ID == string(m.Key) {
			a.Normalize()
			first, at = a, m
		}
		return nil
	})
	if err != nil {
		return nil, kafka.Message{}, fmt.Errorf("read alerts: %w", err)
	}
	return first, at, nil
}

// Existing implements Index.
func (k KafkaIndex) Existing(ctx context.Context, id string) (*Existing, error) {
	ex := &Existing{}
	a, m, err := k.published(ctx, id)
	if err != nil {
		return nil, err
	}
	if a != nil {
		ex.Published = a.Digest()
		ex.IssuedBy, ex.ApprovedBy = a.IssuedBy, a.ApprovedBy
		ex.Partition, ex.Offset = m.Partition, m.Offset
	}
	b, err := k.binding(ctx, id)
	if err != nil {
		return nil, err
	}
	ex.Bind(b)
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

// binding returns the binding of id on the alert-ids topic: its first
// authentic binding, as the view keeps it (record.StepBinding); nil when
// there is none.
func (k KafkaIndex) binding(ctx context.Context, id string) (*record.Binding, error) {
	var first *record.Binding
	err := k.R.ReadKeys(ctx, bus.TopicAlertIDs, []string{id}, func(m kafka.Message) error {
		if first != nil {
			return nil
		}
		var rec *record.Binding
		if k.R.Authentic(m) {
			rec, _ = record.DecodeBinding(m.Key, m.Value)
		}
		if record.StepBinding(first, rec) == record.BindingBinds {
			first = rec
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read alert ids: %w", err)
	}
	return first, nil
}

// Held implements Index: read to the end of the alerts topic as of the
// call, an alert whose receipts exist and whose record is not there was
// deleted by retention. A record that is not the alert the receipts say
// was fanned out (ledger.Alert.IsRecord: a later record under the id
// survived) is gone too, as the view answers (view.View.Retained), so
// that the chain of a follow-up is traced through the alerts its partners
// received.
func (k KafkaIndex) Held(ctx context.Context, id string) (*alerts.Alert, error) {
	a, _, err := k.published(ctx, id)
	if err != nil {
		return nil, err
	}
	if a == nil {
		return nil, fmt.Errorf("alert %s: %w", id, ledger.ErrGone)
	}
	known, err := k.Lookup(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("alert %s as fanned out: %w", id, err)
	}
	if !known[id].IsRecord(a) {
		return nil, fmt.Errorf("alert %s: the record under its id is another alert: %w", id, ledger.ErrGone)
	}
	return a, nil
}

// Lookup implements Index: the receipts of the alerts ids, folded
// (ledger.FromBus), and, as the view answers, an alert whose alert receipt
// is gone (retention) while its binding on the alert-ids topic is held is
// known by the binding (ledger.BoundMeta, with the labels of its record
// while the alerts topic holds it). Without it the CLI took an alert it
// no longer had receipts of for one never fanned out, and a later record
// under its id (quarantined duplicate-id) for the alert (Held).
func (k KafkaIndex) Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error) {
	known, err := ledger.FromBus(k.R).Lookup(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if a := known[id]; a != nil && !a.FannedOut.IsZero() {
			continue
		}
		b, err := k.binding(ctx, id)
		if err != nil {
			return nil, err
		}
		if b == nil {
			continue
		}
		held, _, err := k.published(ctx, id)
		if err != nil {
			return nil, err
		}
		m := ledger.BoundMeta(b, held)
		if a := known[id]; a != nil {
			a.Meta = m
		} else {
			known[id] = ledger.Restore(m, nil, nil)
		}
	}
	return known, nil
}
