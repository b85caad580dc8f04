package view

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"go.etcd.io/bbolt"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
)

// rec is one authentic record, decoded once, on its way to the writer.
type rec struct {
	topic     string
	key       string
	partition int
	offset    int64
	time      time.Time

	// alerts
	value  []byte
	alert  *alerts.Alert
	digest string
	// pending
	release *record.Release
	// receipts: one record's, in the order they are applied
	receipts []delivery.Receipt
	// audit
	audit *record.Audit
	// quarantine
	quarantine *Quarantine
	// alert-ids
	binding *record.Binding
	// unaccepted is set, instead of binding, for a record of alert-ids
	// under an alert id that the view does not accept (why: a
	// record.Displaced* reason): it displaces the binding held, if any
	// (applyBinding).
	unaccepted string
}

// notDecided reports whether an authentic record of receipts holds only
// outcomes and acknowledgements, which a view of ScopeFanOut does not keep,
// without decoding it: every writer of receipts encodes them with
// encoding/json or delivery.Receipt.Encode, which write the kind first and
// no white space, and packs them with delivery.PackReceipts, so that every
// receipt of a record opens with {"kind":" (which, in JSON, opens nothing
// else: a quote inside a string is escaped). A record that does not start
// so is decoded and judged by its kinds.
func notDecided(value []byte) bool {
	if len(value) == 0 || value[0] != '[' {
		return outcomeOrAck(value)
	}
	for v := value[1:]; ; {
		if !outcomeOrAck(v) {
			return false
		}
		i := bytes.Index(v[1:], receiptOpen)
		if i < 0 {
			return true
		}
		v = v[1+i:]
	}
}

// receiptOpen opens every receipt Herald writes.
var receiptOpen = []byte(`{"kind":"`)

// outcomeOrAck reports whether v opens a receipt that is an outcome or an
// acknowledgement.
func outcomeOrAck(v []byte) bool {
	return bytes.HasPrefix(v, []byte(`{"kind":"`+delivery.KindOutcome+`"`)) ||
		bytes.HasPrefix(v, []byte(`{"kind":"`+delivery.KindAck+`"`))
}

// decode reads an authentic record of topic; an error means the record is
// skipped as malformed, and neither an error nor a record that it says
// nothing the view keeps (a quarantined message that is no alert).
func decode(topic string, m kafka.Message) (*rec, error) {
	r := &rec{topic: topic, key: string(m.Key), partition: m.Partition, offset: m.Offset, time: m.Time}
	switch topic {
	case bus.TopicAlerts:
		if !alerts.ValidID(r.key) {
			return nil, fmt.Errorf("key %q is not an alert id", truncate(r.key))
		}
		a, err := alerts.Decode(m.Value)
		if err != nil {
			return nil, err
		}
		if a.ID != r.key {
			return nil, fmt.Errorf("alert id %q is not the record's key %q", truncate(a.ID), r.key)
		}
		a.Normalize()
		r.value, r.alert, r.digest = m.Value, a, a.Digest()
	case bus.TopicPending:
		if !alerts.ValidID(r.key) {
			return nil, fmt.Errorf("key %q is not an alert id", truncate(r.key))
		}
		var rel record.Release
		if err := json.Unmarshal(m.Value, &rel); err != nil {
			return nil, fmt.Errorf("decode release event: %w", err)
		}
		if rel.ID != r.key {
			return nil, fmt.Errorf("release event of %q is not the record's key %q", truncate(rel.ID), r.key)
		}
		r.release = &rel
	case bus.TopicReceipts:
		rs, err := delivery.DecodeReceipts(r.key, m.Value)
		if err != nil {
			return nil, err
		}
		r.receipts = rs
	case bus.TopicAudit:
		var a record.Audit
		if err := json.Unmarshal(m.Value, &a); err != nil {
			return nil, fmt.Errorf("decode audit entry: %w", err)
		}
		r.value, r.audit = m.Value, &a
	case bus.TopicQuarantine:
		id, q, err := QuarantineOf(m)
		if err != nil || q == nil {
			return nil, err
		}
		r.key, r.quarantine = id, q
	case bus.TopicAlertIDs:
		bd, err := record.DecodeBinding(m.Key, m.Value)
		if err != nil {
			return nil, err
		}
		r.binding = bd
	default:
		return nil, fmt.Errorf("topic %s is not one the view follows", topic)
	}
	return r, nil
}

