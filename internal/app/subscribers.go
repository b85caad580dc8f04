package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

// SubscriberStore writes partner records and endpoint states to the
// compacted subscribers topic and records each change in the audit trail,
// for the API and the CLI alike.
type SubscriberStore struct {
	Bus   *bus.Bus
	Audit *audit.Log
}

// Put writes the records (validated by the caller), as actor, for reason
// (may be empty); prev returns the record each replaces, for the audit
// trail's list of changed fields.
func (s SubscriberStore) Put(ctx context.Context, actor, reason string, subs []*subscribers.Subscriber, prev func(id string) *subscribers.Subscriber) error {
	msgs := make([]kafka.Message, len(subs))
	for i, sub := range subs {
		v, err := json.Marshal(sub)
		if err != nil {
			return fmt.Errorf("encode subscriber %s: %w", sub.ID, err)
		}
		msgs[i] = kafka.Message{Key: []byte(sub.ID), Value: v}
	}
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, msgs...); err != nil {
		return fmt.Errorf("write subscribers: %w", err)
	}
	for _, sub := range subs {
		var old *subscribers.Subscriber
		if prev != nil {
			old = prev(sub.ID)
		}
		details := map[string]any{"changed": subscribers.Changed(old, sub)}
		if old == nil {
			details["created"] = true
		}
		if err := s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionSubscriberPut,
			Object: "subscriber:" + sub.ID, Reason: reason, Details: details}); err != nil {
			return err
		}
	}
	return nil
}

// Delete writes a tombstone for id, as actor.
func (s SubscriberStore) Delete(ctx context.Context, actor, id string) error {
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, kafka.Message{Key: []byte(id)}); err != nil {
		return fmt.Errorf("delete subscriber %s: %w", id, err)
	}
	return s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionSubscriberDelete, Object: "subscriber:" + id})
}

// SetEndpoint records the state of one endpoint of a partner (an
// administrator re-enabling a webhook that answered 410 Gone, or disabling
// one), as its own record: the partner's record is never rewritten.
func (s SubscriberStore) SetEndpoint(ctx context.Context, actor, subscriber, url string, disabled bool, reason string, now time.Time) error {
	st := subscribers.EndpointState{Subscriber: subscriber, URL: url, Disabled: disabled, Reason: reason, By: actor, At: now.UTC()}
	v, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, kafka.Message{Key: []byte(subscribers.EndpointKey(subscriber, url)), Value: v}); err != nil {
		return fmt.Errorf("write endpoint state of %s: %w", subscriber, err)
	}
	action := record.ActionEndpointEnable
	if disabled {
		action = record.ActionEndpointDisable
	}
	return s.Audit.Record(ctx, record.Audit{Actor: actor, Action: action, Object: "subscriber:" + subscriber,
		Reason: reason, Details: map[string]any{"endpoint": subscribers.RedactURL(url)}})
}
