package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/subscribers"
)

// The subscribers topic is compacted: the latest record of each key (a
// partner's record, a partner's own key or secrets, an endpoint state, a
// tombstone) stays for ever, signed with whichever publishing key wrote
// it. Once that key is removed from the keyring after a rotation, the
// record is no longer authentic, and every reader would skip it.
//
// `herald keys resign` does not write such a record again: a copy written
// under the record's key could land after a newer record of another
// writer (a suspension, a deletion) and, being the latest, undo it for
// ever. It writes an endorsement instead, under a key of its own
// (subscribers.EndorsementPrefix + the record's key), on the record's own
// partition, after it: it names the record's key, partition and offset,
// carries its value byte for byte, and is signed with the first key like
// any record. Compaction keeps offsets and one key's latest record, so a
// reader always meets the record before its endorsement; an endorsement
// can never supersede anything.
//
// topicReader is the one home of the rule by which a reader applies an
// endorsement E for key K naming (p, o): if and only if the latest record
// the reader has read under K lies at (p, o) and was signed with a key the
// keyring does not hold (busauth.ErrUnknownKey), it holds E's value as K's
// record. If K's latest record is authentic, or newer than o, or K has no
// record left (a tombstone compaction removed), E changes nothing: a
// change written at any moment before, between or after wins, and a
// resign run that dies at any instant undoes nothing. A tombstone under
// an endorsement key retires the endorsements before it (Resign writes
// it on their partition, for compaction to remove them): it vouches for
// nothing and is no bad record. A record refused as
// not Herald's at all (no herald-auth, or one that does not match) is
// skipped as if absent, as readers always skip it.

