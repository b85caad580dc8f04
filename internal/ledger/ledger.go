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
)

// Entry is the state of one (partner, target) for one alert. The first four
// JSON fields are those of `herald publish --dry-run --output json`.
type Entry struct {
	Subscriber string    `json:"subscriber"`
	Target     string    `json:"target"`
	Decision   string    `json:"decision"`
	Rule       string    `json:"rule"`
	State      string    `json:"state"`
	Channel    string    `json:"channel,omitempty"`
	Mode       string    `json:"mode,omitempty"`
	Reason     string    `json:"reason,omitempty"`
	DeliveryID string    `json:"delivery_id,omitempty"`
	Attempts   int       `json:"attempts"`
	LastError  string    `json:"last_error,omitempty"`
	RetryAt    time.Time `json:"retry_at,omitzero"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Alert is everything the ledger knows of one alert.
type Alert struct {
	ID         string
	Type       alerts.Type
	TLP        alerts.TLP
	Marking    alerts.Marking
	References []string
	IssuedBy   string
	FannedOut  time.Time
	entries    map[string]*Entry // by subscriber + "\x00" + target
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
		a = &Alert{ID: r.AlertID, entries: map[string]*Entry{}}
		l.alerts[r.AlertID] = a
	}
	if r.Kind == delivery.KindAlert {
		a.Type, a.TLP, a.Marking, a.References, a.IssuedBy, a.FannedOut = r.Type, r.TLP, r.Marking, r.References, r.IssuedBy, r.At
		return
	}
	key := r.Subscriber + "\x00" + r.Target
	e := a.entries[key]
	if e == nil {
		e = &Entry{Subscriber: r.Subscriber, Target: r.Target, Channel: r.Channel}
		a.entries[key] = e
	}
	e.UpdatedAt = r.At
	switch r.Kind {
	case delivery.KindDecision:
		e.Decision, e.Rule, e.Mode, e.Reason, e.DeliveryID = r.Decision, r.Rule, r.Mode, r.Reason, r.DeliveryID
		if e.State == "" || e.State == delivery.StateWithheld {
			if r.Decision == delivery.Withhold {
				e.State = delivery.StateWithheld
			} else {
				e.State = delivery.StatePending
			}
		}
	case delivery.KindOutcome:
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

// Received reports whether the alert's content was sent, or is on its way,
// to target of subscriber: the policy decided to deliver it. It is what
// rule 7 of PRODUCT.md §3 asks of an update or cancel.
func (a *Alert) Received(subscriber, target string) bool {
	e := a.entries[subscriber+"\x00"+target]
	return e != nil && e.Decision == delivery.Deliver
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
