package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
)

// The subscribers topic is compacted: the latest record of each key (a
// partner's record, a partner's own key or secrets, an endpoint state, a
// tombstone) stays for ever, authenticated by whichever publishing key
// wrote it. Removing that key from the keyring after a rotation would make
// every such record unauthentic, and every registry would skip it: the
// partner vanishes, or an administrator's older key comes back in force.
// Signers counts the latest records by the key that signed them; Resign
// writes those signed with another key than the keyring's first again,
// key, value and (authentic) headers exactly as they are, so that the
// producer signs them with the first key. A copy changes nothing a
// registry holds: the same record read again (a partner's own key or
// secrets included, subscribers.Registry.PutKeyOverlay). Nothing is
// re-encoded, so this is no write-back of a record Herald's CLI does not
// own: the run is recorded in the audit trail as its own event.

// resignBatch is how many records Resign writes at once, each batch after
// checking that none of its records has been replaced meanwhile.
const resignBatch = 256

// resignBeforeWrite, if set (by tests), runs between Resign's last check
// of a batch and its write.
var resignBeforeWrite func()

// SubscriberSigners is what ScanSigners read: the latest record of each
// key of the subscribers topic and the key that signed it.
type SubscriberSigners struct {
	bus  *bus.Bus
	keys *busauth.Keyring
	// latest holds, by key, its latest authentic record: the one every
	// registry holds (they skip the others).
	latest map[string]latestRecord
	// unverified holds the keys whose latest record no key verifies.
	unverified map[string]bool
	// ends holds, by partition, the offset after the last record read.
	ends map[int]int64
}

// latestRecord is where the latest record of a key lies and who signed it.
type latestRecord struct {
	partition int
	offset    int64
	// signer is the id of the key that signed it.
	signer string
}

// KeyUse is how many of the latest records of the subscribers topic each
// key of the keyring signs.
type KeyUse struct {
	// Keys lists every key of the keyring, in its order (the first
	// signs), with the number of keys whose latest authentic record it
	// signs: the record every registry holds for the key.
	Keys []KeyCount
	// Unverified counts the keys whose latest record no key of the
	// keyring verifies: registries skip it (written by someone other
	// than Herald, or signed with a key already removed) and hold the
	// latest authentic record before it, if any, counted in Keys.
	Unverified int
}

// KeyCount is how many latest records one key signs.
type KeyCount struct {
	ID      string
	Records int
}

// Others counts the latest records signed with a key other than the first
// of the keyring: while it is not 0, removing those keys loses them.
func (u KeyUse) Others() int {
	n := 0
	for _, k := range u.Keys[1:] {
		n += k.Records
	}
	return n
}

// ScanSigners reads the subscribers topic to its end and finds the key
// that signed the latest authentic record of each key (the one registries
// hold), and the keys whose latest record is not authentic.
func (s SubscriberStore) ScanSigners(ctx context.Context) (*SubscriberSigners, error) {
	keys := s.Bus.Keyring()
	if keys == nil {
		return nil, bus.ErrNoKeyring
	}
	offs, err := s.Bus.Offsets(ctx, bus.TopicSubscribers)
	if err != nil {
		return nil, fmt.Errorf("read the subscribers topic: %w", err)
	}
	sc := &SubscriberSigners{bus: s.Bus, keys: keys, latest: map[string]latestRecord{}, unverified: map[string]bool{}, ends: map[int]int64{}}
	for _, po := range offs[bus.TopicSubscribers] {
		sc.ends[po.Partition] = po.End
	}
	err = s.Bus.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		k := string(m.Key)
		if signer := sc.signer(m); signer != "" {
			sc.latest[k] = latestRecord{partition: m.Partition, offset: m.Offset, signer: signer}
			delete(sc.unverified, k)
		} else {
			sc.unverified[k] = true
		}
		sc.ends[m.Partition] = max(sc.ends[m.Partition], m.Offset+1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the subscribers topic: %w", err)
	}
	return sc, nil
}

