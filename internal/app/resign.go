package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

// Signers counts the latest records of the subscribers topic by the key
// that signed what keeps them in force (the record, or its endorsement:
// see topicReader); Resign writes an endorsement, signed with the
// keyring's first key, of each record some other key keeps in force, so
// that the other keys may be removed.

// resignBeforeWrite, if set (by tests), runs between Resign's read of the
// records it endorses and its first write; resignAfterWrite, after the
// last write of Resign or ResignBindings.
var resignBeforeWrite, resignAfterWrite func()

// SubscriberSigners is what ScanSigners read: the record in force under
// each key of the subscribers topic and the key that keeps it in force.
type SubscriberSigners struct {
	bus  *bus.Bus
	keys *busauth.Keyring
	// latest holds, by key, where its record in force lies (the one
	// every registry holds) and the key that keeps it there.
	latest map[string]latestRecord
	// unverified holds the keys whose latest record no key verifies and
	// no endorsement vouches for.
	unverified map[string]bool
	// blocked holds the keys whose record in force is followed by a
	// record signed with a key the keyring does not hold: no endorsement
	// of it can count (topicReader), so it needs its signer until an
	// administrator writes the key's record again.
	blocked map[string]bool
	// stale holds, by endorsement key, its latest record (where, and
	// its signer) when that is not signed with the first key and vouches
	// for nothing in force: Resign retires it (a tombstone on its
	// partition, unless it writes a fresh endorsement under that key),
	// so that removing its signer leaves no record a registry must skip.
	stale map[string]latestRecord
}

// latestRecord is where the record in force under a key lies and which key
// keeps it in force.
type latestRecord struct {
	partition int
	offset    int64
	// signer is the id of the key that signed it, or the endorsement
	// that vouches for it.
	signer string
}

// KeyUse is how many of the records in force in the subscribers topic each
// key of the keyring keeps.
type KeyUse struct {
	// Keys lists every key of the keyring, in its order (the first
	// signs), with the number of keys whose record in force it keeps:
	// it signed the record, or an endorsement of it. Endorsements no
	// longer needed count under their signer too (Resign retires them).
	Keys []KeyCount
	// Unverified counts the keys whose latest record no key of the
	// keyring verifies and no endorsement vouches for: registries skip
	// it (written by someone other than Herald, or signed with a key
	// already removed) and hold the record in force before it, if any,
	// counted in Keys.
	Unverified int
	// Blocked counts the records in force, among those Keys counts under
	// a key other than the first, that a record signed with a key the
	// keyring does not hold follows: no endorsement can keep them (a
	// newer record of a removed key looks the same as a forged one), so
	// only writing the key's record again frees their signer.
	Blocked int
}

// KeyCount is how many records in force one key keeps.
type KeyCount struct {
	ID      string
	Records int
}

// Others counts the records in force kept by a key other than the first
// of the keyring: while it is not 0, removing those keys loses them.
func (u KeyUse) Others() int { return others(u.Keys) }

// others sums the records of every key of keys but the first.
func others(keys []KeyCount) int {
	n := 0
	for _, k := range keys[1:] {
		n += k.Records
	}
	return n
}