// endorsement is the value of a record under subscribers.EndorsementPrefix
// + Key.
type endorsement struct {
	// Key is the subscribers-topic key of the record vouched for.
	Key string `json:"key"`
	// Partition and Offset are where that record lies: Partition is the
	// endorsement's own.
	Partition int   `json:"partition"`
	Offset    int64 `json:"offset"`
	// Value is the record's value byte for byte (null for a tombstone).
	Value []byte `json:"value"`
	// Auth is the record's herald-auth header as written: which key
	// signed it.
	Auth string `json:"auth"`
	// By and At say who wrote the endorsement, and when.
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// isEndorsementKey reports whether a subscribers-topic key holds an
// endorsement.
func isEndorsementKey(k string) bool { return strings.HasPrefix(k, subscribers.EndorsementPrefix) }

// place is where a record lies in the subscribers topic.
type place struct {
	partition int
	offset    int64
}

// topicReader reads the subscribers topic by the rule above. Not safe for
// concurrent use: one reader reads one pass of the topic in order.
type topicReader struct {
	bus *bus.Bus
	// unknown holds, by key, where its latest record lies while that
	// record was signed with a key the keyring does not hold; it is
	// forgotten when an authentic record under the key is read, or an
	// endorsement of it. Keys whose records are authentic take no
	// memory.
	unknown map[string]place
	// held, if not nil (ScanSigners), holds by key where the record in
	// force lies while it is the latest record read under the key
	// (authentic, or vouched for): so that an endorsement of an
	// authentic record counts too, as what keeps it once its signer is
	// removed.
	held map[string]place
}

// newTopicReader returns a reader; scan keeps held, for ScanSigners.
func newTopicReader(b *bus.Bus, scan bool) *topicReader {
	r := &topicReader{bus: b, unknown: map[string]place{}}
	if scan {
		r.held = map[string]place{}
	}
	return r
}

// readResult is what one record read changes.
type readResult struct {
	// signer is the key that signed the record read ("" if refused).
	signer string
	// inForce, if not nil, is the record the reader holds under its key
	// from now: the one read, or the one an endorsement vouches for.
	inForce *inForce
	// refused is why the record read is not authentic (bus.Bus.SignedBy).
	refused error
	// bad is why an authentic endorsement is not one.
	bad error
}

// inForce is the record in force under a key.
type inForce struct {
	key, value []byte
	// at is where the record lies (for an endorsement, the record it
	// names); signer is the key whose removal would lose it (for an
	// endorsement, the endorsement's).
	at     place
	signer string
	// apply says the reader must apply value under key: false for an
	// endorsement of an authentic record, which the reader holds already.
	apply bool
	// vouched says an endorsement put it in force.
	vouched bool
}

// read reads m, the next record of the topic in its partition's order.
func (r *topicReader) read(m kafka.Message) readResult {
	k := string(m.Key)
	at := place{m.Partition, m.Offset}
	signer, err := r.bus.SignedBy(m)
	if err != nil {
		if errors.Is(err, busauth.ErrUnknownKey) {
			r.unknown[k] = at
			if r.held != nil {
				delete(r.held, k)
			}
		}
		return readResult{refused: err}
	}
	delete(r.unknown, k)
	res := readResult{signer: signer}
	if !isEndorsementKey(k) {
		if r.held != nil {
			r.held[k] = at
		}
		res.inForce = &inForce{key: m.Key, value: m.Value, at: at, signer: signer, apply: true}
		return res
	}
	if m.Value == nil {
		return res // an endorsement retired (Resign): nothing to vouch for
	}
	e, err := decodeEndorsement(m)
	if err != nil {
		res.bad = err
		return res
	}
	named := place{e.Partition, e.Offset}
	if u, ok := r.unknown[e.Key]; ok && u == named {
		delete(r.unknown, e.Key)
		if r.held != nil {
			r.held[e.Key] = named
		}
		res.inForce = &inForce{key: []byte(e.Key), value: e.Value, at: named, signer: signer, apply: true, vouched: true}
	} else if h, ok := r.held[e.Key]; ok && h == named {
		res.inForce = &inForce{key: []byte(e.Key), value: e.Value, at: named, signer: signer, vouched: true}
	}
	return res
}

// decodeEndorsement decodes m, an authentic record under an endorsement
// key, checking that it names its own key and lies after what it names in
// its own partition.
func decodeEndorsement(m kafka.Message) (endorsement, error) {
	var e endorsement
	k := string(m.Key)
	dec := json.NewDecoder(bytes.NewReader(m.Value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return e, fmt.Errorf("endorsement %q: %w", k, err)
	}
	switch {
	case subscribers.EndorsementPrefix+e.Key != k:
		return e, fmt.Errorf("endorsement of key %q is stored under key %q, not its own", e.Key, k)
	case isEndorsementKey(e.Key):
		return e, fmt.Errorf("endorsement %q vouches for an endorsement", k)
	case e.Partition != m.Partition || e.Offset >= m.Offset:
		return e, fmt.Errorf("endorsement %q names partition %d offset %d, not a record before it in its partition %d", k, e.Partition, e.Offset, m.Partition)
	}
	return e, nil
}

// reportUnknown reports, in one warning, the records still skipped after a
// load because a key the keyring does not hold signed them and no
// endorsement vouches for them, and counts each as refused
// (bus.Bus.CountRefused). It returns how many there are.
func (r *topicReader) reportUnknown(log *slog.Logger) int {
	if len(r.unknown) == 0 {
		return 0
	}
	keys := make([]string, 0, len(r.unknown))
	for k, at := range r.unknown {
		keys = append(keys, k)
		r.bus.CountRefused(kafka.Message{Topic: r.bus.Topic(bus.TopicSubscribers), Partition: at.partition, Offset: at.offset, Key: []byte(k)}, busauth.ErrUnknownKey)
	}
	slices.Sort(keys)
	log.Warn(fmt.Sprintf("ignoring %d latest records of the subscribers topic signed with a key publishing.key_file does not hold, vouched for by no endorsement: every registry skips them (signed with a key removed before `herald keys resign --subscribers` vouched for them: put it back, second, and run it, unless that key was compromised; or written by another client)", len(keys)),
		"topic", r.bus.Topic(bus.TopicSubscribers), "records", len(keys), "keys", keys[:min(len(keys), 5)])
	return len(keys)
}

// LoadRegistry reads the whole subscribers topic into a new registry, as
// every Herald process does (the records Herald wrote, endorsements
// applied by the rule of topicReader); what it skips is logged to log.
func LoadRegistry(ctx context.Context, b *bus.Bus, log *slog.Logger) (*subscribers.Registry, error) {
	reg := subscribers.NewRegistry()
	if _, err := newRegistryFollower(b, reg, log).load(ctx); err != nil {
		return nil, fmt.Errorf("read the subscribers topic: %w", err)
	}
	return reg, nil
}
