package taxii

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// item is one alert of a partner's collection.
type item struct {
	alert *alerts.Alert
	// raw is the SHA-256 of the alert's bytes as published: with the
	// lineage's digest, the key of its renderings.
	raw     [32]byte
	lineage *delivery.Lineage
	// added is when the alert was decided for the partner, to the
	// microsecond: its objects' date_added.
	added      time.Time
	deliveryID string
	// pulled says the view showed the partner's pull of it (its pull
	// target delivered): when the collection was made, or since. A pull
	// is final, so it is never unset; recordPulls asks the view again
	// about an item it does not mark.
	pulled atomic.Bool
}

// errUnavailable wraps failures to read the view: the answer is 503.
var errUnavailable = errors.New("the view of Kafka cannot be read")

// errAbsent wraps an alert missing from the view (with errUnavailable):
// not applied yet, or gone (see build).
var errAbsent = errors.New("not in the view of the alerts topic")

// collection is a partner's pull collection, made from one content of its
// record and one revision of its pull entries, and what the TAXII server
// and the MISP feed make of it, each made once and shared by the requests
// that page through it.
type collection struct {
	// items are its alerts, oldest first.
	items []*item
	// until is when the collection changes with the time alone (the
	// earliest expires_at among its alerts, or not_before still ahead
	// among the alerts and withdrawals waiting for it); zero for never.
	until time.Time

	// mu guards what follows, each made on first use (nil until then;
	// an empty collection's entries stay nil and cost nothing to make).
	mu       sync.Mutex
	entries  []*entry // TAXII: every object version, in collection order
	selected map[selectKey][]*entry
	events   map[string]*feedEvent
}

// collectionKey is what a collection is made from, besides the time: the
// SHA-256 of the partner's effective record as JSON (its id, clearance,
// audience, status, pull channel, …: everything policy.Pull judges) and
// the view's revision of the partner's pull entries (view.PullRevision:
// every decision about them, withdrawal notices included). A change to
// either is another key, so a collection is never served for a record or
// entries it was not made from.
type collectionKey struct {
	record [sha256.Size]byte
	rev    view.Revision
}

