package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

// SubscriberStore writes partner records, endpoint states and partners'
// own keys and secrets (overlays) to the compacted subscribers topic and
// records each change of a record or endpoint state in the audit trail,
// for the API and the CLI alike.
type SubscriberStore struct {
	Bus   *bus.Bus
	Audit *audit.Log
	// Overlays, if set, is the registry the records put and deleted were
	// read from: a new record or a deletion also clears the overlays it
	// knows for the id beyond those of the record's own addresses and
	// webhooks (an address the record no longer lists). It is also the
	// registry a partner's change of its own key or secrets was made from
	// (SetKey, SetSecrets): the change takes its place after the last it
	// read (subscribers.KeyOverlay.Seq).
	Overlays OverlayIndex
}

// OverlayIndex is what the store needs of the registry to clear a
// partner's overlays and to place a partner's change of its own key or
// secrets. *subscribers.Registry satisfies it.
type OverlayIndex interface {
	// Record returns the partner's record as written, or nil.
	Record(id string) *subscribers.Subscriber
	// OverlayKeys returns the keys of every overlay held for subscriber.
	OverlayKeys(subscriber string) []string
	// NextKeySeq and NextSecretsSeq return the Seq of a partner's change
	// of its key for address, or of its secrets for the webhook url, made
	// from rec, its effective record, or subscribers.ErrOverlayChanged if
	// the registry no longer holds rec's key or secrets in force there.
	NextKeySeq(rec *subscribers.Subscriber, address string) (uint64, error)
	NextSecretsSeq(rec *subscribers.Subscriber, url string) (uint64, error)
}