// truncate shortens s, from a record, for an error message
// (alerts.Clip).
func truncate(s string) string { return alerts.Clip(s, 80, "…") }

// txn is the state of one write transaction: the receipts-side alert
// records it changed (written once at the end), and the ids whose place in
// the alert list must be worked out again.
type txn struct {
	scope      Scope
	tx         *bbolt.Tx
	pub        *bbolt.Bucket
	rel        *bbolt.Bucket
	rcpt       *bbolt.Bucket
	entries    *bbolt.Bucket
	acks       *bbolt.Bucket
	partner    *bbolt.Bucket
	pstate     *bbolt.Bucket
	pchan      *bbolt.Bucket
	ralerts    map[string]*receiptsAlert
	dirty      map[string]bool // ralerts to write
	touched    map[string]bool // ids to place in the list again
	entryCache map[string]*entryState
	// pullRev counts, per subscriber, the receipts of this transaction
	// that change what its pull collection is built from (PullRevision).
	pullRev map[string]uint64
	keyBuf  []byte
	// superseded is set when an alert receipt applied here names another
	// digest than the record the view holds for the alert (Retained no
	// longer answers it).
	superseded bool
	// displaced is set when a record applied here displaced a binding
	// (applyBinding).
	displaced bool
}

// outcome is what a transaction changed that the view tells beyond its
// store. superseded reports that an alert receipt applied names another
// alert than the record the view holds under its id: Retained, which
// answered that record before, no longer does. displaced reports that a
// record applied displaced a binding (applyBinding).
type outcome struct {
	superseded, displaced bool
}

// apply applies a group of batches in one transaction, with their
// offsets.
func apply(tx *bbolt.Tx, scope Scope, group []*batch) (outcome, error) {
	t := &txn{
		scope:      scope,
		tx:         tx,
		pub:        tx.Bucket(bPublished),
		rel:        tx.Bucket(bRelease),
		rcpt:       tx.Bucket(bReceipts),
		entries:    tx.Bucket(bEntries),
		acks:       tx.Bucket(bAcks),
		partner:    tx.Bucket(bPartner),
		pstate:     tx.Bucket(bPartnerState),
		pchan:      tx.Bucket(bPartnerChan),
		ralerts:    map[string]*receiptsAlert{},
		dirty:      map[string]bool{},
		touched:    map[string]bool{},
		entryCache: map[string]*entryState{},
		pullRev:    map[string]uint64{},
	}
	t.entries.FillPercent = 0.9 // alert ids mostly grow: entries are mostly appended
	offsets := tx.Bucket(bOffsets)
	for _, b := range group {
		for _, r := range b.recs {
			var err error
			switch r.topic {
			case bus.TopicAlerts:
				err = t.applyAlert(r)
			case bus.TopicPending:
				err = t.applyRelease(r)
			case bus.TopicReceipts:
				for i := range r.receipts {
					rc := &r.receipts[i]
					if scope == ScopeFanOut && rc.Kind != delivery.KindAlert && rc.Kind != delivery.KindDecision {
						continue // not kept (notDecided let it through)
					}
					if err = t.applyReceipt(rc); err != nil {
						break
					}
				}
			case bus.TopicAudit:
				err = t.applyAudit(r)
			case bus.TopicQuarantine:
				err = t.applyQuarantine(r)
			case bus.TopicAlertIDs:
				err = t.applyBinding(r)
			}
			if err != nil {
				return outcome{}, fmt.Errorf("%s[%d]@%d: %w", r.topic, r.partition, r.offset, err)
			}
		}
		k := offsetKey(b.topic, b.partition)
		s := stored{next: b.next, fpOffset: b.last, fp: b.fp}
		if b.last < 0 {
			// Only the offset moved: keep the fingerprint of the last
			// record applied.
			prev, ok := decodeStored(offsets.Get(k))
			if !ok {
				prev.fpOffset = -1
			}
			s.fpOffset, s.fp = prev.fpOffset, prev.fp
		}
		if err := offsets.Put(k, s.encode()); err != nil {
			return outcome{}, err
		}
	}
	if err := t.flushEntries(); err != nil {
		return outcome{}, err
	}
	if err := t.flushPullRev(); err != nil {
		return outcome{}, err
	}
	for id := range t.dirty {
		v, err := json.Marshal(t.ralerts[id])
		if err != nil {
			return outcome{}, err
		}
		if err := t.rcpt.Put([]byte(id), v); err != nil {
			return outcome{}, err
		}
	}
	if scope == ScopeFanOut {
		return t.outcome(), nil // no alert list
	}
	for id := range t.touched {
		if err := t.place(id); err != nil {
			return outcome{}, err
		}
	}
	return t.outcome(), nil
}

