package view

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
)

// cursorPrefix starts every cursor; alert ids never hold ':', so a cursor
// is never mistaken for an id.
const cursorPrefix = "c:"

// QueryError is a query the view refuses: Field names the query's field
// (before, limit, state, channel, subscriber, since, action) and Message
// says what is wrong with it. Callers answer it as the caller's mistake
// (422 naming the field), every other error of a query as the view's.
type QueryError struct {
	Field, Message string
}

func (e *QueryError) Error() string { return e.Field + ": " + e.Message }

// invalid returns a QueryError of field.
func invalid(field, format string, args ...any) error {
	return &QueryError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// errNotACursor is the answer to a before that no page gave.
var errNotACursor = &QueryError{Field: "before", Message: "not a cursor from a previous page"}

func encodeCursor(place []byte) string {
	return cursorPrefix + base64.RawURLEncoding.EncodeToString(place)
}

func decodeCursor(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, cursorPrefix)
	if !ok {
		return nil, errNotACursor
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) == 0 {
		return nil, errNotACursor
	}
	return b, nil
}

func limit(n int) (int, error) {
	switch {
	case n < 0:
		return 0, invalid("limit", "%d is negative", n)
	case n == 0:
		return DefaultLimit, nil
	case n > MaxLimit:
		return MaxLimit, nil
	}
	return n, nil
}

// Published returns the alert id's first authentic record on the alerts
// topic.
func (v *View) Published(id string) (*Published, bool) {
	var p *Published
	_ = v.read(func(tx *bbolt.Tx) error {
		p = published(tx, id)
		return nil
	})
	return p, p != nil
}

// published reads Published of id in tx; nil when there is none.
func published(tx *bbolt.Tx, id string) *Published {
	val := tx.Bucket(bPublished).Get([]byte(id))
	if val == nil {
		return nil
	}
	p := &Published{}
	if err := json.Unmarshal(val, p); err != nil {
		return nil
	}
	p.Alert = bytes.Clone(tx.Bucket(bPublishedRaw).Get([]byte(id)))
	return p
}

// fannedOut returns the digest of the alert id as the fan-out fanned it
// out (its first alert receipt: ledger.Meta.Digest; once that is gone,
// its binding), or "" when neither knows one; ok is false when what the view keeps of them
// cannot be read.
func fannedOut(tx *bbolt.Tx, id string) (digest string, ok bool) {
	if val := tx.Bucket(bReceipts).Get([]byte(id)); val != nil {
		var ra receiptsAlert
		if err := json.Unmarshal(val, &ra); err != nil {
			return "", false
		}
		if ra.Meta.Digest != "" {
			return ra.Meta.Digest, true
		}
	}
	b, ok := binding(tx, id)
	if b == nil {
		return "", ok
	}
	return b.Digest, true
}

// binding reads the binding of id in tx (record.Binding); nil when there
// is none, and ok false when it cannot be read.
func binding(tx *bbolt.Tx, id string) (b *record.Binding, ok bool) {
	val := tx.Bucket(bBindings).Get([]byte(id))
	if val == nil {
		return nil, true
	}
	b = &record.Binding{}
	if err := json.Unmarshal(val, b); err != nil {
		return nil, false
	}
	return b, true
}

// Binding returns the binding of the alert id on the alert-ids topic: the
// content the fan-out fanned out under it, for ever; false when the view
// holds none.
func (v *View) Binding(id string) (*record.Binding, bool) {
	var b *record.Binding
	_ = v.read(func(tx *bbolt.Tx) error {
		b, _ = binding(tx, id)
		return nil
	})
	return b, b != nil
}

