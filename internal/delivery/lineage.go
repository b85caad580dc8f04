package delivery

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/formats"
)

// Lineage places an alert in its chain of updates and cancels: what the
// renderers of the formats partners' tools read need besides the alert
// itself (formats.Context without the agency's names). The fan-out traces
// it once per alert and every job of the alert carries it, so every
// rendering of the alert in one format is the same bytes.
type Lineage struct {
	// Root is the id of the first alert of the chain.
	Root string `json:"root"`
	// RootIssuedAt is the root's issued_at.
	RootIssuedAt time.Time `json:"root_issued_at"`
	// References gives, for each alert the alert references, its
	// issued_at, in the alert's order.
	References []Ref `json:"references,omitempty"`
	// Earlier lists the indicators the earlier alerts of the chain that
	// this recipient received carried, nearest first (duplicates kept), so
	// that those the alert no longer carries are rendered withdrawn. It is
	// set per recipient (For): a partner that was not an addressee of an
	// earlier alert must never learn its indicators from a withdrawal.
	Earlier []alerts.Indicator `json:"earlier,omitempty"`

	// chain is every earlier alert of the chain with its indicators,
	// breadth first from the alert's references; For picks from it.
	chain []chained
}

// chained is one earlier alert of a chain and the indicators it carried.
type chained struct {
	id         string
	indicators []alerts.Indicator
}

// Ref names one alert an update or cancel supersedes and when it was
// issued.
type Ref struct {
	ID       string    `json:"id"`
	IssuedAt time.Time `json:"issued_at"`
}

// maxChain bounds the alerts TraceLineage visits: a chain is a handful of
// updates in practice, and the bound keeps a corrupt history from making
// the fan-out walk without end.
const maxChain = 1000

// UntraceableError says that the chain of an alert cannot be traced from
// the alerts as published: it has more than maxChain alerts, an alert of
// it has no issued_at, or its references go round in a circle. It is a
// fact about the history, not a failure to read it: tracing again finds
// the same. TraceLineage returns it; what it returns otherwise is
// lookup's error.
type UntraceableError struct {
	// Alert is the id of the alert whose chain was traced.
	Alert string
	// Why says what makes the chain untraceable ("alert X has no
	// issued_at").
	Why string
}

func (e *UntraceableError) Error() string {
	return "trace the chain of " + e.Alert + ": " + e.Why
}

// TraceLineage traces the lineage of a from the alerts it references,
// which lookup returns as published (an error when an id is unknown). An
// alert that references nothing has no lineage: nil. The root is reached
// through the first reference of each alert. Earlier is empty: For gives
// each recipient the lineage with the indicators it may see withdrawn.
// A chain that cannot be traced is a *UntraceableError; lookup's errors
// are returned wrapped.
func TraceLineage(a *alerts.Alert, lookup func(id string) (*alerts.Alert, error)) (*Lineage, error) {
	if a == nil || len(a.References) == 0 {
		return nil, nil
	}
	seen := map[string]*alerts.Alert{}
	get := func(id string) (*alerts.Alert, error) {
		if r, ok := seen[id]; ok {
			return r, nil
		}
		if len(seen) == maxChain {
			return nil, &UntraceableError{Alert: a.ID, Why: fmt.Sprintf("it has more than %d alerts", maxChain)}
		}
		r, err := lookup(id)
		if err != nil {
			return nil, fmt.Errorf("trace the chain of %s: %w", a.ID, err)
		}
		if r == nil || r.IssuedAt == nil || r.IssuedAt.IsZero() {
			return nil, &UntraceableError{Alert: a.ID, Why: "alert " + id + " has no issued_at"}
		}
		seen[id] = r
		return r, nil
	}
	l := &Lineage{}
	for _, id := range a.References {
		r, err := get(id)
		if err != nil {
			return nil, err
		}
		l.References = append(l.References, Ref{ID: id, IssuedAt: r.IssuedAt.UTC()})
	}
	// The chain: breadth first from the alert's references.
	queue, queued := append([]string(nil), a.References...), map[string]bool{a.ID: true}
	for _, id := range a.References {
		queued[id] = true
	}
	for len(queue) > 0 {
		r, err := get(queue[0])
		if err != nil {
			return nil, err
		}
		queue = queue[1:]
		l.chain = append(l.chain, chained{id: r.ID, indicators: r.Indicators})
		for _, next := range r.References {
			if !queued[next] {
				queued[next] = true
				queue = append(queue, next)
			}
		}
	}
	// Root: through first references, to an alert of type alert.
	root := seen[a.References[0]]
	for steps := 0; root.Type != alerts.TypeAlert && len(root.References) > 0; steps++ {
		if steps == maxChain {
			return nil, &UntraceableError{Alert: a.ID, Why: "its references go round in a circle"}
		}
		next, err := get(root.References[0])
		if err != nil {
			return nil, err
		}
		root = next
	}
	l.Root, l.RootIssuedAt = root.ID, root.IssuedAt.UTC()
	return l, nil
}

// Chain returns the ids of every earlier alert of the chain, breadth
// first from the alert's references (nil for nil).
func (l *Lineage) Chain() []string {
	if l == nil {
		return nil
	}
	ids := make([]string, len(l.chain))
	for i, c := range l.chain {
		ids[i] = c.id
	}
	return ids
}

// For returns the lineage as one recipient may see it: Earlier holds the
// indicators of the earlier alerts of the chain that received reports the
// recipient received, so a withdrawal never shows a partner an indicator
// value it was not sent. Recipients with the same history get equal
// lineages (equal Digest), so a rendering is signed once for them all.
// For of nil is nil.
func (l *Lineage) For(received func(id string) bool) *Lineage {
	if l == nil {
		return nil
	}
	out := &Lineage{Root: l.Root, RootIssuedAt: l.RootIssuedAt, References: l.References, chain: l.chain}
	for _, c := range l.chain {
		if received(c.id) {
			out.Earlier = append(out.Earlier, c.indicators...)
		}
	}
	return out
}

// Context returns the renderers' context of an alert with lineage l (nil:
// an alert that is its own root), issued by agency (email.issuer_name)
// from sender (its CAP sender).
func (l *Lineage) Context(agency, sender string) formats.Context {
	ctx := formats.Context{Agency: agency, Sender: sender}
	if l == nil {
		return ctx
	}
	ctx.Root, ctx.RootIssuedAt, ctx.Earlier = l.Root, l.RootIssuedAt, l.Earlier
	for _, r := range l.References {
		ctx.References = append(ctx.References, formats.Ref{ID: r.ID, IssuedAt: r.IssuedAt})
	}
	return ctx
}

// Digest returns the SHA-256 of the lineage's JSON encoding, for the keys
// of caches of what is rendered with it; zero for nil.
func (l *Lineage) Digest() [32]byte {
	if l == nil {
		return [32]byte{}
	}
	b, _ := json.Marshal(l) // strings, times and indicators always encode
	return sha256.Sum256(b)
}