func (t *txn) outcome() outcome {
	return outcome{superseded: t.superseded, displaced: t.displaced}
}

func timeOrZero(p *time.Time) time.Time {
	if p == nil {
		return time.Time{}
	}
	return *p
}

// applyAlert applies a record of the alerts topic: the first of an id is
// the alert; later ones are counted as duplicates or conflicts.
func (t *txn) applyAlert(r *rec) error {
	id := []byte(r.key)
	if v := t.pub.Get(id); v != nil {
		var p Published
		if err := json.Unmarshal(v, &p); err != nil {
			return corrupt("published", id, err)
		}
		if p.Digest == r.digest {
			p.Duplicates++
		} else {
			p.Conflicts++
		}
		return putJSON(t.pub, id, &p)
	}
	a := r.alert
	p := Published{
		ID: a.ID, Digest: r.digest, Partition: r.partition, Offset: r.offset, Time: r.time,
		Type: a.Type, TLP: a.TLP, Marking: a.Marking, Title: a.Title, References: a.References,
		IssuedBy: a.IssuedBy, IssuedAt: timeOrZero(a.IssuedAt), ApprovedBy: a.ApprovedBy,
		ApprovedAt: timeOrZero(a.ApprovedAt), ExpiresAt: timeOrZero(a.ExpiresAt), NotBefore: timeOrZero(a.NotBefore),
	}
	if err := putJSON(t.pub, id, &p); err != nil {
		return err
	}
	t.touched[r.key] = true
	return t.tx.Bucket(bPublishedRaw).Put(id, r.value)
}

// applyBinding applies a record of the alert-ids topic by the rule every
// reader follows (record.StepBinding): the first binding of an id is
// kept; the fan-out never writes another that differs, and a copy of the
// same binding changes nothing but to end a displacement. A
// later record under a bound id that the view does not accept (r.unaccepted,
// or a binding to another digest) displaces the binding: compaction, which
// keeps the latest record under a key, would erase it. The id is marked in
// bindings.displaced until a copy of the binding follows (the fan-out
// writes one: View.Displaced). The first binding of an id costs nothing
// more; a record before it displaces nothing (the binding is the later).
func (t *txn) applyBinding(r *rec) error {
	b := t.tx.Bucket(bBindings)
	id := []byte(r.key)
	var held *record.Binding
	if v := b.Get(id); v != nil {
		held = &record.Binding{}
		if err := json.Unmarshal(v, held); err != nil {
			return corrupt("binding", id, err)
		}
	}
	switch record.StepBinding(held, r.binding) {
	case record.BindingBinds:
		return putJSON(b, id, r.binding)
	case record.BindingCopies:
		// The binding in force is the latest record again.
		return t.tx.Bucket(bDisplaced).Delete(id)
	case record.BindingDisplaces:
		why := r.unaccepted
		if r.binding != nil {
			why = record.DisplacedOtherDigest
		}
		t.displaced = true
		return putJSON(t.tx.Bucket(bDisplaced), id, displacement{Partition: r.partition, Offset: r.offset, Why: why})
	}
	return nil
}

// displacement is the value of bindings.displaced: the latest record under
// the id that displaced its binding (record.Displaced).
type displacement struct {
	Partition int    `json:"partition"`
	Offset    int64  `json:"offset"`
	Why       string `json:"why"`
}

