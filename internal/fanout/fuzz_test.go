package fanout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// FuzzIngest feeds the fan-out worker, over a real (kfake) bus for its
// ledger and its outputs, sequences of alert messages built from the fuzz
// input: a few ids, each message one of several contents (two GREEN
// alerts, an approved AMBER one, and refused ones: unapproved, not
// stamped, keyed under another id, SECRET, or arbitrary bytes), stamped by
// one of two publishers, with a valid authenticator or a missing, foreign,
// mismatched, wrong-purpose, wrong-key, malformed one, or with the value
// altered after signing; in batches, with worker restarts (a fresh worker
// knows only the ledger) between them. A model predicts every message's
// outcome (PRODUCT.md §1 and §3 rule 1), and the invariants hold
// throughout:
//   - never a panic;
//   - never a job for a message without a valid authenticator, nor for an
//     altered one: every job carries exactly the bytes of a message
//     authenticated for its id;
//   - never two different contents fanned out under one id;
//   - a later identical alert (restamped or not) never produces a second
//     job: each delivery id is written once.
func FuzzIngest(f *testing.F) {
	for _, seed := range [][2]string{
		// op: id|flags, content, auth|stamp (see decodeOps)
		{"\x00\x00\x00", ""},
		{"\x00\x00\x00\x00\x00\x80", ""},             // identical, restamped
		{"\x00\x02\x00\x00\x01\x00", ""},             // AMBER, then GREEN under its id
		{"\x00\x02\x00\x80\x01\x00", ""},             // the same after a restart
		{"\x00\x02\x00\x40\x01\x00\x40\x02\x80", ""}, // in one batch, then the AMBER restamped
		{"\x00\x00\x01\x00\x00\x02\x00\x00\x03\x00\x00\x04\x00\x00\x05\x00\x00\x06\x00\x00\x07", "v1=x:y"}, // every bad authenticator
		{"\x01\x00\x05\x01\x00\x00\x81\x00\x00", ""},                                                       // altered, then genuine, then again after a restart
		{"\x00\x03\x00\x00\x04\x00\x00\x05\x00\x00\x07\x00\x00\x00\x00", ""},                               // refused contents do not take the id
		{"\x02\x06\x00\x02\x00\x00", `{"id":"x","title":"t"}`},
		{"\x02\x06\x00\x42\x06\x00\x02\x00\x00", "not json"},
		// The fuzzer's own alerts ($ID is the message's id): GREEN A in
		// other bytes and stamped by another analyst, after GREEN A; and
		// another alert.
		{"\x00\x00\x00\x00\x06\x00", fuzzRawGreenA},
		{"\x00\x06\x00\x80\x00\x00\x00\x06\x05", fuzzRawGreenA},
		{"\x01\x06\x00\x01\x01\x00", strings.Replace(fuzzRawGreenA, "GREEN A", "GREEN C", 1)},
	} {
		f.Add([]byte(seed[0]), []byte(seed[1]))
	}
	fz := newFuzzBus(f)
	f.Fuzz(func(t *testing.T, data, raw []byte) {
		fz.run(t, decodeOps(data), raw)
	})
}

// fuzzRawGreenA is GREEN A as another publisher might encode it: other
// field order and spacing, another analyst's stamp.
const fuzzRawGreenA = `{ "tlp": "GREEN", "marking": "OFFICIAL", "id": "$ID",
  "title": "Fuzz GREEN A: workers housed on site", "severity": "severe", "handling": {"code": "P"},
  "audience": {"sectors": ["financial-services", "hospitality"]},
  "issued_by": "api:erin", "issued_at": "2026-11-24T12:30:00Z" }`

// Contents of a fuzzed message.
const (
	cGreenA     = iota // a GREEN alert
	cGreenB            // another GREEN alert
	cAmber             // an AMBER alert with a second analyst's approval
	cUnapproved        // the AMBER alert without approval: unapproved
	cUnstamped         // GREEN A without issued_by: unattributed
	cOtherKey          // GREEN A under a message key other than its id: invalid
	cRaw               // the fuzzer's bytes ($ID replaced by the id), keyed by the id
	cSecret            // GREEN A marked SECRET: forbidden
	nContents
)

// Authenticators of a fuzzed message.
const (
	aValid        = iota
	aMissing      // no herald-auth header
	aForeign      // made with a key Herald does not hold
	aOtherValue   // Herald's key, over another value
	aWrongPurpose // Herald's key, for another topic
	aAltered      // valid, then the value altered
	aMalformed    // the fuzzer's bytes as the header
	aOtherRecKey  // Herald's key, over another record key
	nAuths
)

