package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/herald-alerts/herald/internal/ack"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/keywatch"
	"golang.org/x/sync/errgroup"
)

// ReceiptWriter writes receipts to the receipts topic, keyed by alert id
// (api.ReceiptWriter).
type ReceiptWriter struct{ P *bus.Producer }

var _ api.ReceiptWriter = ReceiptWriter{}

// WriteReceipt implements api.ReceiptWriter.
func (w ReceiptWriter) WriteReceipt(ctx context.Context, r delivery.Receipt) error {
	if err := w.P.Write(ctx, fanout.ReceiptMessage(r)); err != nil {
		return fmt.Errorf("write %s receipt of %s: %w", r.Kind, r.AlertID, err)
	}
	return nil
}

// DeadLetters lists and replays one partner's dead letters on Bus
// (api.DeadLetters), with deliver.ListDead and deliver.Replay: only what
// Herald dead-lettered, never a delivery already delivered.
type DeadLetters struct {
	Bus *bus.Bus
	Now func() time.Time
}

var _ api.DeadLetters = DeadLetters{}

// Dead implements api.DeadLetters.
func (d DeadLetters) Dead(ctx context.Context, subscriber, incarnation string) ([]string, error) {
	dead, err := deliver.ListDead(ctx, d.Bus, deliver.DeadFilter{Subscriber: subscriber, Incarnation: incarnation})
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(dead))
	for _, l := range dead {
		// Only dead jobs are replayed: a refused job of a pack, listed
		// under its partner too, has no Job and no delivery to replay.
		if l.Job == nil {
			continue
		}
		ids = append(ids, l.Job.ID)
	}
	return ids, nil
}

// Replay implements api.DeadLetters.
func (d DeadLetters) Replay(ctx context.Context, subscriber, incarnation string, ids []string) (int, error) {
	now := time.Now
	if d.Now != nil {
		now = d.Now
	}
	return deliver.Replay(ctx, d.Bus, deliver.DeadFilter{Subscriber: subscriber, Incarnation: incarnation, Deliveries: ids}, now())
}

// AckLinks returns the codec of acknowledgement links, keyed from the
// publishing keys of b (links made under the key a rotation replaced keep
// working while it stays in the key file), or nil when b has none.
func AckLinks(b *bus.Bus) (*ack.Codec, error) {
	k := b.Keyring()
	if k == nil {
		return nil, nil
	}
	return ack.New(k.Derive(ack.Purpose)...)
}

// PublicURL is where partners reach the API: api.public_url, or the
// address api.listen binds, over plain HTTP.
func PublicURL(cfg *config.Config) string {
	if u := strings.TrimRight(cfg.API.PublicURL, "/"); u != "" {
		return u
	}
	return "http://" + cfg.API.Listen
}

// AckURL returns the email notifier's acknowledgement links (email.Config
// AckURL): PublicURL + "/ack/" + a capability for the delivery, for
// messages that carry an alert's content only. Without links it is nil.
func AckURL(cfg *config.Config, links *ack.Codec, now func() time.Time) func(*delivery.Job) string {
	if links == nil {
		return nil
	}
	base := PublicURL(cfg)
	return func(job *delivery.Job) string {
		if job.Alert == nil || (job.Mode != delivery.ModeSigned && job.Mode != delivery.ModeEncrypted) {
			return ""
		}
		tok, err := links.Seal(ack.ClaimFor(job, now()))
		if err != nil {
			return ""
		}
		return base + "/ack/" + tok
	}
}

// withKeyWatch runs the key-expiry warnings (internal/keywatch) beside
// run, the fan-out role's consumer, until both end: every process that
// runs the fan-out watches partners' keys, and the notices' claims make
// sure that one of them sends each notice.
func (a *App) withKeyWatch(run func(context.Context) error) func(context.Context) error {
	w := keywatch.New()
	w.Registry = a.registry
	w.Ledger = ViewIndex{V: a.view}
	w.Jobs, w.Receipts = a.bus.Producer(bus.TopicDeliveries), a.bus.Producer(bus.TopicReceipts)
	w.Thresholds = a.cfg.Email.KeyExpiryWarning
	w.Now = a.now
	w.Keys = &keyChecks // the policy's verdicts: each key parsed once per change of its judgment
	w.Log = a.log.With("role", RoleFanout, "component", "keywatch")
	a.metrics.MustRegister(w.Collectors()...)
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return w.Run(gctx) })
		g.Go(func() error { return run(gctx) })
		return g.Wait()
	}
}