// signer returns the id of the key that signed m, or "" if m is not
// authentic (bus.Bus.Authenticate: what registries skip).
func (sc *SubscriberSigners) signer(m kafka.Message) string {
	id, err := sc.bus.SignedBy(m)
	if err != nil {
		return ""
	}
	return id
}

// Use counts the latest records by the key that signed them.
func (sc *SubscriberSigners) Use() KeyUse {
	ids := sc.keys.IDs()
	u := KeyUse{Keys: make([]KeyCount, len(ids))}
	for i, id := range ids {
		u.Keys[i].ID = id
	}
	for _, l := range sc.latest {
		if i := slices.Index(ids, l.signer); i >= 0 {
			u.Keys[i].Records++
		}
	}
	u.Unverified = len(sc.unverified)
	return u
}

// Resigned is what a Resign run did.
type Resigned struct {
	// Key is the id of the key the records were signed with.
	Key string
	// Records counts the records written again under Key.
	Records int
	// Changed counts the records left alone because their key was
	// written meanwhile (the new record is the one that counts; run
	// again to re-sign it if another key signed it).
	Changed int
	// Restored counts the records written again because a copy of the
	// record they replaced landed after them: each is the newer change,
	// made the latest record of its key again.
	Restored int
}

// resignHeader names the run that wrote a copy (a random id), so that
// Resign tells its own copies from anyone else's records when it checks
// what its write landed after.
const resignHeader = "herald-resign"

// Resign writes again, as actor, every latest record of the subscribers
// topic that sc found signed with a key other than the keyring's first:
// the same key, value and authentic headers, signed by the producer with
// the first key. A copy must never become the latest record of its key
// over a newer change (a suspension, a deletion, a partner's own key): in
// a compacted topic the latest record is the one kept. So, just before
// writing each batch, Resign reads what the topic gained since sc (or the
// last batch) was read and leaves out every record whose key has a newer
// authentic record, counting it in Changed; and just after, it reads
// what the topic gained again: a key written by someone else between that
// check and its copy, and not since, has its newer record written again
// after the copy (counted in Restored), and so on until no copy lies over
// a newer record. It records the run in the audit trail (one entry, with
// its counts) and returns what it did.
func (s SubscriberStore) Resign(ctx context.Context, actor string, sc *SubscriberSigners) (Resigned, error) {
	first := sc.keys.IDs()[0]
	res := Resigned{Key: first}
	run, err := randomID("re-signing run id")
	if err != nil {
		return res, err
	}
	// need holds the keys to sign again and where their latest record is.
	need := map[string]latestRecord{}
	for k, l := range sc.latest {
		if l.signer != first {
			need[k] = l
		}
	}
	written := map[string]bool{}
	// last holds, by key written this run, the latest authentic record
	// read since the check before its write; over, the record a copy of
	// this run landed after (nil if none, or if a newer one followed).
	last := map[string]*kafka.Message{}
	over := map[string]*kafka.Message{}
	observe := func(m kafka.Message) {
		k := string(m.Key)
		if sc.signer(m) == "" {
			return
		}
		if _, ok := need[k]; ok && !written[k] {
			delete(need, k)
			res.Changed++
		}
		if !written[k] {
			return
		}
		if bus.Header(m, resignHeader) == run && s.Bus.AuthenticateHeaders(m) == nil {
			if l := last[k]; l != nil && bus.Header(*l, resignHeader) != run {
				over[k] = l
			}
		} else {
			delete(over, k)
		}
		last[k] = &m
	}
	write := func(msgs []kafka.Message) error {
		if len(msgs) == 0 {
			return nil
		}
		for i := range msgs {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: resignHeader, Value: []byte(run)})
			written[string(msgs[i].Key)] = true
		}
		clear(last)
		if resignBeforeWrite != nil {
			resignBeforeWrite()
		}
		if err := s.Bus.Producer(bus.TopicSubscribers).Write(ctx, msgs...); err != nil {
			return fmt.Errorf("re-sign the subscribers topic (%d records written before this): %w", res.Records+res.Restored, err)
		}
		return nil
	}
	var batch []kafka.Message
	flush := func() error {
		if err := s.catchUp(ctx, sc, observe); err != nil {
			return err
		}
		msgs := slices.DeleteFunc(batch, func(m kafka.Message) bool { _, ok := need[string(m.Key)]; return !ok })
		if err := write(msgs); err != nil {
			return err
		}
		res.Records += len(msgs)
		batch = batch[:0]
		// Any copy that landed over a newer change: that change again,
		// until none does.
		for {
			if err := s.catchUp(ctx, sc, observe); err != nil {
				return err
			}
			if len(over) == 0 {
				return nil
			}
			var again []kafka.Message
			for _, m := range over {
				again = append(again, s.copyOf(*m))
			}
			clear(over)
			if err := write(again); err != nil {
				return err
			}
			res.Restored += len(again)
		}
	}
	err = s.Bus.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		l, ok := need[string(m.Key)]
		if !ok || l.partition != m.Partition || l.offset != m.Offset {
			return nil
		}
		batch = append(batch, s.copyOf(m))
		if len(batch) >= resignBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, err
	}
	// A record not found again was compacted away under a newer one,
	// which the last check read.
	for k := range need {
		if !written[k] {
			res.Changed++
		}
	}
	err = s.Audit.Record(ctx, record.Audit{Actor: actor, Action: record.ActionKeysResign, Object: "topic:" + bus.TopicSubscribers,
		Details: map[string]any{"key": first, "records": res.Records, "changed": res.Changed, "restored": res.Restored}})
	return res, err
}