// ScanSigners reads the subscribers topic to its end and finds, by the
// rule every registry follows (topicReader), the record in force under
// each key and the key that keeps it there, and the keys whose latest
// record is not authentic. It counts the topic as compaction will leave
// it: an endorsement that another record follows under its own key keeps
// nothing (compaction removes it), and the record it vouched for counts
// under its own signer, for Resign to vouch for it afresh.
func (s SubscriberStore) ScanSigners(ctx context.Context) (*SubscriberSigners, error) {
	keys := s.Bus.Keyring()
	if keys == nil {
		return nil, bus.ErrNoKeyring
	}
	sc := &SubscriberSigners{bus: s.Bus, keys: keys, latest: map[string]latestRecord{}, unverified: map[string]bool{},
		blocked: map[string]bool{}, stale: map[string]latestRecord{}}
	r := newTopicReader(s.Bus, true)
	// own holds, by endorsement key, its latest record Herald wrote or a
	// key the keyring does not hold signed: where it lies, and who signed
	// it ("" if no key of the keyring did).
	own := map[string]latestRecord{}
	// last holds, by endorsement key, where its latest record lies,
	// whoever wrote it: compaction keeps that one alone.
	last := map[string]place{}
	// vouched holds, by key whose record in force an endorsement keeps,
	// where that endorsement lies and who signed the record itself.
	vouched := map[string]latestRecord{}
	// signers holds, by key, who signed its latest record Herald wrote or
	// a key the keyring does not hold signed ("" if no key of the keyring
	// did).
	signers := map[string]string{}
	err := s.Bus.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		k := string(m.Key)
		res := r.read(m)
		unknown := errors.Is(res.refused, busauth.ErrUnknownKey)
		if isEndorsementKey(k) {
			last[k] = place{m.Partition, m.Offset}
			if res.refused == nil || unknown {
				own[k] = latestRecord{partition: m.Partition, offset: m.Offset, signer: res.signer}
			}
		} else if res.refused == nil || unknown {
			signers[k] = res.signer
		}
		if f := res.inForce; f != nil {
			fk := string(f.key)
			sc.latest[fk] = latestRecord{partition: f.at.partition, offset: f.at.offset, signer: f.signer}
			delete(sc.unverified, fk)
			if f.vouched {
				vouched[fk] = latestRecord{partition: m.Partition, offset: m.Offset, signer: signers[fk]}
			} else {
				delete(vouched, fk)
			}
		} else if res.refused != nil && !isEndorsementKey(k) {
			sc.unverified[k] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the subscribers topic: %w", err)
	}
	for k := range r.unknown {
		if _, ok := sc.latest[k]; ok && !isEndorsementKey(k) {
			sc.blocked[k] = true
		}
	}
	// An endorsement followed by another record under its key (a
	// tombstone or endorsement of another run, another client's record)
	// is removed by compaction: the record it keeps in force is kept by
	// its own signer, as it will be, and Resign vouches for it afresh.
	for k, v := range vouched {
		if last[subscribers.EndorsementPrefix+k] == (place{v.partition, v.offset}) {
			continue
		}
		l := sc.latest[k]
		l.signer = v.signer
		sc.latest[k] = l
		if l.signer == "" {
			sc.unverified[k] = true
		}
		delete(vouched, k)
	}
	first := keys.IDs()[0]
	for ek, e := range own {
		if e.signer == first {
			continue
		}
		if v, ok := vouched[strings.TrimPrefix(ek, subscribers.EndorsementPrefix)]; ok && v.partition == e.partition && v.offset == e.offset {
			continue // in force: the key's own count
		}
		if last[ek] != (place{e.partition, e.offset}) {
			continue // another client's record follows: compaction removes it
		}
		sc.stale[ek] = e
	}
	return sc, nil
}

// Use counts the records in force by the key that keeps them.
func (sc *SubscriberSigners) Use() KeyUse {
	ids := sc.keys.IDs()
	u := KeyUse{Keys: make([]KeyCount, len(ids))}
	for i, id := range ids {
		u.Keys[i].ID = id
	}
	for k, l := range sc.latest {
		if i := slices.Index(ids, l.signer); i >= 0 {
			u.Keys[i].Records++
			if i > 0 && sc.blocked[k] {
				u.Blocked++
			}
		}
	}
	for _, e := range sc.stale {
		if i := slices.Index(ids, e.signer); i >= 0 {
			u.Keys[i].Records++
		}
	}
	u.Unverified = len(sc.unverified)
	return u
}

// Resigned is what a Resign run did.
type Resigned struct {
	// Key is the id of the key the endorsements were signed with.
	Key string
	// Records counts the records vouched for: an endorsement of each
	// written under Key.
	Records int
	// Changed counts the records not vouched for because their key was
	// written after ScanSigners read it (the new record is the one in
	// force; run again to vouch for it if another key keeps it).
	Changed int
	// Blocked counts the records not vouched for because a record signed
	// with a key the keyring does not hold follows them (KeyUse.Blocked).
	Blocked int
	// Retired counts the endorsements no longer needed replaced by a
	// tombstone signed with Key (one replaced by a fresh endorsement of
	// the record now in force under its key counts in Records).
	Retired int
}

