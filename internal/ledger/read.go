package ledger

import (
	"context"
	"fmt"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/segmentio/kafka-go"
)

// Reader reads the messages with the given keys from a topic, from the
// first offset to the high watermark as of the call, and tells which were
// written by Herald; *bus.Bus satisfies it.
type Reader interface {
	ReadKeys(ctx context.Context, topic string, keys []string, fn func(kafka.Message) error) error
	Authentic(m kafka.Message) bool
}

// Source answers ledger questions by reading the receipts topic.
type Source struct{ r Reader }

// FromBus returns a Source reading receipts through r.
func FromBus(r Reader) *Source { return &Source{r: r} }

// Lookup folds the receipts of the alerts with the given ids. Alerts with
// no receipts are absent from the result.
func (s *Source) Lookup(ctx context.Context, ids []string) (map[string]*Alert, error) {
	l := New()
	err := s.r.ReadKeys(ctx, bus.TopicReceipts, ids, func(m kafka.Message) error {
		if !s.r.Authentic(m) {
			return nil // not Herald's receipts: skip them
		}
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		if err != nil {
			return nil // not receipts of this key's alert: skip the record, as the view does
		}
		for _, r := range rs {
			l.Add(r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read receipts: %w", err)
	}
	out := map[string]*Alert{}
	for _, id := range ids {
		if a := l.Alert(id); a != nil {
			out[id] = a
		}
	}
	return out, nil
}