// Unbound returns the bindings missing from the alert-ids topic as the
// view holds it: one for every alert the receipts say was fanned out
// (an alert receipt with a digest) that has no binding, with the place of
// its record on the alerts topic when the view holds that record (else
// Offset -1). The fan-out writes them (backfill) once it has caught up:
// alerts fanned out before bindings existed, or by a fan-out stopped
// between an alert receipt and its binding. It reads the whole receipts
// index, one key per alert.
func (v *View) Unbound(ctx context.Context) ([]record.Binding, error) {
	var out []record.Binding
	err := v.read(func(tx *bbolt.Tx) error {
		bindings, pub := tx.Bucket(bBindings), tx.Bucket(bPublished)
		c := tx.Bucket(bReceipts).Cursor()
		for k, val := c.First(); k != nil; k, val = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			if bindings.Get(k) != nil {
				continue
			}
			var ra receiptsAlert
			if err := json.Unmarshal(val, &ra); err != nil {
				return corrupt("receipts", k, err)
			}
			m := ra.Meta
			if m.Digest == "" || m.FannedOut.IsZero() || m.ID != string(k) {
				continue
			}
			b := record.Binding{ID: m.ID, Digest: m.Digest, FannedOut: m.FannedOut, Offset: -1}
			if pv := pub.Get(k); pv != nil {
				var p Published
				if err := json.Unmarshal(pv, &p); err != nil {
					return corrupt("published", k, err)
				}
				if p.Digest == m.Digest {
					b.Partition, b.Offset = p.Partition, p.Offset
				}
			}
			out = append(out, b)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view: alerts fanned out without a binding: %w", err)
	}
	return out, nil
}

// Displaced returns the bindings the view holds that a later record under
// their id, which the view does not accept, follows on the alert-ids
// topic (record.Displaced): compaction would erase them, and a view
// rebuilt then would forget the id. The fan-out writes each again
// (fanout.Rebind); the mark ends when the view reads the copy. It reads
// only the marks, none when no binding is displaced.
func (v *View) Displaced(ctx context.Context) ([]record.Displaced, error) {
	var out []record.Displaced
	err := v.read(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bDisplaced).Cursor()
		for k, val := c.First(); k != nil; k, val = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var d displacement
			if err := json.Unmarshal(val, &d); err != nil {
				return corrupt("bindings.displaced", k, err)
			}
			b, ok := binding(tx, string(k))
			if !ok || b == nil {
				return corrupt("binding", k, errors.New("displaced, but none held"))
			}
			out = append(out, record.Displaced{Binding: *b, Partition: d.Partition, Offset: d.Offset, Why: d.Why})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view: displaced alert id bindings: %w", err)
	}
	return out, nil
}

// fannedOutRecord returns the record of the alert id the view keeps
// (published) when it is the alert the receipts say was fanned out under
// the id (its digest the alert receipt's, when they name one): nil for a
// later record with other content, which survives when retention deleted
// the alert's, and for none. It is the one rule of what answers for an
// alert's content: Retained, and the not_before a partner's rows wait for
// (partnerReader.waits).
func fannedOutRecord(tx *bbolt.Tx, id string) *Published {
	p := published(tx, id)
	if p != nil {
		if d, ok := fannedOut(tx, id); !ok || (d != "" && d != p.Digest) {
			return nil
		}
	}
	return p
}

// Retained is Published while the alerts topic still holds the record
// of the alert the id names: false for one that retention deleted
// (below its partition's log start, read at each Sync and every minute
// while the view runs), which a view rebuilt now would not hold, and for
// one whose digest is not the one the receipts say was fanned out (the
// alert receipt's, or once it is gone the binding's), when they say one:
// a later record under the id with
// other content, which a view rebuilt after retention deleted the first
// takes for the id — an id names one alert forever, and the survivor is
// not it. What answers for an alert that was fanned out from the view
// (the pull collection, Held: the fan-out's lineage) asks Retained, so
// that a view kept live and one rebuilt from Kafka answer alike, and
// never with content the partners did not receive under the id.
func (v *View) Retained(id string) (*Published, bool) {
	var p *Published
	_ = v.read(func(tx *bbolt.Tx) error {
		p = fannedOutRecord(tx, id)
		return nil
	})
	if p == nil || v.deleted(p.Partition, p.Offset) {
		return nil, false
	}
	return p, true
}

// Holding is one question about what the alerts topic holds, asked of one
// alert or of many (a partner's pull collection): the rule that tells an
// alert the view has not applied yet from one that is gone. Record answers
// Retained; for an alert the view lacks, it syncs the view with the
// alerts topic (once per Holding) and asks again; an alert still missing
// is gone. A question the view answers whole needs no Kafka. A Holding is
// for one goroutine.
type Holding struct {
	v   *View
	ctx context.Context
	// synced is set once Sync was attempted; err is its failure.
	synced bool
	err    error
}

// Holding starts a question about what the alerts topic holds; ctx bounds
// its sync.
func (v *View) Holding(ctx context.Context) *Holding { return &Holding{v: v, ctx: ctx} }