// Put writes the records (validated by the caller), as actor, for reason
// (may be empty); prev returns the record as written that each replaces
// (nil for a new record; a nil prev treats every record as new), for the
// audit trail's list of changed fields and for the partner's own keys and
// secrets it replaces.
//
// A partner's own key for an address (or secrets for a webhook) stays in
// force over the record unless the record sets that address's key
// differently from prev (subscribers.ReplacedOverlays), which is the
// administrator's explicit choice: then, and for every address and
// webhook of a new record, the overlay is cleared (a tombstone written
// before the record), so that an administrator's copy read a moment ago
// never undoes the partner's newer key, and a partner later registered
// under an old id never inherits an old key or secret.
//
// Put sets each record's Incarnation (subscribers.Subscriber.Incarnation)
// before writing it, in the caller's record: prev's for a record it
// replaces, a new one otherwise. The caller's record is then the one
// written, and its Version the one a reader of the topic computes.
func (s SubscriberStore) Put(ctx context.Context, actor, reason string, subs []*subscribers.Subscriber, prev func(id string) *subscribers.Subscriber) error {
	msgs := make([]kafka.Message, len(subs))
	olds := make([]*subscribers.Subscriber, len(subs))
	var clear []string
	for i, sub := range subs {
		if prev != nil {
			olds[i] = prev(sub.ID)
		}
		// The record keeps the incarnation of the one it replaces; a new
		// record starts one (subscribers.Subscriber.Incarnation).
		if olds[i] != nil {
			sub.Incarnation = olds[i].Incarnation
		} else {
			inc, err := newIncarnation()
			if err != nil {
				return fmt.Errorf("subscriber %s: %w", sub.ID, err)
			}
			sub.Incarnation = inc
		}
		v, err := json.Marshal(sub)
		if err != nil {
			return fmt.Errorf("encode subscriber %s: %w", sub.ID, err)
		}
		msgs[i] = kafka.Message{Key: []byte(sub.ID), Value: v}
		clear = append(clear, subscribers.ReplacedOverlays(olds[i], sub)...)
		if olds[i] == nil && s.Overlays != nil {
			clear = append(clear, s.Overlays.OverlayKeys(sub.ID)...)
		}
	}
	if err := s.clearOverlays(ctx, clear); err != nil {
		return err
	}
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, msgs...); err != nil {
		return fmt.Errorf("write subscribers: %w", err)
	}
	for i, sub := range subs {
		old := olds[i]
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

// newIncarnation returns a new record incarnation (randomID).
func newIncarnation() (string, error) { return randomID("record incarnation") }

// randomID returns a new id, what it is for named in its error: 96
// random bits, base64url.
func randomID(what string) (string, error) {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new %s: %w", what, err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// clearOverlays writes a tombstone for each overlay key, each once,
// before the records that replace them.
func (s SubscriberStore) clearOverlays(ctx context.Context, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	msgs := make([]kafka.Message, len(keys))
	for i, k := range keys {
		msgs[i] = kafka.Message{Key: []byte(k)}
	}
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, msgs...); err != nil {
		return fmt.Errorf("clear partners' own keys and secrets: %w", err)
	}
	return nil
}

// Delete writes a tombstone for id, as actor, after tombstones for the
// partner's own keys and secrets: those of the record's addresses and
// webhooks, and every other one the Overlays registry knows.
func (s SubscriberStore) Delete(ctx context.Context, actor, id string) error {
	var clear []string
	if s.Overlays != nil {
		clear = s.Overlays.OverlayKeys(id)
		if rec := s.Overlays.Record(id); rec != nil {
			clear = append(clear, subscribers.ReplacedOverlays(nil, rec)...)
		}
	}
	if err := s.clearOverlays(ctx, clear); err != nil {
		return fmt.Errorf("delete subscriber %s: %w", id, err)
	}
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

// SetKey records pgpKey as the partner's own key for its address, as
// actor, as its own record (subscribers.KeyOverlay) beside the partner's
// record, which is never rewritten. written is the key the record as
// written held for the address when the key was made ("" for none): the
// key applies to rec's incarnation only, and only while the record still
// holds written (an administrator's replacement of it stands). rec is the partner's effective record the change was made from
// (its key for the address the one in force): the key takes its place
// after the last change of it the Overlays registry has read, and every
// registry ignores it if another change of the key comes first in the
// topic. If Overlays no longer holds rec's key in force, SetKey writes
// nothing and returns subscribers.ErrOverlayChanged. Without Overlays the
// key has no Seq and applies whatever comes before it, as keys written
// before Seq existed do. The caller checks the key, makes sure it is in
// force once written, and records the change in the audit trail.
func (s SubscriberStore) SetKey(ctx context.Context, actor string, rec *subscribers.Subscriber, address, written, pgpKey string, now time.Time) error {
	o := subscribers.KeyOverlay{Subscriber: rec.ID, Address: address, PGPKey: pgpKey, By: actor, At: now.UTC(),
		Incarnation: rec.Incarnation, Over: subscribers.PGPKeyDigest(written)}
	return s.RewriteKey(ctx, rec, o)
}

// SetSecrets records secrets as the partner's own secrets for its webhook
// url, as actor, as its own record (subscribers.SecretsOverlay) beside the
// partner's record, which is never rewritten. written are the secrets the
// record as written held for the webhook when the partner's list was
// made: the list applies to rec's incarnation only, and only while the
// record still holds written (an administrator's change of them stands).
// rec is the partner's effective record the list was made from, its
// secrets for the webhook the ones in force: as for SetKey, the list
// takes its place after the last change of them the Overlays registry
// has read, or is not written (subscribers.ErrOverlayChanged) if that
// registry no longer holds rec's. The caller checks the secrets, makes
// sure they are in force once written, and records the change in the
// audit trail.
func (s SubscriberStore) SetSecrets(ctx context.Context, actor string, rec *subscribers.Subscriber, url string, written, secrets []string, now time.Time) error {
	o := subscribers.SecretsOverlay{Subscriber: rec.ID, URL: url, Secrets: secrets, By: actor, At: now.UTC(),
		Incarnation: rec.Incarnation, Over: subscribers.SecretsDigest(written)}
	return s.RewriteSecrets(ctx, rec, o)
}

// RewriteKey writes o, the partner's own key the Overlays registry holds
// for o's address, again exactly as it is (its key, By, At, Incarnation
// and Over), placed after the last change of it that registry has read
// (NextKeySeq, made from rec, the partner's effective record: nothing is
// written, subscribers.ErrOverlayChanged, if it no longer holds rec's
// key): a change that changes nothing (api settle). SetKey writes a new
// key through it.
func (s SubscriberStore) RewriteKey(ctx context.Context, rec *subscribers.Subscriber, o subscribers.KeyOverlay) error {
	if s.Overlays != nil {
		seq, err := s.Overlays.NextKeySeq(rec, o.Address)
		if err != nil {
			return fmt.Errorf("the partner's own key of %s: %w", rec.ID, err)
		}
		o.Seq = seq
	}
	return s.writeOverlay(ctx, subscribers.KeyOverlayKey(o.Subscriber, o.Address), o, "key of "+rec.ID)
}

// RewriteSecrets is RewriteKey for o, the partner's own secrets the
// Overlays registry holds for o's webhook.
func (s SubscriberStore) RewriteSecrets(ctx context.Context, rec *subscribers.Subscriber, o subscribers.SecretsOverlay) error {
	if s.Overlays != nil {
		seq, err := s.Overlays.NextSecretsSeq(rec, o.URL)
		if err != nil {
			return fmt.Errorf("the partner's own webhook secrets of %s: %w", rec.ID, err)
		}
		o.Seq = seq
	}
	return s.writeOverlay(ctx, subscribers.SecretsOverlayKey(o.Subscriber, o.URL), o, "webhook secrets of "+rec.ID)
}

// writeOverlay writes one overlay, what, under key.
func (s SubscriberStore) writeOverlay(ctx context.Context, key string, o any, what string) error {
	v, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encode the partner's own %s: %w", what, err)
	}
	if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, kafka.Message{Key: []byte(key), Value: v}); err != nil {
		return fmt.Errorf("write the partner's own %s: %w", what, err)
	}
	return nil
}