// Resign writes, as actor, an endorsement of every record in force that
// sc found kept by a key other than the keyring's first (unless blocked),
// signed by the producer with the first key, on the record's partition,
// and retires the endorsements sc found stale. An endorsement never
// supersedes anything (topicReader): a change written meanwhile stays the
// one in force, and a run that stops at any point undoes nothing, so no
// check before a write is needed. It records the run in the audit trail
// before its first write (record.ActionKeysResignStart: the key and what
// it will write) and once it is done (record.ActionKeysResign, with its
// counts), and returns what it did.
func (s SubscriberStore) Resign(ctx context.Context, actor string, sc *SubscriberSigners) (Resigned, error) {
	first := sc.keys.IDs()[0]
	res := Resigned{Key: first}
	// need holds the keys to vouch for and where their record in force is.
	need := map[string]latestRecord{}
	for k, l := range sc.latest {
		switch {
		case l.signer == first:
		case sc.blocked[k]:
			res.Blocked++
		default:
			need[k] = l
		}
	}
	if err := s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysResignStart, Object: "topic:" + bus.TopicSubscribers,
		Details: map[string]any{"key": first, "records": len(need), "blocked": res.Blocked, "stale": len(sc.stale)}}); err != nil {
		return res, fmt.Errorf("record the run in the audit trail before it writes: %w", err)
	}
	// The topic is read again, one partition after the other, by the
	// rule registries follow: a record whose key has another record in
	// force by the end of its partition changed meanwhile, and is left
	// alone (an endorsement of it would change nothing).
	r := newTopicReader(s.Bus, true)
	var batch []kafka.Message
	written := 0
	// fresh holds the endorsement keys written to: the fresh endorsement
	// replaces the stale one there, later in the same partition; a
	// tombstone must not follow it.
	fresh := map[string]bool{}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		part := batch[0].Partition
		msgs := make([]kafka.Message, 0, len(batch))
		for _, m := range batch {
			k := strings.TrimPrefix(string(m.Key), subscribers.EndorsementPrefix)
			if h, ok := r.held[k]; ok && h == (place{need[k].partition, need[k].offset}) {
				msgs = append(msgs, kafka.Message{Key: m.Key, Value: m.Value})
			}
		}
		batch = batch[:0]
		if len(msgs) == 0 {
			return nil
		}
		if written == 0 && resignBeforeWrite != nil {
			resignBeforeWrite()
		}
		if err := s.Bus.Producer(bus.TopicSubscribers).WriteToPartition(ctx, part, msgs...); err != nil {
			return fmt.Errorf("vouch for the subscribers topic's records (%d endorsements written before this): %w", written, err)
		}
		written += len(msgs)
		for _, m := range msgs {
			fresh[string(m.Key)] = true
		}
		return nil
	}
	// last holds, by endorsement key ScanSigners found stale, where its
	// latest record lies now: one written since (another run's fresh
	// endorsement) must not be retired.
	last := map[string]place{}
	now := time.Now().UTC()
	err := s.Bus.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		if len(batch) > 0 && batch[0].Partition != m.Partition {
			if err := flush(); err != nil {
				return err
			}
		}
		r.read(m)
		k := string(m.Key)
		if _, ok := sc.stale[k]; ok {
			last[k] = place{m.Partition, m.Offset}
		}
		l, ok := need[k]
		if !ok || l.partition != m.Partition || l.offset != m.Offset {
			return nil
		}
		v, err := json.Marshal(endorsement{Key: k, Partition: m.Partition, Offset: m.Offset, Value: m.Value,
			Auth: bus.Header(m, busauth.Header), By: actor, At: now})
		if err != nil {
			return fmt.Errorf("encode the endorsement of %q: %w", k, err)
		}
		batch = append(batch, kafka.Message{Key: []byte(subscribers.EndorsementPrefix + k), Value: v, Partition: m.Partition})
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, err
	}
	res.Records = written
	res.Changed = len(need) - written
	// Stale endorsements not replaced: a tombstone each, under their own
	// key, which Resign alone writes, on their own partition (not where
	// the key's hash would put it), so that compaction removes them; not
	// where a record landed under the key since ScanSigners read it
	// (another run's endorsement, which the tombstone would remove). A
	// run that writes one between this read and the tombstone loses it
	// still: the check after every run counts its record again.
	retire := map[int][]kafka.Message{}
	for ek, e := range sc.stale {
		if !fresh[ek] && last[ek] == (place{e.partition, e.offset}) {
			retire[e.partition] = append(retire[e.partition], kafka.Message{Key: []byte(ek)})
		}
	}
	for part, msgs := range retire {
		if err := s.Bus.Producer(bus.TopicSubscribers).WriteToPartition(ctx, part, msgs...); err != nil {
			return res, fmt.Errorf("retire the subscribers topic's stale endorsements (%d retired before this): %w", res.Retired, err)
		}
		res.Retired += len(msgs)
	}
	if resignAfterWrite != nil {
		resignAfterWrite()
	}
	err = s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysResign, Object: "topic:" + bus.TopicSubscribers,
		Details: map[string]any{"key": first, "records": res.Records, "changed": res.Changed, "blocked": res.Blocked, "retired": res.Retired}})
	return res, err
}