// Sync syncs the view with the alerts topic, the first time it is called
// (by Record or by its caller): from then on, an alert the view lacks was
// not on the topic when Sync was called, and one below the topic's log
// start then is not answered. A failure is returned again by later calls.
func (h *Holding) Sync() error {
	if !h.synced {
		h.synced = true
		if err := h.v.Sync(h.ctx, bus.TopicAlerts); err != nil {
			h.err = fmt.Errorf("sync the view with the alerts topic: %w", err)
		}
	}
	return h.err
}

// Record returns the record of the alert id as the alerts topic holds it
// (Retained), syncing h first when the view does not hold it. An alert
// still missing once synced is gone: an error wrapping ledger.ErrGone. A
// failure to sync is returned as it is: it says nothing of the record.
func (h *Holding) Record(id string) (*Published, error) {
	for {
		if p, ok := h.v.Retained(id); ok && len(p.Alert) > 0 {
			return p, nil
		}
		if h.synced && h.err == nil {
			return nil, fmt.Errorf("alert %s: %w", id, ledger.ErrGone)
		}
		if err := h.Sync(); err != nil {
			return nil, fmt.Errorf("alert %s as published: %w", id, err)
		}
	}
}

// Held returns the alert id as the alerts topic holds its record (a
// ledger.Published, for ledger.CheckReferences): Holding's Record,
// decoded. An alert the view lacks is waited for (one sync with the
// alerts topic), and one still missing then is gone: an error wrapping
// ledger.ErrGone. A failure to sync is returned as it is: it says nothing
// of the record. An alert the view holds is answered without Kafka: the
// fan-out asks per follow-up, and a record retention deleted since the
// log starts were last read (at each Sync of the alerts topic, and every
// startsEvery) is still answered, a window no wider than Kafka's own
// (it deletes whole segments, checking every few minutes). A caller that
// must answer as the topic holds it at the call (the publisher) syncs
// first.
func (v *View) Held(ctx context.Context, id string) (*alerts.Alert, error) {
	p, err := v.Holding(ctx).Record(id)
	if err != nil {
		return nil, err
	}
	a, err := alerts.Decode(p.Alert)
	if err != nil {
		return nil, fmt.Errorf("alert %s as published: %w", id, err)
	}
	a.Normalize()
	return a, nil
}

// Release returns the fold of the alert id's release log, with the
// submitted alert's bytes in Submitted.Alert; false when nothing was
// submitted under id, and always in a view of ScopeFanOut.
func (v *View) Release(id string) (*record.ReleaseState, bool) {
	if v.scope != ScopeAll {
		return nil, false
	}
	var r *record.ReleaseState
	_ = v.read(func(tx *bbolt.Tx) error {
		val := tx.Bucket(bRelease).Get([]byte(id))
		if val == nil {
			return nil
		}
		var st releaseRecord
		if err := json.Unmarshal(val, &st); err != nil || st.State.Submitted == nil {
			return nil
		}
		st.State.Submitted.Alert = bytes.Clone(tx.Bucket(bReleaseRaw).Get([]byte(id)))
		r = &st.State
		return nil
	})
	return r, r != nil
}