// applyRelease folds an event of the release log (record.ReleaseState).
func (t *txn) applyRelease(r *rec) error {
	id := []byte(r.key)
	ev := *r.release
	var st releaseRecord
	if v := t.rel.Get(id); v != nil {
		if err := json.Unmarshal(v, &st); err != nil {
			return corrupt("release", id, err)
		}
	}
	before := st.State
	raw := ev.Alert
	ev.Alert = nil // kept apart, in release.raw
	st.State.Apply(ev)
	switch {
	case st.State.Submitted == nil:
		return nil // a decision with nothing submitted: nothing waits
	case before.Submitted == nil:
		if a, err := alerts.Decode(raw); err == nil {
			a.Normalize()
			st.Type, st.TLP, st.Marking, st.Title = a.Type, a.TLP, a.Marking, a.Title
		}
		if err := t.tx.Bucket(bReleaseRaw).Put(id, raw); err != nil {
			return err
		}
	case before.Conflicts == st.State.Conflicts && before.Approved == st.State.Approved && before.Rejected == st.State.Rejected:
		return nil // changed nothing
	}
	t.touched[r.key] = true
	return putJSON(t.rel, id, &st)
}

// ralert returns the receipts-side record of id, loading or making it.
func (t *txn) ralert(id string) (*receiptsAlert, error) {
	if ra, ok := t.ralerts[id]; ok {
		return ra, nil
	}
	var ra *receiptsAlert
	if v := t.rcpt.Get([]byte(id)); v != nil {
		ra = &receiptsAlert{}
		if err := json.Unmarshal(v, ra); err != nil {
			return nil, corrupt("receipts", []byte(id), err)
		}
	}
	t.ralerts[id] = ra
	return ra, nil
}

// supersedes sets t.superseded when m, an alert's first alert receipt,
// names another digest than the record the view holds under its id
// (fannedOut).
func (t *txn) supersedes(m ledger.Meta) error {
	v := t.pub.Get([]byte(m.ID))
	if v == nil || m.Digest == "" {
		return nil
	}
	var p struct {
		Digest string `json:"digest"`
	}
	if err := json.Unmarshal(v, &p); err != nil {
		return corrupt("published", []byte(m.ID), err)
	}
	if p.Digest != m.Digest {
		t.superseded = true
	}
	return nil
}

// visible reports whether a partner may see an entry with this decision:
// content or a notice went to it. Withheld entries (and entries with no
// decision) are never shown to the partner.
func visible(decision string) bool {
	return decision == delivery.Deliver || decision == delivery.Notice
}

// applyReceipt folds a receipt as ledger.Ledger.Add does, keeping the
// alert's counts per state and the partner indexes.
func (t *txn) applyReceipt(r *delivery.Receipt) error {
	ra, err := t.ralert(r.AlertID)
	if err != nil {
		return err
	}
	if ra == nil {
		ra = &receiptsAlert{Meta: ledger.Meta{ID: r.AlertID}, First: r.At}
		t.ralerts[r.AlertID] = ra
		t.touched[r.AlertID], t.dirty[r.AlertID] = true, true
	}
	switch r.Kind {
	case delivery.KindAlert:
		if ra.Meta.FannedOut.IsZero() {
			ra.Meta.Apply(*r)
			t.touched[r.AlertID], t.dirty[r.AlertID] = true, true
			if err := t.supersedes(ra.Meta); err != nil {
				return err
			}
		}
	case delivery.KindAck:
		k, ack := join(r.AlertID, r.Subscriber), ledger.AckOf(*r)
		if val := t.acks.Get(k); val != nil {
			var held ledger.Ack
			if err := json.Unmarshal(val, &held); err != nil {
				return corrupt("ack", k, err)
			}
			if !ack.Replaces(held, t.decidedFor(r.AlertID, r.Subscriber)) {
				return nil
			}
		} else {
			ra.Acks++
			t.dirty[r.AlertID] = true
		}
		return putJSON(t.acks, k, &ack)
	case delivery.KindDecision, delivery.KindOutcome:
		return t.applyEntry(ra, r)
	}
	return nil
}

// decidedFor returns whether alert id was decided for subscriber's record
// of an incarnation (ledger.Ack.Replaces): an entry of the partner, as
// stored or as folded by the transaction, has a decision naming it.
func (t *txn) decidedFor(id, subscriber string) func(incarnation string) bool {
	return func(incarnation string) bool {
		if incarnation == "" {
			return false
		}
		prefix := join(id, subscriber, "")
		for k, es := range t.entryCache {
			if strings.HasPrefix(k, string(prefix)) && es.cur.Decision != "" && es.cur.Incarnation == incarnation {
				return true
			}
		}
		c := t.entries.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if e, err := decodeEntry(v); err == nil && e.Decision != "" && e.Incarnation == incarnation {
				return true
			}
		}
		return false
	}
}