// collectionAt returns sub's collection at now — the alerts whose pull
// decision for sub was deliver, not withdrawn by a later notice, that the
// policy still lets sub pull against its current record, oldest first —:
// the one made from the same record and revision of its pull entries
// while it is still valid at now, else one made afresh.
//
// The inputs of a collection that depend on the time are each alert's
// expires_at and not_before (policy rule 8: nothing is delivered before
// not_before or after expires_at; expiry is judged by policy.Pull, and an
// alert — or a withdrawal — whose not_before is still ahead is not in the
// collection yet: see build). The partner's record has no validity period,
// its status is in the record, and the one other check that depends on
// the time, of an email key, is not part of Pull. So a collection holds
// until the earliest of those instants still ahead.
func (s *Server) collectionAt(ctx context.Context, sub *subscribers.Subscriber, now time.Time) (*collection, error) {
	// The key is read before the collection is made: what changes while
	// it is made moves the revision past the key, and is made again.
	record, err := json.Marshal(sub)
	if err != nil {
		return nil, fmt.Errorf("encode the record of partner %s: %w", sub.ID, err)
	}
	rev, err := s.Source.PullRevision(sub.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	key := collectionKey{record: sha256.Sum256(record), rev: rev}
	if c, ok := s.cached.get(key); ok && (c.until.IsZero() || now.Before(c.until)) {
		return c, nil
	}
	c, complete, err := s.build(ctx, sub, now)
	if err != nil {
		return nil, err
	}
	if complete {
		s.cached.add(key, c)
	} else {
		s.cached.remove(key)
	}
	return c, nil
}

// build makes sub's collection at now; complete is false when the view
// lacked an alert a withdrawal notice names (the alerts topic behind the
// receipts), so that what it withdraws is not known yet: such a
// collection serves its request and is not kept.
//
// An alert whose record the view lacks although its receipts name it is
// either not applied yet or gone: retention deleted it from the alerts
// topic before its receipts left theirs (or it is not the alert they say
// was fanned out: view.View.Retained). One view.Holding answers the
// whole build: the view is synced with the alerts topic (once per build)
// and asked again; an alert still missing, or an update whose chain
// reaches one, is gone: it is left out (logged with the partner), and the
// rest is served. A view kept live answers as one rebuilt now.
//
// An alert, or a withdrawal by a follow-up, whose not_before is still
// ahead waits for it (rule 8), as its email and webhooks do in the
// deliver runner: until then it is not in the collection, withdraws
// nothing, and counts as nothing the partner received; from then on its
// objects are dated (date_added) at its not_before, so that a TAXII
// client polling with added_after finds it.
func (s *Server) build(ctx context.Context, sub *subscribers.Subscriber, now time.Time) (c *collection, complete bool, err error) {
	c = &collection{}
	var gone []string
	h := s.Source.Holding(ctx)
	var delivered []view.PartnerDelivery
	withdrawn := map[string]bool{}
	complete = true
	next := ""
	for {
		// Only what was decided for this incarnation of the partner's
		// record (view.PartnerQuery.Incarnation): a partner registered
		// again under a deleted partner's id is another organisation.
		page, cursor, err := s.Source.PartnerDeliveries(sub.ID, view.PartnerQuery{Channel: delivery.ChannelPull,
			Incarnation: sub.Incarnation, Limit: view.MaxLimit, Before: next})
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		for _, d := range page {
			if d.Target != delivery.TargetPull { // the query kept the pull channel alone
				continue
			}
			switch d.Mode {
			case delivery.ModePull:
				delivered = append(delivered, d)
			case delivery.ModeCancelNotice:
				// The partner may not have this update or cancel: the
				// alerts it supersedes leave the collection, from the
				// follow-up's not_before on.
				if a, _, err := s.alert(h, d.Alert); err == nil && c.waits(a, now) {
					continue
				}
				if !s.withdraw(h, d.Alert, withdrawn) {
					complete = false
				}
			}
		}
		if cursor == "" {
			break
		}
		next = cursor
	}
	// What the partner was given to pull, now: the only earlier alerts
	// whose indicators its renderings may show withdrawn. Each alert is
	// read from the view once, here, and handed to item.
	received := make(map[string]bool, len(delivered))
	given := make([]published, 0, len(delivered))
	for _, d := range delivered {
		a, raw, err := s.alert(h, d.Alert)
		if errors.Is(err, errAbsent) {
			gone = append(gone, d.Alert)
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if !c.waits(a, now) {
			received[d.Alert] = true
			given = append(given, published{d, a, raw})
		}
	}
	c.items = make([]*item, 0, len(given))
	for _, g := range given {
		if withdrawn[g.d.Alert] {
			continue
		}
		it, err := s.item(h, g, sub, now, received)
		if errors.Is(err, errAbsent) {
			gone = append(gone, g.d.Alert)
			continue
		}
		if err != nil {
			return nil, false, err
		}
		if it == nil {
			continue
		}
		c.items = append(c.items, it)
		if exp := it.alert.ExpiresAt; exp != nil {
			c.ends(*exp)
		}
	}
	if len(gone) > 0 {
		s.Log.Warn("pull collection: alerts left out, their records (or an earlier alert of their chain) gone from the alerts topic before their receipts",
			"subscriber", sub.ID, "alerts", gone)
	}
	slices.SortFunc(c.items, func(a, b *item) int {
		if c := a.added.Compare(b.added); c != 0 {
			return c
		}
		return strings.Compare(a.alert.ID, b.alert.ID)
	})
	return c, complete, nil
}

// waits reports whether a's not_before is still ahead at now; if so, the
// collection ends then.
func (c *collection) waits(a *alerts.Alert, now time.Time) bool {
	if a.NotBefore == nil || !a.NotBefore.After(now) {
		return false
	}
	c.ends(*a.NotBefore)
	return true
}

// ends makes the collection end at t at the latest.
func (c *collection) ends(t time.Time) {
	if c.until.IsZero() || t.Before(c.until) {
		c.until = t
	}
}

// withdraw adds to withdrawn every alert the follow-up id supersedes,
// directly or through earlier updates, so that no older version of the
// chain takes the place of the one withdrawn. It reports whether the view
// held every alert of the chain it visited.
func (s *Server) withdraw(h *view.Holding, id string, withdrawn map[string]bool) bool {
	complete := true
	queue := []string{id}
	for n := 0; len(queue) > 0 && n < maxChain; n++ {
		p, err := h.Record(queue[0])
		queue = queue[1:]
		if err != nil {
			complete = false
			continue
		}
		for _, ref := range p.References {
			if !withdrawn[ref] {
				withdrawn[ref] = true
				queue = append(queue, ref)
			}
		}
	}
	return complete
}

// maxChain bounds the alerts withdraw visits.
const maxChain = 1000

// published is a pull delivery and its alert as published (s.alert).
type published struct {
	d   view.PartnerDelivery
	a   *alerts.Alert
	raw [32]byte
}

// item builds one alert of the collection, or nil when the policy no
// longer lets sub pull it.
// Its lineage withdraws only indicators of the earlier alerts of the
// chain that received holds.
func (s *Server) item(h *view.Holding, g published, sub *subscribers.Subscriber, now time.Time, received map[string]bool) (*item, error) {
	d, a, raw := g.d, g.a, g.raw
	if dec, ok := policy.Pull(a, sub, now, s.Policy); !ok || dec.Decision != delivery.Deliver {
		return nil, nil
	}
	traced, err := delivery.TraceLineage(a, func(id string) (*alerts.Alert, error) {
		ref, _, err := s.alert(h, id)
		return ref, err
	})
	if errors.Is(err, errAbsent) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	lineage := traced.For(func(id string) bool { return received[id] })
	added := d.FannedOut
	if added.IsZero() {
		added = d.UpdatedAt
	}
	if a.NotBefore != nil && a.NotBefore.After(added) {
		added = *a.NotBefore // made available at not_before, not before
	}
	it := &item{alert: a, raw: raw, lineage: lineage, added: added.UTC().Truncate(time.Microsecond), deliveryID: d.DeliveryID}
	it.pulled.Store(d.State == delivery.StateDelivered)
	return it, nil
}

// alert returns the alert id as published (h.Record), decoded once per
// content.
func (s *Server) alert(h *view.Holding, id string) (*alerts.Alert, [32]byte, error) {
	p, err := h.Record(id)
	if errors.Is(err, ledger.ErrGone) {
		return nil, [32]byte{}, fmt.Errorf("%w: alert %s is %w", errUnavailable, id, errAbsent)
	}
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	sum := sha256.Sum256(p.Alert)
	if a, ok := s.alerts.Get(sum); ok {
		return a, sum, nil
	}
	a, err := alerts.Decode(p.Alert)
	if err != nil {
		return nil, sum, fmt.Errorf("%w: alert %s as published: %v", errUnavailable, id, err)
	}
	a.Normalize()
	s.alerts.Add(sum, a)
	return a, sum, nil
}

// renderKey is the key of one alert's rendering in one format (or of
// what is parsed from it: see stixObjects): the digests of the alert's
// bytes and of its lineage, and the agency's name.
type renderKey struct {
	format  formats.Format
	raw     [32]byte
	lineage [32]byte
	agency  string
}

// render returns the alert's rendering in format f, rendered once per
// content.
func (s *Server) render(it *item, f formats.Format) ([]byte, error) {
	if strings.TrimSpace(s.Agency) == "" {
		return nil, errNoAgency
	}
	k := renderKey{f, it.raw, it.lineage.Digest(), s.Agency}
	if b, ok := s.renders.Get(k); ok {
		return b.([]byte), nil
	}
	var b []byte
	var err error
	ctx := it.lineage.Context(s.Agency, "")
	switch f {
	case formats.FormatSTIX:
		b, err = formats.STIX(it.alert, ctx)
	case formats.FormatMISP:
		b, err = formats.MISP(it.alert, ctx)
	default:
		err = fmt.Errorf("format %s is not served by pull", f)
	}
	if err != nil {
		return nil, fmt.Errorf("render alert %s: %w", it.alert.ID, err)
	}
	s.renders.Add(k, b)
	return b, nil
}

// recordPulls records the first pull of each of its: an outcome receipt
// in state delivered on the pull target. An alert the view already shows
// pulled, or this process recorded lately, is not recorded again.
func (s *Server) recordPulls(ctx context.Context, sub *subscribers.Subscriber, its []*item, how string) error {
	now := s.Now()
	for _, it := range its {
		if it.pulled.Load() || s.seen.Contains(it.deliveryID) {
			continue
		}
		// The collection may be older than the pull: ask the view now,
		// as a collection made for this request would have.
		pulled, err := s.pulledNow(sub, it)
		if err != nil {
			return err
		}
		if pulled {
			it.pulled.Store(true)
			continue
		}
		if s.Receipts == nil {
			return errors.New("pulls cannot be recorded: no receipts writer")
		}
		err = s.Receipts.WriteReceipt(ctx, delivery.Receipt{Kind: delivery.KindOutcome, AlertID: it.alert.ID,
			DeliveryID: it.deliveryID, Subscriber: sub.ID, Incarnation: sub.Incarnation, Channel: delivery.ChannelPull, Target: delivery.TargetPull,
			Mode: delivery.ModePull, State: delivery.StateDelivered, Attempt: 1, At: now})
		if err != nil {
			return fmt.Errorf("record the pull of %s by %s: %w", it.alert.ID, sub.ID, err)
		}
		s.seen.Add(it.deliveryID, struct{}{})
		s.Log.Info("alert pulled", "alert", it.alert.ID, "subscriber", sub.ID, "by", how)
		if s.Audit != nil {
			c, _ := ctx.Value(callerKey{}).(Caller)
			if err := s.Audit.Record(ctx, record.Audit{Actor: "partner:" + c.Name, Action: record.ActionPartnerPull,
				Object: "alert:" + it.alert.ID, Details: map[string]any{"subscriber": sub.ID, "via": how}}); err != nil {
				// The pull itself is recorded (its receipt): log, as the
				// partner API does.
				s.Log.Warn("audit a partner's pull", "alert", it.alert.ID, "subscriber", sub.ID, "error", err)
			}
		}
	}
	return nil
}

// pulledNow reports whether the view shows sub's pull of it.
func (s *Server) pulledNow(sub *subscribers.Subscriber, it *item) (bool, error) {
	ds, _, err := s.Source.PartnerDeliveries(sub.ID, view.PartnerQuery{Alert: it.alert.ID, Channel: delivery.ChannelPull,
		Incarnation: sub.Incarnation})
	if err != nil {
		return false, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	for _, d := range ds {
		if d.Target == delivery.TargetPull && d.DeliveryID == it.deliveryID && d.State == delivery.StateDelivered {
			return true, nil
		}
	}
	return false, nil
}

// Cache sizes.
const (
	renderCacheSize = 4096
	pulledSetSize   = 65536
	// collectionCacheSize bounds the collections kept: one per partner
	// paging through its collection at once, and a few superseded ones
	// on their way out.
	collectionCacheSize = 32
	// collectionItemsBudget bounds the alerts those collections hold
	// together (collectionCache).
	collectionItemsBudget = 1 << 16
)
