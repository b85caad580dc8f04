package app

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/audit"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
)

// BindingStore re-signs the compacted alert-ids topic after a rotation of
// the publishing key: every binding stays signed with the key that wrote
// it, and the topic deletes nothing by time, so once that key is removed
// every reader skips the binding and forgets the id (a different alert
// under it would be fanned out with the old alert's delivery ids).
type BindingStore struct {
	Bus   *bus.Bus
	Audit *audit.Log
}

// BindingSigners is what ScanBindings read: the binding in force of each
// id of the alert-ids topic, the key that signed it, and the first
// binding under the id signed with the keyring's first key.
type BindingSigners struct {
	keys *busauth.Keyring
	ids  map[string]*boundID
}

// boundID is the binding in force of one id, where it lies and who signed
// it, what the first key signed under the id, and who signed the latest
// record under it.
type boundID struct {
	partition  int
	key, value []byte
	digest     string
	signer     string
	// firstDigest is the digest of the first binding under the id signed
	// with the keyring's first key ("" if none): the binding every reader
	// holds once the other keys are removed.
	firstDigest string
	// last is the key that signed the latest record under the id when
	// that record binds the id to digest (the binding or a copy of it),
	// "" when it is anything else (it displaces the binding). Compaction
	// keeps the latest record alone: once it has run, only last's key
	// verifies the binding.
	last string
}

// keeper returns the key of the keyring that keeps b's binding once the
// others are removed and the topic compacted (the one Use counts it
// under), and whether the first key signed a binding to another digest
// under the id after it (BindingUse.Conflicting): then no copy can keep
// it.
func (b *boundID) keeper(first string) (key string, conflicting bool) {
	switch {
	case b.firstDigest != "" && b.firstDigest != b.digest:
		return b.signer, true
	case b.last != "":
		return b.last, false
	case b.firstDigest == b.digest:
		// Displaced: the fan-out's self-heal writes the binding again
		// (App.keepBindings); until then the first key's copy keeps
		// it.
		return first, false
	default:
		return b.signer, false
	}
}

// BindingUse is how many bindings in force of the alert-ids topic each key
// of the keyring keeps.
type BindingUse struct {
	// Keys lists every key of the keyring, in its order (the first
	// signs), with the number of ids whose binding in force it keeps: it
	// signed the latest record under the id, the binding or a copy of it
	// (same digest), which compaction keeps alone; readers holding only
	// the first key hold the first copy it signed before compaction, and
	// its latest after.
	Keys []KeyCount
	// Conflicting counts the ids, among those Keys counts under a key
	// other than the first, under which a binding to another digest
	// signed with the first key follows the binding in force: once the
	// other keys are removed, readers hold that one, and no copy can
	// come before it. The fan-out never rebinds an id it holds: Herald
	// writes one only for an id its processes had forgotten (after a
	// compromise, the new key deployed alone before the copies were
	// written); otherwise the first key wrote what Herald did not.
	Conflicting int
}

// Others counts the bindings in force kept by a key other than the first
// of the keyring: while it is not 0, removing those keys forgets their ids.
func (u BindingUse) Others() int { return others(u.Keys) }

