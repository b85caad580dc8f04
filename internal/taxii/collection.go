package taxii

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats"
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
	// pulled says the partner pulled it before (its pull target is
	// delivered).
	pulled bool
}

// errUnavailable wraps failures to read the view: the answer is 503.
var errUnavailable = errors.New("the view of Kafka cannot be read")

// items returns the alerts of sub's collection at now, oldest first: the
// alerts whose pull decision for sub was deliver, not withdrawn by a later
// notice, that the policy still lets sub pull against its current record.
func (s *Server) items(sub *subscribers.Subscriber, now time.Time) ([]*item, error) {
	var delivered []view.PartnerDelivery
	withdrawn := map[string]bool{}
	next := ""
	for {
		page, cursor, err := s.Source.PartnerDeliveries(sub.ID, view.PartnerQuery{Channel: delivery.ChannelPull, Limit: view.MaxLimit, Before: next})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errUnavailable, err)
		}
		for _, d := range page {
			if d.Channel != delivery.ChannelPull || d.Target != delivery.TargetPull {
				continue
			}
			switch d.Mode {
			case delivery.ModePull:
				delivered = append(delivered, d)
			case delivery.ModeCancelNotice:
				// The partner may not have this update or cancel: the
				// alerts it supersedes leave the collection.
				s.withdraw(d.Alert, withdrawn)
			}
		}
		if cursor == "" {
			break
		}
		next = cursor
	}
	// What the partner was given to pull: the only earlier alerts whose
	// indicators its renderings may show withdrawn.
	received := make(map[string]bool, len(delivered))
	for _, d := range delivered {
		received[d.Alert] = true
	}
	out := make([]*item, 0, len(delivered))
	for _, d := range delivered {
		if withdrawn[d.Alert] {
			continue
		}
		it, err := s.item(d, sub, now, received)
		if err != nil {
			return nil, err
		}
		if it != nil {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b *item) int {
		if c := a.added.Compare(b.added); c != 0 {
			return c
		}
		return strings.Compare(a.alert.ID, b.alert.ID)
	})
	return out, nil
}

// withdraw adds to withdrawn every alert the follow-up id supersedes,
// directly or through earlier updates, so that no older version of the
// chain takes the place of the one withdrawn.
func (s *Server) withdraw(id string, withdrawn map[string]bool) {
	queue := []string{id}
	for n := 0; len(queue) > 0 && n < maxChain; n++ {
		p, ok := s.Source.Published(queue[0])
		queue = queue[1:]
		if !ok {
			continue
		}
		for _, ref := range p.References {
			if !withdrawn[ref] {
				withdrawn[ref] = true
				queue = append(queue, ref)
			}
		}
	}
}

// maxChain bounds the alerts withdraw visits.
const maxChain = 1000

// item builds one alert of the collection, or nil when the policy no
// longer lets sub pull it.
// Its lineage withdraws only indicators of the earlier alerts of the
// chain that received holds.
func (s *Server) item(d view.PartnerDelivery, sub *subscribers.Subscriber, now time.Time, received map[string]bool) (*item, error) {
	a, raw, err := s.alert(d.Alert)
	if err != nil {
		return nil, err
	}
	if dec, ok := policy.Pull(a, sub, now, s.Policy); !ok || dec.Decision != delivery.Deliver {
		return nil, nil
	}
	traced, err := delivery.TraceLineage(a, func(id string) (*alerts.Alert, error) {
		ref, _, err := s.alert(id)
		return ref, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	lineage := traced.For(func(id string) bool { return received[id] })
	added := d.FannedOut
	if added.IsZero() {
		added = d.UpdatedAt
	}
	return &item{alert: a, raw: raw, lineage: lineage, added: added.UTC().Truncate(time.Microsecond),
		deliveryID: d.DeliveryID, pulled: d.State == delivery.StateDelivered}, nil
}

// alert returns the alert id as published, decoded once per content.
func (s *Server) alert(id string) (*alerts.Alert, [32]byte, error) {
	p, ok := s.Source.Published(id)
	if !ok || len(p.Alert) == 0 {
		return nil, [32]byte{}, fmt.Errorf("%w: alert %s is not in the view of the alerts topic", errUnavailable, id)
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
		if it.pulled || s.seen.Contains(it.deliveryID) {
			continue
		}
		if s.Receipts == nil {
			return errors.New("pulls cannot be recorded: no receipts writer")
		}
		err := s.Receipts.WriteReceipt(ctx, delivery.Receipt{Kind: delivery.KindOutcome, AlertID: it.alert.ID,
			DeliveryID: it.deliveryID, Subscriber: sub.ID, Channel: delivery.ChannelPull, Target: delivery.TargetPull,
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

// Cache sizes.
const (
	renderCacheSize = 4096
	pulledSetSize   = 65536
)