// entryState is an entry touched by the transaction: as stored before it
// (nil when new) and as folded so far. Entries are written, and their
// counts and partner index keys changed, once per transaction, in key
// order: a decision and its outcomes in one batch cost one write.
type entryState struct {
	key  string
	id   string
	orig *storedEntry
	cur  *storedEntry
}

func (t *txn) applyEntry(ra *receiptsAlert, r *delivery.Receipt) error {
	t.keyBuf = append(append(append(append(t.keyBuf[:0], r.AlertID...), 0), r.Subscriber...), 0)
	t.keyBuf = append(t.keyBuf, r.Target...)
	es := t.entryCache[string(t.keyBuf)]
	if es == nil {
		es = &entryState{key: string(t.keyBuf), id: r.AlertID}
		if v := t.entries.Get(t.keyBuf); v != nil {
			orig, err := decodeEntry(v)
			if err != nil {
				return corrupt("entry", t.keyBuf, err)
			}
			cur := *orig
			es.orig, es.cur = orig, &cur
		} else {
			es.cur = &storedEntry{at: ra.Meta.FannedOut}
			if es.cur.at.IsZero() {
				es.cur.at = r.At
			}
		}
		t.entryCache[es.key] = es
	}
	es.cur.Apply(*r)
	// What a pull collection is built from: the partner's visible pull
	// entries, their decision, mode, delivery id and time. Outcomes move
	// only the state (whether the partner pulled it), unless the entry
	// has no time of its own and sorts by its last update. Counted per
	// receipt, so a view rebuilt in other transactions counts alike.
	if t.scope == ScopeAll && es.cur.Channel == delivery.ChannelPull && (r.Kind == delivery.KindDecision || es.cur.at.IsZero()) {
		t.pullRev[es.cur.Subscriber]++
	}
	return nil
}

// flushPullRev adds the transaction's counts to pull.rev.
func (t *txn) flushPullRev() error {
	if len(t.pullRev) == 0 {
		return nil
	}
	b := t.tx.Bucket(bPullRev)
	subs := make([]string, 0, len(t.pullRev))
	for sub := range t.pullRev {
		subs = append(subs, sub)
	}
	slices.Sort(subs)
	for _, sub := range subs {
		var n uint64
		if v := b.Get([]byte(sub)); v != nil {
			if len(v) != 8 {
				return corrupt("pull.rev", []byte(sub), errors.New("not 8 bytes"))
			}
			n = binary.BigEndian.Uint64(v)
		}
		if err := b.Put([]byte(sub), binary.BigEndian.AppendUint64(nil, n+t.pullRev[sub])); err != nil {
			return err
		}
	}
	return nil
}