// ScanBindings reads the alert-ids topic to its end and finds, by the rule
// every reader follows (record.StepBinding), the binding in force of each
// id and the key that signed it (bus.Bus.SignedBy), and the first binding
// under the id the keyring's first key signed. A record no key of the
// keyring verifies binds nothing and is never copied.
func (s BindingStore) ScanBindings(ctx context.Context) (*BindingSigners, error) {
	keys := s.Bus.Keyring()
	if keys == nil {
		return nil, bus.ErrNoKeyring
	}
	first := keys.IDs()[0]
	sc := &BindingSigners{keys: keys, ids: map[string]*boundID{}}
	err := s.Bus.ReadAll(ctx, bus.TopicAlertIDs, func(m kafka.Message) error {
		k := string(m.Key)
		signer, err := s.Bus.SignedBy(m)
		var rec *record.Binding
		if err == nil {
			rec, _ = record.DecodeBinding(m.Key, m.Value)
		}
		var held *record.Binding
		b := sc.ids[k]
		if b != nil {
			held = &record.Binding{ID: k, Digest: b.digest}
		}
		switch record.StepBinding(held, rec) {
		case record.BindingBinds:
			b = &boundID{partition: m.Partition, key: m.Key, value: m.Value, digest: rec.Digest, signer: signer}
			sc.ids[k] = b
			b.last = signer
		case record.BindingCopies:
			b.last = signer
		case record.BindingDisplaces:
			b.last = ""
		case record.BindingNone:
			return nil
		}
		if rec != nil && signer == first && b.firstDigest == "" {
			b.firstDigest = rec.Digest
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the alert-ids topic: %w", err)
	}
	return sc, nil
}

// Use counts the bindings in force by the key that keeps them.
func (sc *BindingSigners) Use() BindingUse {
	ids := sc.keys.IDs()
	u := BindingUse{Keys: make([]KeyCount, len(ids))}
	for i, id := range ids {
		u.Keys[i].ID = id
	}
	for _, b := range sc.ids {
		keeper, conflicting := b.keeper(ids[0])
		if conflicting {
			u.Conflicting++
		}
		if i := slices.Index(ids, keeper); i >= 0 {
			u.Keys[i].Records++
		}
	}
	return u
}

// ResignedBindings is what a ResignBindings run did.
type ResignedBindings struct {
	// Key is the id of the key the copies were signed with.
	Key string
	// Records counts the bindings copied.
	Records int
	// Conflicting counts the bindings not copied because the first key
	// signed another binding under their id (BindingUse.Conflicting).
	Conflicting int
}

// ResignBindings writes, as actor, a copy of every binding in force that
// sc found kept by a key other than the keyring's first (BindingUse.Keys:
// the latest record under its id is signed with another key, a copy the
// first key signed before it notwithstanding), unless Conflicting: the
// same Kafka key and value bytes, on the binding's partition, signed by
// the producer with the first key. Once compaction has run, the copy
// alone remains, and readers that hold only the first key hold it.
//
// The project writes back no copy of a record it does not own; this is
// the reasoned exception, like the fan-out's self-heal (App.keepBindings),
// which writes the same kind of copy. A binding is an immutable record that
// Herald's fan-out owns and writes, and every reader keeps the FIRST
// authentic binding of an id (record.StepBinding): a copy with the same
// digest changes nothing a reader holds (while the binding's signer is in
// the keyring, readers read the copy as BindingCopies, which also ends a
// displacement), and it can never supersede a different binding, whatever
// was written under the id since the scan, so no check before a write is
// needed and a run stopped at any point undoes nothing. Only what sc
// found in force is copied: a record no key of the keyring verifies is
// never in force, so never copied. It records the run in the audit
// trail, object topic:alert-ids, before its first write
// (record.ActionKeysResignStart: the key and how many it will copy) and
// once it is done (record.ActionKeysResign, with its counts).
func (s BindingStore) ResignBindings(ctx context.Context, actor string, sc *BindingSigners) (ResignedBindings, error) {
	first := sc.keys.IDs()[0]
	res := ResignedBindings{Key: first}
	byPart := map[int][]kafka.Message{}
	for _, k := range slices.Sorted(maps.Keys(sc.ids)) {
		b := sc.ids[k]
		switch keeper, conflicting := b.keeper(first); {
		case conflicting:
			res.Conflicting++
		case keeper != first:
			byPart[b.partition] = append(byPart[b.partition], kafka.Message{Key: b.key, Value: b.value})
		}
	}
	n := 0
	for _, msgs := range byPart {
		n += len(msgs)
	}
	if err := s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysResignStart, Object: "topic:" + bus.TopicAlertIDs,
		Details: map[string]any{"key": first, "records": n, "conflicting": res.Conflicting}}); err != nil {
		return res, fmt.Errorf("record the run in the audit trail before it writes: %w", err)
	}
	const chunk = 500
	for _, part := range slices.Sorted(maps.Keys(byPart)) {
		for msgs := range slices.Chunk(byPart[part], chunk) {
			if err := s.Bus.Producer(bus.TopicAlertIDs).WriteToPartition(ctx, part, msgs...); err != nil {
				return res, fmt.Errorf("copy the alert-ids topic's bindings under key %s (%d copied before this): %w", first, res.Records, err)
			}
			res.Records += len(msgs)
		}
	}
	if resignAfterWrite != nil {
		resignAfterWrite()
	}
	err := s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysResign, Object: "topic:" + bus.TopicAlertIDs,
		Details: map[string]any{"key": first, "records": res.Records, "conflicting": res.Conflicting}})
	return res, err
}