// copyOf returns m as it is to be written again: its key and value as
// they are, and its other headers if they are authentic (the producer
// signs them anew), but for an earlier run's mark (resignHeader); headers
// Herald did not write are left behind.
func (s SubscriberStore) copyOf(m kafka.Message) kafka.Message {
	c := kafka.Message{Key: m.Key, Value: m.Value}
	if s.Bus.AuthenticateHeaders(m) == nil {
		for _, h := range m.Headers {
			if busauth.Covers(h.Key) && h.Key != resignHeader {
				c.Headers = append(c.Headers, h)
			}
		}
	}
	return c
}

// catchUp reads what the subscribers topic gained since sc.ends, up to
// its high watermarks now, calls fn with each record, and moves sc.ends
// past them.
func (s SubscriberStore) catchUp(ctx context.Context, sc *SubscriberSigners, fn func(kafka.Message)) error {
	offs, err := s.Bus.Offsets(ctx, bus.TopicSubscribers)
	if err != nil {
		return fmt.Errorf("read the subscribers topic: %w", err)
	}
	behind := false
	from := map[int]int64{}
	until := map[int]int64{}
	for _, po := range offs[bus.TopicSubscribers] {
		from[po.Partition] = sc.ends[po.Partition]
		until[po.Partition] = po.End
		behind = behind || sc.ends[po.Partition] < po.End
	}
	if !behind {
		return nil
	}
	// A deadline of its own (STYLE: every network call has one): a broker
	// that stops answering ends the run with an error, not a hang; the
	// bound is generous, for a whole topic read on first use.
	fctx, cancel := context.WithTimeoutCause(ctx, catchUpTimeout,
		fmt.Errorf("read the subscribers topic: not at its end within %s", catchUpTimeout))
	defer cancel()
	reached := func() bool {
		for p, end := range until {
			if sc.ends[p] < end {
				return false
			}
		}
		return true
	}
	err = s.Bus.FollowFrom(fctx, bus.TopicSubscribers, from, func(b bus.Batch) error {
		for _, m := range b.Messages {
			fn(m)
		}
		sc.ends[b.Partition] = max(sc.ends[b.Partition], b.Next)
		if reached() {
			cancel()
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the subscribers topic: %w", err)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !reached() {
		if cause := context.Cause(fctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return errors.New("read the subscribers topic: stopped before its end")
	}
	return nil
}

// catchUpTimeout bounds one catchUp.
const catchUpTimeout = 5 * time.Minute