// flushEntries writes the entries the transaction changed, their alerts'
// counts per state and the partner indexes.
func (t *txn) flushEntries() error {
	keys := make([]string, 0, len(t.entryCache))
	for k := range t.entryCache {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var pDel, pPut, sDel, sPut, cDel, cPut [][]byte
	for _, k := range keys {
		es := t.entryCache[k]
		old, e := es.orig, es.cur
		if err := t.entries.Put([]byte(k), encodeEntry(e)); err != nil {
			return err
		}
		if old == nil || old.State != e.State {
			ra := t.ralerts[es.id]
			if ra.Counts == nil {
				ra.Counts = map[string]int{}
			}
			if old != nil {
				if ra.Counts[old.State]--; ra.Counts[old.State] <= 0 {
					delete(ra.Counts, old.State)
				}
			}
			ra.Counts[e.State]++
			t.dirty[es.id] = true
		}
		if t.scope == ScopeFanOut {
			continue // no partner indexes
		}
		wasVisible, isVisible := old != nil && visible(old.Decision), visible(e.Decision)
		if wasVisible && (!isVisible || old.State != e.State) {
			sDel = append(sDel, partnerStateKey(old, es.id))
		}
		// An entry's channel, like its time, is fixed by its first
		// receipt (ledger.Entry.Apply): the channel index changes with the
		// partner index.
		if wasVisible && !isVisible {
			pDel = append(pDel, partnerKey(old, es.id))
			cDel = append(cDel, partnerChannelKey(old, es.id))
		}
		if isVisible && (!wasVisible || old.State != e.State) {
			sPut = append(sPut, partnerStateKey(e, es.id))
		}
		if isVisible && !wasVisible {
			pPut = append(pPut, partnerKey(e, es.id))
			cPut = append(cPut, partnerChannelKey(e, es.id))
		}
	}
	for _, op := range []struct {
		b    *bbolt.Bucket
		keys [][]byte
		put  bool
	}{{t.pstate, sDel, false}, {t.pchan, cDel, false}, {t.partner, pDel, false},
		{t.pstate, sPut, true}, {t.pchan, cPut, true}, {t.partner, pPut, true}} {
		slices.SortFunc(op.keys, bytes.Compare)
		for _, k := range op.keys {
			var err error
			if op.put {
				err = op.b.Put(k, nil)
			} else {
				err = op.b.Delete(k)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// partnerPlace is the part of the partner index keys after the subscriber
// (and state): BE64(time) id 0x00 target.
func partnerPlace(b []byte, e *storedEntry, id string) []byte {
	b = appendTime(b, e.at)
	b = append(append(b, id...), 0)
	return append(b, e.Target...)
}

func partnerKey(e *storedEntry, id string) []byte {
	return partnerPlace(append([]byte(e.Subscriber), 0), e, id)
}

func partnerStateKey(e *storedEntry, id string) []byte {
	return partnerPlace(join(e.Subscriber, e.State, ""), e, id)
}

func partnerChannelKey(e *storedEntry, id string) []byte {
	return partnerPlace(join(e.Subscriber, e.Channel, ""), e, id)
}

// applyQuarantine keeps, of the records that refused one record of the
// alerts topic, the one Quarantine.Before puts first. Whether it marks the
// alert listed under the id is judged when the alert is placed
// (records.place): the alerts topic may not have been read yet.
func (t *txn) applyQuarantine(r *rec) error {
	b := t.tx.Bucket(bQuarantine)
	k := quarantineKey(r.key, r.quarantine.SourcePartition, r.quarantine.SourceOffset)
	if v := b.Get(k); v != nil {
		var cur Quarantine
		if err := json.Unmarshal(v, &cur); err != nil {
			return corrupt("quarantine", k, err)
		}
		if !r.quarantine.Before(&cur) {
			return nil
		}
	}
	t.touched[r.key] = true
	return putJSON(b, k, r.quarantine)
}

// quarantineKey is the quarantine bucket's key of the record of the
// alerts topic at partition and offset, under id.
func quarantineKey(id string, partition int, offset int64) []byte {
	k := append([]byte(id), 0)
	k = binary.BigEndian.AppendUint32(k, uint32(partition))
	return binary.BigEndian.AppendUint64(k, uint64(offset))
}

// applyAudit stores an audit entry under its time and place, and in the
// actor and action indexes.
func (t *txn) applyAudit(r *rec) error {
	k := appendTime(nil, r.audit.At)
	k = binary.BigEndian.AppendUint32(k, uint32(r.partition))
	k = binary.BigEndian.AppendUint64(k, uint64(r.offset))
	if err := t.tx.Bucket(bAudit).Put(k, r.value); err != nil {
		return err
	}
	if err := t.tx.Bucket(bAuditActor).Put(append(lenPrefixed(r.audit.Actor), k...), nil); err != nil {
		return err
	}
	return t.tx.Bucket(bAuditAction).Put(append(lenPrefixed(r.audit.Action), k...), nil)
}

func putJSON(b *bbolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}

// State bytes of the list bucket.
const (
	listAll         = 'a'
	listPending     = 'p'
	listPublished   = 'u'
	listRejected    = 'r'
	listQuarantined = 'q'
)

// records are what the view holds of one alert id, from each topic.
type records struct {
	pub *Published
	rel *releaseRecord
	ra  *receiptsAlert
	// q is the quarantine of the published record (Quarantine.Marks),
	// if any.
	q *Quarantine
}

// load reads the records of id (without the raw alert bytes).
func load(tx *bbolt.Tx, id string, ra *receiptsAlert, haveRA bool) (records, error) {
	var rs records
	k := []byte(id)
	if v := tx.Bucket(bPublished).Get(k); v != nil {
		rs.pub = &Published{}
		if err := json.Unmarshal(v, rs.pub); err != nil {
			return rs, corrupt("published", k, err)
		}
		qk := quarantineKey(id, rs.pub.Partition, rs.pub.Offset)
		if v := tx.Bucket(bQuarantine).Get(qk); v != nil {
			var q Quarantine
			if err := json.Unmarshal(v, &q); err != nil {
				return rs, corrupt("quarantine", qk, err)
			}
			if q.Marks(rs.pub.Digest, rs.pub.Partition, rs.pub.Offset) {
				rs.q = &q
			}
		}
	}
	if v := tx.Bucket(bRelease).Get(k); v != nil {
		rs.rel = &releaseRecord{}
		if err := json.Unmarshal(v, rs.rel); err != nil {
			return rs, corrupt("release", k, err)
		}
	}
	if haveRA {
		rs.ra = ra
	} else if v := tx.Bucket(bReceipts).Get(k); v != nil {
		rs.ra = &receiptsAlert{}
		if err := json.Unmarshal(v, rs.ra); err != nil {
			return rs, corrupt("receipts", k, err)
		}
	}
	return rs, nil
}

// place returns the alert's list state byte and sort time; 0 when it is
// not listed. It depends only on what each topic holds, never on the order
// the topics were read in, so a rebuilt view lists alike. An alert is
// quarantined when the content published under its id was quarantined
// and it has no receipts: one that was fanned out stays published, and a
// quarantine record alone lists nothing.
func (rs records) place() (byte, time.Time) {
	var state byte
	switch {
	case rs.pub != nil && rs.q != nil && rs.ra == nil:
		state = listQuarantined
	case rs.pub != nil, rs.ra != nil && !rs.ra.Meta.FannedOut.IsZero(), rs.rel != nil && rs.rel.State.Approved != nil:
		state = listPublished
	case rs.rel != nil && rs.rel.State.Rejected != nil:
		state = listRejected
	case rs.rel != nil:
		state = listPending
	case rs.ra != nil:
		state = listPublished
	default:
		return 0, time.Time{}
	}
	var at time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	if rs.rel != nil {
		earliest(rs.rel.State.Submitted.At)
	}
	if rs.pub != nil {
		if !rs.pub.IssuedAt.IsZero() {
			earliest(rs.pub.IssuedAt)
		} else {
			earliest(rs.pub.Time)
		}
	}
	if rs.ra != nil {
		if !rs.ra.Meta.FannedOut.IsZero() {
			earliest(rs.ra.Meta.FannedOut)
		} else {
			earliest(rs.ra.First)
		}
	}
	return state, at
}

func listKey(state byte, at time.Time, id string) []byte {
	return append(appendTime([]byte{state}, at), id...)
}

// place puts id where it belongs in the alert list.
func (t *txn) place(id string) error {
	ra, err := t.ralert(id)
	if err != nil {
		return err
	}
	rs, err := load(t.tx, id, ra, true)
	if err != nil {
		return err
	}
	state, at := rs.place()
	if delivery.IsKeyExpiryNotice(id) {
		state = 0 // Herald's own notice, not an analyst's alert: not listed
	}
	if state == listPublished {
		if err := t.noteReleaseLag(rs.summarize(id, at, state, time.Time{}).Released().Sub(at)); err != nil {
			return err
		}
	}
	keys := t.tx.Bucket(bListKey)
	list := t.tx.Bucket(bList)
	want := appendTime([]byte{state}, at)
	cur := keys.Get([]byte(id))
	if bytes.Equal(cur, want) || (cur == nil && state == 0) {
		return nil
	}
	if len(cur) == 9 {
		var curAt [8]byte
		copy(curAt[:], cur[1:])
		for _, s := range []byte{listAll, cur[0]} {
			if err := list.Delete(append(append([]byte{s}, curAt[:]...), id...)); err != nil {
				return err
			}
		}
	}
	if state == 0 {
		return keys.Delete([]byte(id))
	}
	for _, s := range []byte{listAll, state} {
		if err := list.Put(listKey(s, at, id), nil); err != nil {
			return err
		}
	}
	return keys.Put([]byte(id), want)
}