// fuzzOp is one message of a sequence.
type fuzzOp struct {
	id      int  // which of three ids
	restart bool // a fresh worker before this message's batch
	join    bool // same batch as the previous message
	content int
	auth    int
	stamp   int // which publisher stamped it
}

// decodeOps reads three bytes per message, at most 16 messages: id and
// flags (bit 7 restart, bit 6 join the previous batch), content, and
// authenticator (bit 7 the second publisher's stamp).
func decodeOps(data []byte) []fuzzOp {
	var ops []fuzzOp
	for i := 0; i+2 < len(data) && len(ops) < 16; i += 3 {
		ops = append(ops, fuzzOp{
			id: int(data[i]&0x3f) % 3, restart: data[i]&0x80 != 0, join: data[i]&0x40 != 0,
			content: int(data[i+1]) % nContents, auth: int(data[i+2]&0x7f) % nAuths, stamp: int(data[i+2] >> 7),
		})
	}
	return ops
}

// fuzzBus is one kfake cluster per fuzzing process, with a fresh set of
// topics every few hundred inputs so that ledger lookups stay fast.
type fuzzBus struct {
	kc    *kafkatest.Cluster
	bus   *bus.Bus
	gen   int
	n     int
	other *busauth.Keyring
}

func newFuzzBus(f *testing.F) *fuzzBus {
	other, err := busauth.New(bytes.Repeat([]byte{0x42}, busauth.KeySize))
	if err != nil {
		f.Fatal(err)
	}
	fz := &fuzzBus{kc: kafkatest.Start(f, kafkatest.Partitions(3), kafkatest.RetryTiers(0)), other: other}
	f.Cleanup(func() {
		if fz.bus != nil {
			fz.bus.Close()
		}
	})
	return fz
}

