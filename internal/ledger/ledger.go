// Package ledger answers "who got alert X, who did not, and why" from the
// receipts topic: it folds decision and outcome receipts into one entry per
// (partner, target) with its final state, attempts and last error.
package ledger

import (
	"cmp"
	"slices"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/record"
)

// Entry is the state of one (partner, target) for one alert. The first four
// JSON fields are those of `herald publish --dry-run --output json`.
type Entry struct {
	Subscriber string `json:"subscriber"`
	Target     string `json:"target"`
	Decision   string `json:"decision"`
	Rule       string `json:"rule"`
	State      string `json:"state"`
	// Incarnation is the Incarnation of the partner's record the decision
	// was made for (delivery.Receipt.Incarnation); empty for receipts
	// written before Herald recorded it. See Of.
	Incarnation string    `json:"incarnation,omitempty"`
	Channel     string    `json:"channel,omitempty"`
	Mode        string    `json:"mode,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	DeliveryID  string    `json:"delivery_id,omitempty"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	RetryAt     time.Time `json:"retry_at,omitzero"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Of reports whether the entry belongs to the partner's record of the
// given incarnation (subscribers.Subscriber.Incarnation): it was decided
// for that incarnation. It is the one home of that rule, for every answer
// about a partner's history (rule 7's prior recipients, a partner's own
// deliveries, its pull collection): a partner registered again under a
// deleted partner's id is another organisation and holds none of its
// alerts. An entry without an incarnation (its receipts written before
// Herald recorded it) or a record without one (made before Herald set
// it) belongs to every incarnation of the id, as before: history written
// then is still found by id alone.
func (e *Entry) Of(incarnation string) bool {
	return SameIncarnation(e.Incarnation, incarnation)
}

// SameIncarnation is Entry.Of for anything decided for a partner's record
// of incarnation decided (a job, a dead letter, a recipient): whether it
// belongs to the record of incarnation record. Either one empty (written,
// or made, before Herald recorded incarnations) matches any.
func SameIncarnation(decided, record string) bool {
	return decided == "" || record == "" || decided == record
}

// Meta is what the ledger knows of an alert as a whole, from the fan-out's
// alert receipt.
type Meta struct {
	ID         string         `json:"id"`
	Type       alerts.Type    `json:"type,omitempty"`
	TLP        alerts.TLP     `json:"tlp,omitempty"`
	Marking    alerts.Marking `json:"marking,omitempty"`
	Title      string         `json:"title,omitempty"`
	Digest     string         `json:"digest,omitempty"`
	References []string       `json:"references,omitempty"`
	IssuedBy   string         `json:"issued_by,omitempty"`
	ApprovedBy string         `json:"approved_by,omitempty"`
	FannedOut  time.Time      `json:"fanned_out,omitzero"`
}

// Apply folds a KindAlert receipt into m. The first one wins: an id names
// one alert, and a later receipt under the same id (a duplicate the
// fan-out refused) never changes what the ledger shows.
func (m *Meta) Apply(r delivery.Receipt) {
	if !m.FannedOut.IsZero() {
		return
	}
	m.ID, m.Type, m.TLP, m.Marking, m.Title, m.Digest = r.AlertID, r.Type, r.TLP, r.Marking, r.Title, r.Digest
	m.References, m.IssuedBy, m.ApprovedBy, m.FannedOut = r.References, r.IssuedBy, r.ApprovedBy, r.At
}

// BoundMeta is what the ledger says of an alert whose alert receipt is
// gone (retention) while its binding on the alert-ids topic is held
// (record.Binding): the binding's id, digest and fan-out time, and, from
// held, the record the alerts topic still holds under the id (nil when
// none), the labels the alert receipt gave (type, TLP, marking, title,
// references, issuer and approver), which a follow-up is checked against
// (CheckReferences) — only when held is the bound alert (Alert.IsRecord),
// never a later record with other content. The view's Lookup and the
// CLI's (publish.KafkaIndex) both answer by it, so that they judge alike.
func BoundMeta(b *record.Binding, held *alerts.Alert) Meta {
	m := Meta{ID: b.ID, Digest: b.Digest, FannedOut: b.FannedOut}
	if held != nil && (&Alert{Meta: m}).IsRecord(held) {
		m.Type, m.TLP, m.Marking, m.Title, m.References = held.Type, held.TLP, held.Marking, held.Title, held.References
		m.IssuedBy, m.ApprovedBy = held.IssuedBy, held.ApprovedBy
	}
	return m
}

// Ack is a partner's acknowledgement of an alert it received.
type Ack struct {
	Subscriber string `json:"subscriber"`
	// Incarnation is the Incarnation of the partner's record that
	// acknowledged (delivery.Receipt.Incarnation); empty for
	// acknowledgements recorded before Herald recorded it. See Of.
	Incarnation string    `json:"incarnation,omitempty"`
	At          time.Time `json:"at"`
	By          string    `json:"by"`
	Note        string    `json:"note,omitempty"`
}

// AckOf returns the acknowledgement a KindAck receipt records.
func AckOf(r delivery.Receipt) Ack {
	return Ack{Subscriber: r.Subscriber, Incarnation: r.Incarnation, At: r.At, By: r.By, Note: r.Note}
}

// Of reports whether the acknowledgement was made by the partner's record
// of the given incarnation (SameIncarnation, as Entry.Of): a partner
// registered again under a deleted partner's id neither sees its
// predecessor's acknowledgement and note nor is told it acknowledged. One
// recorded before Herald recorded incarnations belongs to every
// incarnation of the id, as before.
func (k *Ack) Of(incarnation string) bool {
	return SameIncarnation(k.Incarnation, incarnation)
}

// Replaces reports whether k, an acknowledgement of an alert read after
// held, the one kept for the same partner, takes its place. decided
// reports whether the alert was decided for the partner's record of an
// incarnation (an entry's decision names it: Entry.Incarnation). The rule:
//   - of the same incarnation as held (Ack.Of): never, the first
//     acknowledgement of a partner's record is the one that counts;
//   - of another: when k's incarnation is one the alert was decided for
//     and held's is not; never when held's is and k's is not;
//   - of another, and no decision tells them apart (decisions recorded
//     before Herald named incarnations, which belong to every record of
//     the id): k, the later record acknowledging for itself, as before.
//
// It is monotone wherever a decision names the incarnation: once an
// acknowledgement of the record the alert was decided for is kept, none
// replaces it, so a process still holding the partner's old record cannot
// flip the shown acknowledgement back, and whichever order the two are
// read in, the same one is kept (a view rebuilt answers as one kept
// live). The ledger and the view keep acknowledgements by this rule.
func (k *Ack) Replaces(held Ack, decided func(incarnation string) bool) bool {
	if held.Of(k.Incarnation) {
		return false
	}
	if dk, dh := decided(k.Incarnation), decided(held.Incarnation); dk != dh {
		return dk
	}
	return !decided(held.Incarnation)
}

// EntryKey is the key of the entry of (subscriber, target) within an alert.
func EntryKey(subscriber, target string) string { return subscriber + "\x00" + target }

// Apply folds a decision or outcome receipt into e.
func (e *Entry) Apply(r delivery.Receipt) {
	if e.Subscriber == "" {
		e.Subscriber, e.Target, e.Channel = r.Subscriber, r.Target, r.Channel
	}
	e.UpdatedAt = r.At
	switch r.Kind {
	case delivery.KindDecision:
		e.Decision, e.Rule, e.Mode, e.Reason, e.DeliveryID = r.Decision, r.Rule, r.Mode, r.Reason, r.DeliveryID
		e.Incarnation = r.Incarnation
		if e.State == "" || e.State == delivery.StateWithheld {
			if r.Decision == delivery.Withhold {
				e.State = delivery.StateWithheld
			} else {
				e.State = delivery.StatePending
			}
		}
	case delivery.KindOutcome:
		if e.Incarnation == "" {
			e.Incarnation = r.Incarnation // an outcome read without its decision
		}
		if r.Attempt > e.Attempts {
			e.Attempts = r.Attempt
		}
		if r.Error != "" {
			e.LastError = r.Error
		}
		e.RetryAt = r.RetryAt
		// Success is final: a duplicate attempt that failed after another
		// succeeded does not undo the delivery.
		if e.State != delivery.StateDelivered {
			e.State = r.State
		}
	}
}

// Alert is everything the ledger knows of one alert.
type Alert struct {
	Meta
	// Acks are the partners' acknowledgements, by partner: the first of
	// the record the alert was decided for, else the first read
	// (Ack.Replaces).
	// Ask Ack for a partner's record's own.
	Acks    map[string]Ack
	entries map[string]*Entry // by EntryKey
}

// Ledger folds receipts, in topic order, into per-alert state.
type Ledger struct {
	alerts map[string]*Alert
}

// New returns an empty ledger.
func New() *Ledger { return &Ledger{alerts: map[string]*Alert{}} }

// Add folds one receipt in. Receipts of one alert share a partition, so they
// arrive in the order they were written.
func (l *Ledger) Add(r delivery.Receipt) {
	a := l.alerts[r.AlertID]
	if a == nil {
		a = &Alert{Meta: Meta{ID: r.AlertID}, entries: map[string]*Entry{}}
		l.alerts[r.AlertID] = a
	}
	switch r.Kind {
	case delivery.KindAlert:
		a.Meta.Apply(r)
	case delivery.KindAck:
		k := AckOf(r)
		if held, ok := a.Acks[r.Subscriber]; !ok || k.Replaces(held, a.decidedFor(r.Subscriber)) {
			if a.Acks == nil {
				a.Acks = map[string]Ack{}
			}
			a.Acks[r.Subscriber] = k
		}
	case delivery.KindDecision, delivery.KindOutcome:
		k := EntryKey(r.Subscriber, r.Target)
		e := a.entries[k]
		if e == nil {
			e = &Entry{}
			a.entries[k] = e
		}
		e.Apply(r)
	}
}

// decidedFor returns whether the alert was decided for subscriber's
// record of an incarnation: one of the partner's entries has a decision
// naming it (Ack.Replaces).
func (a *Alert) decidedFor(subscriber string) func(incarnation string) bool {
	return func(incarnation string) bool {
		if incarnation == "" {
			return false
		}
		for _, e := range a.entries {
			if e.Subscriber == subscriber && e.Decision != "" && e.Incarnation == incarnation {
				return true
			}
		}
		return false
	}
}

// Restore returns the Alert a fold kept elsewhere produced (a materialised
// view of the receipts topic): its meta, the acknowledgements (nil when
// there are none, as the fold leaves it) and its entries. It is the same
// Alert Add builds from the receipts that gave them.
func Restore(m Meta, acks map[string]Ack, entries []Entry) *Alert {
	a := &Alert{Meta: m, Acks: acks, entries: make(map[string]*Entry, len(entries))}
	for i := range entries {
		e := entries[i]
		a.entries[EntryKey(e.Subscriber, e.Target)] = &e
	}
	return a
}

// Alert returns what the ledger knows of id, or nil.
func (l *Ledger) Alert(id string) *Alert { return l.alerts[id] }

// Entries returns the alert's entries sorted by subscriber then target.
func (a *Alert) Entries() []Entry {
	out := make([]Entry, 0, len(a.entries))
	for _, e := range a.entries {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(x, y Entry) int {
		return cmp.Or(cmp.Compare(x.Subscriber, y.Subscriber), cmp.Compare(x.Target, y.Target))
	})
	return out
}

// IsRecord reports whether r, a record the alerts topic holds under the
// alert's id, is the alert the ledger knows: its digest is the one the
// alert receipt names (Meta.Digest), or the ledger knows none (a nil
// Alert, or receipts without a digest). A later record under the id with
// other content (quarantined duplicate-id), which survives when retention
// deleted the first, is not the alert: an id names one alert forever.
// view.View.Retained keeps the same rule for the view's records.
func (a *Alert) IsRecord(r *alerts.Alert) bool {
	return a == nil || a.Digest == "" || r.Digest() == a.Digest
}

// Ack returns the acknowledgement of the alert made by subscriber's
// record of the given incarnation (Ack.Of), if there is one.
func (a *Alert) Ack(subscriber, incarnation string) (Ack, bool) {
	k, ok := a.Acks[subscriber]
	if !ok || !k.Of(incarnation) {
		return Ack{}, false
	}
	return k, true
}

// Acknowledgements returns the partners' acknowledgements, oldest first
// (then by partner): one per partner, kept by Ack.Replaces.
func (a *Alert) Acknowledgements() []Ack {
	out := make([]Ack, 0, len(a.Acks))
	for _, k := range a.Acks {
		out = append(out, k)
	}
	slices.SortFunc(out, func(x, y Ack) int {
		return cmp.Or(x.At.Compare(y.At), cmp.Compare(x.Subscriber, y.Subscriber))
	})
	return out
}

// Received reports whether the alert's content was sent, or is on its way,
// to target of subscriber's record of the given incarnation (Entry.Of):
// the policy decided to deliver it. It is what rule 7 of PRODUCT.md §3
// asks of an update or cancel.
func (a *Alert) Received(subscriber, incarnation, target string) bool {
	e := a.entries[EntryKey(subscriber, target)]
	return e != nil && e.Decision == delivery.Deliver && e.Of(incarnation)
}

// Entry returns the entry of subscriber's target, if the ledger has one.
func (a *Alert) Entry(subscriber, target string) (Entry, bool) {
	if e := a.entries[EntryKey(subscriber, target)]; e != nil {
		return *e, true
	}
	return Entry{}, false
}

// Recipients are the partners to any target of which an alert's content
// was sent, or is on its way, by id: the incarnations of their records it
// was decided for (an empty one for receipts without it).
type Recipients map[string][]string

// Has reports whether the partner's record of the given incarnation is
// one of the recipients (Entry.Of).
func (r Recipients) Has(subscriber, incarnation string) bool {
	return slices.ContainsFunc(r[subscriber], func(decided string) bool { return SameIncarnation(decided, incarnation) })
}

// Recipients returns the partners to any target of which the alert's
// content was sent, or is on its way: what each may know of it.
func (a *Alert) Recipients() Recipients {
	out := make(Recipients)
	for _, e := range a.entries {
		if e.Decision == delivery.Deliver && !slices.Contains(out[e.Subscriber], e.Incarnation) {
			out[e.Subscriber] = append(out[e.Subscriber], e.Incarnation)
		}
	}
	return out
}

// Counts returns how many entries are in each state.
func (a *Alert) Counts() map[string]int {
	m := map[string]int{}
	for _, e := range a.entries {
		m[e.State]++
	}
	return m
}

// Done reports whether no entry is pending or retrying.
func (a *Alert) Done() bool {
	for _, e := range a.entries {
		if e.State == delivery.StatePending || e.State == delivery.StateRetrying {
			return false
		}
	}
	return true
}