// Lookup returns what the receipts topic says of the alerts with the given
// ids: the same *ledger.Alert that ledger.FromBus(b).Lookup folds from the
// authentic receipts (the view is a drop-in for it), except that an alert
// whose alert receipt is gone (retention) while its binding on the
// alert-ids topic is held answers the binding's digest and fan-out time
// (Meta.Digest, Meta.FannedOut): an id names one alert forever. Alerts
// with neither receipts nor binding are absent from the result.
func (v *View) Lookup(ctx context.Context, ids []string) (map[string]*ledger.Alert, error) {
	out := make(map[string]*ledger.Alert, len(ids))
	err := v.read(func(tx *bbolt.Tx) error {
		rcpt, entries, acks := tx.Bucket(bReceipts), tx.Bucket(bEntries).Cursor(), tx.Bucket(bAcks).Cursor()
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, done := out[id]; done || strings.IndexByte(id, 0) >= 0 {
				continue
			}
			var ra receiptsAlert
			if val := rcpt.Get([]byte(id)); val != nil {
				if err := json.Unmarshal(val, &ra); err != nil {
					return corrupt("receipts", []byte(id), err)
				}
			}
			if ra.Meta.FannedOut.IsZero() {
				// Its alert receipt is gone (retention) or not written
				// yet: the binding, which outlives it, says which alert
				// the id names and when it was fanned out.
				b, ok := binding(tx, id)
				if !ok {
					return corrupt("binding", []byte(id), errors.New("unreadable"))
				}
				if b != nil {
					ra.Meta = v.boundMeta(tx, b)
				} else if rcpt.Get([]byte(id)) == nil {
					continue
				}
			}
			prefix := append([]byte(id), 0)
			var es []ledger.Entry
			for k, val := entries.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, val = entries.Next() {
				e, err := decodeEntry(val)
				if err != nil {
					return corrupt("entry", k, err)
				}
				es = append(es, e.Entry)
			}
			var am map[string]ledger.Ack
			for k, val := acks.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, val = acks.Next() {
				var a ledger.Ack
				if err := json.Unmarshal(val, &a); err != nil {
					return corrupt("ack", k, err)
				}
				if am == nil {
					am = map[string]ledger.Ack{}
				}
				am[a.Subscriber] = a
			}
			out[id] = ledger.Restore(ra.Meta, am, es)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("view lookup: %w", err)
	}
	return out, nil
}

// boundMeta is what the ledger says of an alert known by its binding
// alone (ledger.BoundMeta): its labels come from its record while the
// alerts topic holds it (not below its partition's log start) and it is
// the bound alert.
func (v *View) boundMeta(tx *bbolt.Tx, b *record.Binding) ledger.Meta {
	var held *alerts.Alert
	if p := published(tx, b.ID); p != nil && !v.deleted(p.Partition, p.Offset) {
		if a, err := alerts.Decode(p.Alert); err == nil {
			a.Normalize()
			held = a
		}
	}
	return ledger.BoundMeta(b, held)
}

// summarize builds the list's summary of id from what each topic holds.
func (rs records) summarize(id string, at time.Time, state byte, now time.Time) Summary {
	s := Summary{ID: id, At: at, Counts: map[string]int{}}
	switch state {
	case listPublished:
		s.State = record.StatePublished
	case listQuarantined:
		s.State = record.StateQuarantined
	case listRejected:
		s.State = record.StateRejected
	default:
		s.State = record.StatePending
		if rs.rel != nil && rs.rel.State.State(now) == record.StateExpired {
			s.State = record.StateExpired
		}
	}
	if ra := rs.ra; ra != nil {
		m := ra.Meta
		s.Title, s.Type, s.TLP, s.Marking, s.IssuedBy, s.ApprovedBy = m.Title, m.Type, m.TLP, m.Marking, m.IssuedBy, m.ApprovedBy
		s.FannedOut, s.Acks = m.FannedOut, ra.Acks
		for st, n := range ra.Counts {
			s.Counts[st] = n
		}
	}
	if r := rs.rel; r != nil {
		sub := r.State.Submitted
		s.Title, s.Type, s.TLP, s.Marking, s.IssuedBy, s.IssuedAt = r.Title, r.Type, r.TLP, r.Marking, sub.By, sub.At
		switch {
		case r.State.Approved != nil:
			s.ApprovedBy, s.ApprovedAt = r.State.Approved.By, r.State.Approved.At
		case r.State.Rejected != nil:
			s.RejectedBy, s.RejectReason, s.RejectedAt = r.State.Rejected.By, r.State.Rejected.Reason, r.State.Rejected.At
		default:
			s.ExpiresAt = sub.ExpiresAt
		}
	}
	if p := rs.pub; p != nil {
		s.Title, s.Type, s.TLP, s.Marking, s.IssuedBy, s.IssuedAt = p.Title, p.Type, p.TLP, p.Marking, p.IssuedBy, p.IssuedAt
		if p.ApprovedBy != "" {
			s.ApprovedBy, s.ApprovedAt = p.ApprovedBy, p.ApprovedAt
		}
	}
	if q := rs.q; q != nil && state == listQuarantined {
		s.QuarantineReason, s.QuarantineError, s.QuarantinedAt = q.Reason, q.Error, q.Time
	}
	return s
}

// List returns a page of the alert list, newest first, and the cursor of
// the next page ("" after the last). An alert is listed from the moment it
// was submitted, published or fanned out, whichever came first; one the
// fan-out quarantined is listed as quarantined, with the reason. A page
// costs O(limit); the pending and expired states read the pending alerts
// (those that expired are told apart at query time, by Options.Now) and
// skip the others.
func (v *View) List(q ListQuery) ([]Summary, string, error) {
	if v.scope != ScopeAll {
		return nil, "", ErrNotKept
	}
	n, err := limit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	var state byte
	switch q.State {
	case "":
		state = listAll
	case record.StatePending, record.StateExpired:
		state = listPending
	case record.StatePublished:
		state = listPublished
	case record.StateRejected:
		state = listRejected
	case record.StateQuarantined:
		state = listQuarantined
	default:
		return nil, "", invalid("state", "%q is not one of pending, published, rejected, expired, quarantined", q.State)
	}
	now := v.now()
	var items []Summary
	var next string
	err = v.read(func(tx *bbolt.Tx) error {
		var bound []byte
		if q.Before != "" {
			place, err := v.listPlace(tx, q.Before)
			if err != nil {
				return err
			}
			bound = append([]byte{state}, place...)
		}
		prefix := []byte{state}
		c := tx.Bucket(bList).Cursor()
		var last []byte
		for k := lastBefore(c, prefix, bound); k != nil; k = prev(c, prefix) {
			id := string(k[9:])
			rs, err := load(tx, id, nil, false)
			if err != nil {
				return err
			}
			st, at := rs.place()
			s := rs.summarize(id, at, st, now)
			if q.State != "" && s.State != q.State {
				continue
			}
			if len(items) == n {
				next = encodeCursor(last)
				return nil
			}
			items = append(items, s)
			last = bytes.Clone(k[1:])
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("view list: %w", err)
	}
	return items, next, nil
}

// Summary returns what the alert list says of id: the same Summary, state
// included, that List gives for it; false when id is not in the list (no
// alert was submitted, published or fanned out under it, or it is one of
// Herald's own notices). A status question about one alert asks it
// rather than paging through the list.
func (v *View) Summary(id string) (Summary, bool, error) {
	if v.scope != ScopeAll {
		return Summary{}, false, ErrNotKept
	}
	now := v.now()
	var s Summary
	var found bool
	err := v.read(func(tx *bbolt.Tx) error {
		if strings.IndexByte(id, 0) >= 0 || len(tx.Bucket(bListKey).Get([]byte(id))) != 9 {
			return nil
		}
		rs, err := load(tx, id, nil, false)
		if err != nil {
			return err
		}
		st, at := rs.place()
		s, found = rs.summarize(id, at, st, now), true
		return nil
	})
	if err != nil {
		return Summary{}, false, fmt.Errorf("view summary of %q: %w", id, err)
	}
	return s, found, nil
}

// listPlace turns a before parameter (a cursor, or an alert id) into a
// place in the list: BE64(time) id.
func (v *View) listPlace(tx *bbolt.Tx, before string) ([]byte, error) {
	if !strings.HasPrefix(before, cursorPrefix) {
		cur := tx.Bucket(bListKey).Get([]byte(before))
		if len(cur) != 9 {
			return nil, invalid("before", "alert %q is not in the list", before)
		}
		return append(bytes.Clone(cur[1:]), before...), nil
	}
	place, err := decodeCursor(before)
	if err != nil || len(place) < 9 {
		return nil, errNotACursor
	}
	return place, nil
}

// partnerStates are the delivery states a partner may filter by.
var partnerStates = map[string]bool{
	delivery.StatePending: true, delivery.StateDelivered: true, delivery.StateRetrying: true,
	delivery.StateDead: true, delivery.StateExpired: true, delivery.StateDisabled: true,
	delivery.StateAvailable: true,
}

// partnerChannels are the channels a partner may filter by.
var partnerChannels = map[string]bool{
	delivery.ChannelEmail: true, delivery.ChannelWebhook: true, delivery.ChannelPull: true,
}

// PartnerDeliveries returns a page of subscriber's own deliveries, newest
// alert first, and the cursor of the next page. It never returns an entry
// whose decision withheld the alert from the partner (nor one with no
// decision): a partner must not learn of alerts it was not cleared for. A
// page costs O(limit), with a state, a channel or neither; with both, it
// walks the two indexes together, seeking each to the other's place, so
// that it costs O(limit) plus the entries of the smaller side it skips;
// with an alert, O(the partner's targets).
func (v *View) PartnerDeliveries(subscriber string, q PartnerQuery) ([]PartnerDelivery, string, error) {
	if v.scope != ScopeAll {
		return nil, "", ErrNotKept
	}
	n, err := limit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	if subscriber == "" || strings.IndexByte(subscriber, 0) >= 0 {
		return nil, "", invalid("subscriber", "missing or not a subscriber id")
	}
	if q.State != "" && !partnerStates[q.State] {
		return nil, "", invalid("state", "%q is not a delivery state (pending, delivered, available, retrying, dead, expired, disabled)", q.State)
	}
	if q.Channel != "" && !partnerChannels[q.Channel] {
		return nil, "", invalid("channel", "%q is not a channel (email, webhook, pull)", q.Channel)
	}
	var after []byte
	if q.Before != "" {
		if after, err = decodeCursor(q.Before); err != nil {
			return nil, "", err
		}
	}
	var out []PartnerDelivery
	var next string
	err = v.read(func(tx *bbolt.Tx) error {
		r := partnerReader{tx: tx, metas: map[string]*receiptsAlert{}, at: q.At, incarnation: q.Incarnation, waiting: map[string]bool{}}
		if q.Alert != "" {
			return r.ofAlert(subscriber, q, after, n, &out, &next)
		}
		var walks []indexWalk
		if q.State != "" {
			walks = append(walks, indexWalk{tx.Bucket(bPartnerState).Cursor(), join(subscriber, q.State, "")})
		}
		if q.Channel != "" {
			walks = append(walks, indexWalk{tx.Bucket(bPartnerChan).Cursor(), join(subscriber, q.Channel, "")})
		}
		if len(walks) == 0 {
			walks = append(walks, indexWalk{tx.Bucket(bPartner).Cursor(), append([]byte(subscriber), 0)})
		}
		var last []byte
		return places(walks, after, func(place []byte) (bool, error) {
			if len(place) < 10 {
				return false, corrupt("partner index", place, errors.New("short key"))
			}
			id, target, ok := strings.Cut(string(place[8:]), "\x00")
			if !ok {
				return false, corrupt("partner index", place, errors.New("no target"))
			}
			d, ok, err := r.row(id, subscriber, target)
			if err != nil {
				return false, err
			}
			if !ok || (q.State != "" && d.State != q.State) || (q.Channel != "" && d.Channel != q.Channel) {
				return true, nil
			}
			if len(out) == n {
				next = encodeCursor(last)
				return false, nil
			}
			out = append(out, d)
			last = bytes.Clone(place)
			return true, nil
		})
	})
	if err != nil {
		return nil, "", fmt.Errorf("view partner deliveries: %w", err)
	}
	return out, next, nil
}

// indexWalk reads one partner index (partner, partner.state or
// partner.channel) within a prefix, newest first, by place: the key after
// the prefix, BE64(time) id 0x00 target.
type indexWalk struct {
	c      *bbolt.Cursor
	prefix []byte
}

// below returns the greatest place below bound (the greatest of all when
// bound is nil), or nil.
func (w indexWalk) below(bound []byte) []byte {
	if bound != nil {
		bound = append(bytes.Clone(w.prefix), bound...)
	}
	return w.place(lastBefore(w.c, w.prefix, bound))
}

// atMost returns the greatest place that is not above place, or nil.
func (w indexWalk) atMost(place []byte) []byte {
	return w.place(lastBefore(w.c, w.prefix, append(append(bytes.Clone(w.prefix), place...), 0)))
}

// prev returns the place before the last one returned, or nil.
func (w indexWalk) prev() []byte { return w.place(prev(w.c, w.prefix)) }

func (w indexWalk) place(k []byte) []byte {
	if k == nil {
		return nil
	}
	return k[len(w.prefix):]
}

// places calls fn with each place every walk holds, newest first, below
// after (from the newest when nil), until fn returns false or an error.
// With two walks it leapfrogs: each seeks to the other's place, so that
// a run of places only one of them holds costs one seek.
func places(walks []indexWalk, after []byte, fn func(place []byte) (bool, error)) error {
	a := walks[0]
	pa := a.below(after)
	if len(walks) == 1 {
		for ; pa != nil; pa = a.prev() {
			if more, err := fn(pa); !more || err != nil {
				return err
			}
		}
		return nil
	}
	b := walks[1]
	for pa != nil {
		pb := b.atMost(pa)
		switch {
		case pb == nil:
			return nil
		case bytes.Equal(pa, pb):
			if more, err := fn(pa); !more || err != nil {
				return err
			}
			pa = a.prev()
		default: // pb < pa: a holds nothing between them that b holds
			pa = a.atMost(pb)
		}
	}
	return nil
}

// PullRevision returns the revision of what subscriber's pull collection
// is made from: the partner's pull entries the view holds, without their
// states. It changes whenever a decision about one of them is applied (an
// alert made available to pull or withheld, a withdrawal notice), and not
// when only an entry's state moves (the partner pulled the alert). A view
// rebuilt from Kafka counts alike; a rebuild while the view is open starts
// another epoch. A view of ScopeFanOut answers ErrNotKept.
func (v *View) PullRevision(subscriber string) (Revision, error) {
	if v.scope != ScopeAll {
		return Revision{}, ErrNotKept
	}
	var rev Revision
	err := v.read(func(tx *bbolt.Tx) error {
		rev.Epoch, rev.Gone = v.rebuilds.Load(), v.gone.Load()
		val := tx.Bucket(bPullRev).Get([]byte(subscriber))
		if val == nil {
			return nil
		}
		if len(val) != 8 {
			return corrupt("pull.rev", []byte(subscriber), errors.New("not 8 bytes"))
		}
		rev.Seq = binary.BigEndian.Uint64(val)
		return nil
	})
	if err != nil {
		return Revision{}, fmt.Errorf("view pull revision: %w", err)
	}
	return rev, nil
}

// partnerReader builds partner rows, reading each alert's meta once.
type partnerReader struct {
	tx    *bbolt.Tx
	metas map[string]*receiptsAlert
	// at is PartnerQuery.At; waiting holds, by alert id, whether its
	// not_before is after at.
	at      time.Time
	waiting map[string]bool
	// incarnation is PartnerQuery.Incarnation.
	incarnation string
}

// waits reports whether alert id's not_before is after r.at, or the view
// does not hold the alert yet (never when r.at is zero, nor for Herald's
// own key-expiry notices, which are never on the alerts topic and have no
// not_before). The not_before is the fanned-out alert's
// (fannedOutRecord): a later record under the id with other content, which
// survives retention of the alert's, says nothing of when the alert may
// be shown, and the alert is held as one the view lacks.
func (r *partnerReader) waits(id string) (bool, error) {
	if r.at.IsZero() || delivery.IsKeyExpiryNotice(id) {
		return false, nil
	}
	w, ok := r.waiting[id]
	if ok {
		return w, nil
	}
	// An alert the view does not hold yet (its receipts ahead of the
	// alerts topic, as while the view is rebuilt) is held too: what it
	// waits for is not known, and a partner learns of nothing early.
	w = true
	if p := fannedOutRecord(r.tx, id); p != nil {
		w = p.NotBefore.After(r.at)
	}
	r.waiting[id] = w
	return w, nil
}

// row returns the partner's row for (id, subscriber, target); ok is false
// when there is no entry or the partner may not see it.
func (r *partnerReader) row(id, subscriber, target string) (PartnerDelivery, bool, error) {
	k := join(id, subscriber, target)
	val := r.tx.Bucket(bEntries).Get(k)
	if val == nil {
		return PartnerDelivery{}, false, nil
	}
	e, err := decodeEntry(val)
	if err != nil {
		return PartnerDelivery{}, false, corrupt("entry", k, err)
	}
	return r.fromEntry(id, e)
}

// fromEntry returns the partner's row of entry e of alert id; ok is false
// when the partner may not see it: its decision withheld the alert, it
// was decided for another incarnation of the partner's record
// (ledger.Entry.Of), or the alert waits for its not_before.
func (r *partnerReader) fromEntry(id string, e *storedEntry) (PartnerDelivery, bool, error) {
	if !visible(e.Decision) || !e.Of(r.incarnation) {
		return PartnerDelivery{}, false, nil
	}
	if w, err := r.waits(id); err != nil || w {
		return PartnerDelivery{}, false, err
	}
	ra, ok := r.metas[id]
	if !ok {
		if val := r.tx.Bucket(bReceipts).Get([]byte(id)); val != nil {
			ra = &receiptsAlert{}
			if err := json.Unmarshal(val, ra); err != nil {
				return PartnerDelivery{}, false, corrupt("receipts", []byte(id), err)
			}
		}
		r.metas[id] = ra
	}
	d := PartnerDelivery{
		Alert: id, DeliveryID: e.DeliveryID, Channel: e.Channel, Target: e.Target, Mode: e.Mode, State: e.State,
		Attempts: e.Attempts, LastError: e.LastError, RetryAt: e.RetryAt, UpdatedAt: e.UpdatedAt, FannedOut: e.at,
	}
	if ra != nil {
		d.Type, d.TLP = ra.Meta.Type, ra.Meta.TLP
	}
	if val := r.tx.Bucket(bAcks).Get(join(id, e.Subscriber)); val != nil {
		var a ledger.Ack
		if err := json.Unmarshal(val, &a); err != nil {
			return PartnerDelivery{}, false, corrupt("ack", join(id, e.Subscriber), err)
		}
		if a.Of(r.incarnation) {
			d.Acknowledged, d.AcknowledgedAt = true, a.At
		}
	}
	return d, true, nil
}

// ofAlert pages the partner's entries of one alert, ordered as the partner
// index orders them.
func (r *partnerReader) ofAlert(subscriber string, q PartnerQuery, after []byte, n int, out *[]PartnerDelivery, next *string) error {
	if strings.IndexByte(q.Alert, 0) >= 0 {
		return nil
	}
	prefix := join(q.Alert, subscriber, "")
	c := r.tx.Bucket(bEntries).Cursor()
	type found struct {
		place []byte
		d     PartnerDelivery
	}
	var all []found
	for k, val := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, val = c.Next() {
		e, err := decodeEntry(val)
		if err != nil {
			return corrupt("entry", k, err)
		}
		d, ok, err := r.fromEntry(q.Alert, e)
		if err != nil {
			return err
		}
		if !ok || (q.State != "" && d.State != q.State) || (q.Channel != "" && d.Channel != q.Channel) {
			continue
		}
		place := partnerPlace(nil, e, q.Alert)
		if after != nil && bytes.Compare(place, after) >= 0 {
			continue
		}
		all = append(all, found{place, d})
	}
	// Newest first: the partner index's order, reversed.
	slices.SortFunc(all, func(a, b found) int { return bytes.Compare(b.place, a.place) })
	for i, f := range all {
		if len(*out) == n {
			*next = encodeCursor(all[i-1].place)
			return nil
		}
		*out = append(*out, f.d)
	}
	return nil
}

// Audit returns a page of the audit trail, newest first, and the cursor of
// the next page. With an actor or an action it reads that index, so a page
// costs O(limit); an object prefix alone is matched as entries are read.
func (v *View) Audit(q AuditQuery) ([]record.Audit, string, error) {
	if v.scope != ScopeAll {
		return nil, "", ErrNotKept
	}
	n, err := limit(q.Limit)
	if err != nil {
		return nil, "", err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return nil, "", invalid("since", "not before until")
	}
	if q.Action != "" && !slices.Contains(record.Actions, q.Action) {
		return nil, "", invalid("action", "%q is not an audit action (%s)", q.Action, strings.Join(record.Actions, ", "))
	}
	var after []byte
	if q.Before != "" {
		if after, err = decodeCursor(q.Before); err != nil {
			return nil, "", err
		}
		if len(after) != 20 {
			return nil, "", errNotACursor
		}
	}
	var out []record.Audit
	var next string
	err = v.read(func(tx *bbolt.Tx) error {
		main := tx.Bucket(bAudit)
		b, prefix := main, []byte(nil)
		switch {
		case q.Actor != "":
			b, prefix = tx.Bucket(bAuditActor), lenPrefixed(q.Actor)
		case q.Action != "":
			b, prefix = tx.Bucket(bAuditAction), lenPrefixed(q.Action)
		}
		bound := after
		if !q.Until.IsZero() {
			until := appendTime(nil, q.Until)
			if bound == nil || bytes.Compare(until, bound) < 0 {
				bound = until
			}
		}
		if bound != nil {
			bound = append(bytes.Clone(prefix), bound...)
		}
		since := appendTime(nil, q.Since)
		c := b.Cursor()
		var last []byte
		for k := lastBefore(c, prefix, bound); k != nil; k = prev(c, prefix) {
			key := k[len(prefix):]
			if len(key) != 20 {
				return corrupt("audit index", k, errors.New("bad key"))
			}
			if !q.Since.IsZero() && bytes.Compare(key[:8], since) < 0 {
				return nil
			}
			val := main.Get(key)
			if val == nil {
				return corrupt("audit", key, errors.New("indexed entry missing"))
			}
			var a record.Audit
			if err := json.Unmarshal(val, &a); err != nil {
				return corrupt("audit", key, err)
			}
			if (q.Actor != "" && a.Actor != q.Actor) || (q.Action != "" && a.Action != q.Action) ||
				!strings.HasPrefix(a.Object, q.Object) {
				continue
			}
			if len(out) == n {
				next = encodeCursor(last)
				return nil
			}
			out = append(out, a)
			last = bytes.Clone(key)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("view audit: %w", err)
	}
	return out, next, nil
}