// next returns the bus for the next input and a prefix for its ids.
func (fz *fuzzBus) next(t *testing.T) (*bus.Bus, string) {
	t.Helper()
	if fz.bus == nil || fz.n == 300 {
		if fz.bus != nil {
			fz.bus.Close()
		}
		fz.gen++
		fz.n = 0
		cfg := fz.kc.Config()
		cfg.TopicPrefix = fmt.Sprintf("fuzz%d.", fz.gen)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := bus.Open(ctx, cfg, bus.Options{Keyring: kafkatest.Keyring(), Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.EnsureTopics(ctx, 0); err != nil {
			t.Fatal(err)
		}
		fz.bus = b
	}
	fz.n++
	return fz.bus, fmt.Sprintf("i%d-", fz.n)
}

// fuzzEvent is one write of the worker: to the quarantine, or a fan-out
// (its jobs, then its receipts).
type fuzzEvent struct {
	topic string
	msgs  []kafka.Message
}

// recorder writes through to the bus and records every write in order.
type recorder struct {
	topic string
	p     *bus.Producer
	mu    *sync.Mutex
	log   *[]fuzzEvent
}

func (r recorder) Write(ctx context.Context, msgs ...kafka.Message) error {
	if err := r.p.Write(ctx, msgs...); err != nil {
		return err
	}
	r.mu.Lock()
	*r.log = append(*r.log, fuzzEvent{topic: r.topic, msgs: append([]kafka.Message(nil), msgs...)})
	r.mu.Unlock()
	return nil
}

func (r recorder) Placement(ctx context.Context) (*bus.Placement, error) { return r.p.Placement(ctx) }

func (r recorder) WriteTo(ctx context.Context, pl *bus.Placement, msgs ...kafka.Message) error {
	if err := r.p.WriteTo(ctx, pl, msgs...); err != nil {
		return err
	}
	r.mu.Lock()
	*r.log = append(*r.log, fuzzEvent{topic: r.topic, msgs: append([]kafka.Message(nil), msgs...)})
	r.mu.Unlock()
	return nil
}

// expectation is what the model knows of one message before the worker
// sees it.
type expectation struct {
	msg kafka.Message
	// reason is the quarantine reason when ingest must refuse it whatever
	// was published before; otherwise, when ok, the alert passes ingest
	// and its fate depends on what its id names (fanned out, skipped as
	// identical, or duplicate-id); otherwise it is the fuzzer's bytes,
	// whose fate the model does not know.
	reason string
	ok     bool
	digest string // of the alert, when it decodes
}

// fuzzOutcome is what the worker wrote for one message: a quarantine
// record, or the jobs and receipts of a fan-out.
type fuzzOutcome struct {
	quarantine *kafka.Message
	jobs       []fuzzJob
	alert      *delivery.Receipt // the fan-out's alert receipt
}

type fuzzJob struct {
	ID         string
	Alert      []byte
	Subscriber string
	Target     string
}

// fuzzState is what one input has done so far.
type fuzzState struct {
	bound     map[string]string // id → digest of the alert fanned out under it (the model)
	authentic map[string]bool   // id NUL value of every message authenticated for that id
	written   map[string]bool   // delivery ids of the jobs written
}

func (fz *fuzzBus) run(t *testing.T, ops []fuzzOp, raw []byte) {
	b, prefix := fz.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg := subscribers.NewRegistry()
	for _, s := range partners() {
		reg.Put(s)
	}
	var mu sync.Mutex
	var events []fuzzEvent
	rec := func(topic string) recorder {
		return recorder{topic: topic, p: b.Producer(topic), mu: &mu, log: &events}
	}
	newWorker := func() *fanout.Worker {
		return &fanout.Worker{
			Registry: reg, Policy: policy.Options{},
			Deliveries: rec(bus.TopicDeliveries), Receipts: rec(bus.TopicReceipts), Quarantine: rec(bus.TopicQuarantine),
			History: ledger.FromBus(b), Authenticate: b.Authenticate,
			SecondAnalyst: []string{"AMBER", "AMBER+STRICT", "RED", "OFFICIAL-SENSITIVE"},
			Now:           func() time.Time { return now }, Log: slog.New(slog.DiscardHandler),
		}
	}
	w := newWorker()
	keys := kafkatest.Keyring()
	st := &fuzzState{bound: map[string]string{}, authentic: map[string]bool{}, written: map[string]bool{}}
	var batch []expectation
	flush := func() {
		if len(batch) == 0 {
			return
		}
		msgs := make([]kafka.Message, len(batch))
		for i, x := range batch {
			msgs[i] = x.msg
		}
		mu.Lock()
		events = nil
		mu.Unlock()
		if err := w.Handle(ctx, msgs); err != nil {
			t.Fatalf("Handle: %v", err)
		}
		mu.Lock()
		got := events
		mu.Unlock()
		st.check(t, batch, outcomes(t, got))
		batch = nil
	}
	for _, op := range ops {
		if !op.join || op.restart {
			flush()
		}
		if op.restart {
			w = newWorker() // after a restart or a rebalance: only the ledger remembers
		}
		x := fuzzMessage(b, keys, fz.other, fmt.Sprintf("%sop-%d", prefix, op.id), op, raw)
		if op.auth == aValid {
			st.authentic[string(x.msg.Key)+"\x00"+string(x.msg.Value)] = true
		}
		batch = append(batch, x)
	}
	flush()
}

// Stamps of the two publishers: who issued and who approved, and when.
var fuzzStamps = [2]struct {
	issuedBy, approvedBy string
	issuedAt, approvedAt time.Time
}{
	{"api:alice", "api:bob", now, now.Add(time.Minute)},
	{"cli:carol", "api:dave", now.Add(time.Hour), now.Add(2 * time.Hour)},
}

// fuzzMessage builds the message op describes, as the worker reads it from
// the alerts topic, and what the model knows of it.
func fuzzMessage(b *bus.Bus, keys, other *busauth.Keyring, id string, op fuzzOp, raw []byte) expectation {
	stamp := fuzzStamps[op.stamp]
	a := alert(id, func(a *alerts.Alert) {
		a.Title = "Fuzz GREEN A: workers housed on site"
		a.IssuedBy, a.IssuedAt = stamp.issuedBy, &stamp.issuedAt
	})
	key := id
	x := expectation{ok: true}
	switch op.content {
	case cGreenB:
		a.Title = "Fuzz GREEN B: wages paid to one account"
	case cAmber, cUnapproved:
		a.TLP, a.Title = alerts.TLPAmber, "Fuzz AMBER: the front company and its director"
		if op.content == cAmber {
			a.ApprovedBy, a.ApprovedAt = stamp.approvedBy, &stamp.approvedAt
		} else {
			x.reason = fanout.ReasonUnapproved
		}
	case cUnstamped:
		a.IssuedBy = ""
		x.reason = fanout.ReasonUnissued
	case cOtherKey:
		key = id + "-other"
		x.reason = fanout.ReasonInvalid
	case cSecret:
		a.Marking = "SECRET"
		x.reason = fanout.ReasonForbidden
	case cRaw:
		x.ok = false
	}
	value, err := json.Marshal(a)
	if err != nil {
		panic(err)
	}
	if op.content == cRaw {
		value = bytes.ReplaceAll(raw, []byte("$ID"), []byte(id))
	}
	if d, err := alerts.Decode(value); err == nil {
		d.Normalize()
		x.digest = d.Digest()
	}
	m := kafka.Message{Topic: b.Topic(bus.TopicAlerts), Key: []byte(key), Value: value, Time: now}
	sign := func(k *busauth.Keyring, purpose string, recKey, v []byte) {
		m.Headers = []kafka.Header{{Key: busauth.Header, Value: []byte(k.Sign(purpose, recKey, v))}}
	}
	switch op.auth {
	case aValid:
		sign(keys, bus.TopicAlerts, m.Key, m.Value)
	case aMissing:
	case aForeign:
		sign(other, bus.TopicAlerts, m.Key, m.Value)
	case aOtherValue:
		sign(keys, bus.TopicAlerts, m.Key, append(bytes.Clone(m.Value), ' '))
	case aWrongPurpose:
		sign(keys, bus.TopicReceipts, m.Key, m.Value)
	case aAltered:
		sign(keys, bus.TopicAlerts, m.Key, m.Value)
		if len(m.Value) == 0 {
			m.Value = []byte{'{'}
		} else {
			m.Value = bytes.Clone(m.Value)
			m.Value[len(m.Value)/2] ^= 1
		}
	case aMalformed:
		m.Headers = []kafka.Header{{Key: busauth.Header, Value: bytes.Clone(raw)}}
	case aOtherRecKey:
		sign(keys, bus.TopicAlerts, append(bytes.Clone(m.Key), 'z'), m.Value)
	}
	if op.auth != aValid {
		x.reason, x.ok = fanout.ReasonUnissued, false
	}
	x.msg = m
	return x
}

// outcomes reads the worker's writes for one batch, in order. A fan-out
// is a run of writes of jobs and decision receipts (a slice at a time, in
// any order) closed by the alert receipt, written on its own once every
// one of them was acknowledged (the recorder logs a write when it
// returned).
func outcomes(t *testing.T, events []fuzzEvent) []fuzzOutcome {
	t.Helper()
	var out []fuzzOutcome
	var cur *fuzzOutcome
	for _, ev := range events {
		switch ev.topic {
		case bus.TopicQuarantine:
			if cur != nil {
				t.Fatalf("a quarantine record in the middle of a fan-out: %+v", events)
			}
			for j := range ev.msgs {
				out = append(out, fuzzOutcome{quarantine: &ev.msgs[j]})
			}
		case bus.TopicDeliveries:
			if cur == nil {
				cur = &fuzzOutcome{}
			}
			for _, m := range ev.msgs {
				js, bad, err := delivery.DecodeJobs(m.Value, nil)
				if err != nil || len(bad) > 0 {
					t.Fatalf("a record of jobs that does not decode: %v %v\n%s", err, bad, m.Value)
				}
				for _, j := range js {
					cur.jobs = append(cur.jobs, fuzzJob{ID: j.ID, Alert: j.AlertJSON, Subscriber: j.Subscriber, Target: j.Target})
				}
			}
		case bus.TopicReceipts:
			if cur == nil {
				cur = &fuzzOutcome{}
			}
			for _, m := range ev.msgs {
				rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
				if err != nil {
					t.Fatalf("a record of receipts that does not decode: %v\n%s", err, m.Value)
				}
				for _, r := range rs {
					if r.Kind != delivery.KindAlert {
						continue
					}
					if len(ev.msgs) != 1 || len(rs) != 1 {
						t.Fatalf("the alert receipt of %s is written with other receipts, not after them", r.AlertID)
					}
					cur.alert = &r
					out = append(out, *cur)
					cur = nil
				}
			}
		default:
			t.Fatalf("a write to %s on its own", ev.topic)
		}
	}
	if cur != nil {
		t.Fatalf("a fan-out without its alert receipt: %+v", events)
	}
	return out
}

// check matches what the worker wrote for a batch against the model,
// message by message, and checks the invariants.
func (st *fuzzState) check(t *testing.T, batch []expectation, got []fuzzOutcome) {
	t.Helper()
	k := 0
	next := func() *fuzzOutcome {
		if k < len(got) {
			return &got[k]
		}
		return nil
	}
	for i, x := range batch {
		id := string(x.msg.Key)
		o := next()
		quarantined := o != nil && o.quarantine != nil && sameRecord(*o.quarantine, x.msg)
		fannedOut := o != nil && o.alert != nil && o.alert.AlertID == id && x.digest != "" && o.alert.Digest == x.digest
		prev, bound := st.bound[id]
		want := "nothing"
		switch {
		case x.reason != "":
			want = "quarantine " + x.reason
		case x.ok && !bound:
			want = "fan-out"
		case x.ok && prev != x.digest:
			want = "quarantine " + fanout.ReasonDuplicateID
		case x.ok:
			want = "nothing" // the identical alert again
		case quarantined:
			want = "quarantine " + bus.Header(*o.quarantine, bus.HeaderReason) // the fuzzer's bytes, refused
			if want == "quarantine "+fanout.ReasonDuplicateID && (!bound || prev == x.digest) {
				t.Fatalf("batch message %d (%s): duplicate-id, but %s is not bound to other content", i, id, id)
			}
		case fannedOut:
			if bound {
				t.Fatalf("batch message %d (%s): the fuzzer's alert was fanned out under an id already fanned out (%s, this is %s)", i, id, prev, x.digest)
			}
			want = "fan-out"
		default:
			if !bound || prev != x.digest {
				t.Fatalf("batch message %d (%s): the fuzzer's bytes were neither quarantined nor fanned out, and are not the alert %s names: %q", i, id, id, x.msg.Value)
			}
		}
		switch {
		case strings.HasPrefix(want, "quarantine "):
			if !quarantined {
				t.Fatalf("batch message %d (%s, %s): want %s, got %s", i, id, x.msg.Headers, want, describe(o))
			}
			if r := bus.Header(*o.quarantine, bus.HeaderReason); "quarantine "+r != want {
				t.Fatalf("batch message %d (%s): want %s, got quarantine %s (%s)", i, id, want, r, bus.Header(*o.quarantine, bus.HeaderError))
			}
			k++
		case want == "fan-out":
			if !fannedOut {
				t.Fatalf("batch message %d (%s): want a fan-out of %s, got %s", i, id, x.digest, describe(o))
			}
			if !st.authentic[id+"\x00"+string(x.msg.Value)] {
				t.Fatalf("batch message %d (%s): fanned out without a valid authenticator", i, id)
			}
			if x.ok && len(o.jobs) == 0 {
				t.Fatalf("batch message %d (%s): fanned out with no job", i, id)
			}
			for _, j := range o.jobs {
				if !bytes.Equal(bytes.TrimSpace(j.Alert), bytes.TrimSpace(x.msg.Value)) {
					t.Fatalf("batch message %d (%s): a job carries other bytes than the message:\n%s\n%s", i, id, j.Alert, x.msg.Value)
				}
				if !st.authentic[id+"\x00"+string(x.msg.Value)] {
					t.Fatalf("batch message %d (%s): a job for a message not authenticated for its id", i, id)
				}
				if j.ID != delivery.ID(id, j.Subscriber, j.Target) {
					t.Fatalf("batch message %d (%s): job id %s is not the delivery id of (%s, %s, %s)", i, id, j.ID, id, j.Subscriber, j.Target)
				}
				if st.written[j.ID] {
					t.Fatalf("batch message %d (%s): a second job %s (%s → %s): an alert is fanned out once", i, id, j.ID, j.Subscriber, j.Target)
				}
				st.written[j.ID] = true
			}
			st.bound[id] = x.digest
			k++
		default: // nothing written for this message
		}
	}
	if k != len(got) {
		t.Fatalf("the worker wrote more than the batch called for: %s", describe(&got[k]))
	}
}

// sameRecord reports whether q, a quarantine record, is a copy of m: its
// key and value, with only the refusal's headers (bus.Rejection keeps
// none of m's).
func sameRecord(q, m kafka.Message) bool {
	var names []string
	for _, h := range q.Headers {
		if busauth.Covers(h.Key) {
			names = append(names, h.Key)
		}
	}
	return bytes.Equal(q.Key, m.Key) && bytes.Equal(q.Value, m.Value) &&
		slices.Equal(names, []string{bus.HeaderReason, bus.HeaderError, bus.HeaderSource})
}

func describe(o *fuzzOutcome) string {
	switch {
	case o == nil:
		return "nothing"
	case o.quarantine != nil:
		return fmt.Sprintf("quarantine %s of %s (%s)", bus.Header(*o.quarantine, bus.HeaderReason), o.quarantine.Key, bus.Header(*o.quarantine, bus.HeaderError))
	default:
		return fmt.Sprintf("a fan-out of %s (%s) with %d jobs", o.alert.AlertID, o.alert.Digest, len(o.jobs))
	}
}
