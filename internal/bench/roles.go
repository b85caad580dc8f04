package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/subscribers"
)

// runRoles is run 8: the webhook run's deliveries (WebhookPartners
// partners with one webhook each on the loopback receivers, Rounds alerts)
// made by Herald's own fanout and deliver roles in a process of their own,
// `herald serve --roles fanout,deliver` (this program, started again),
// against an embedded broker in this process. It reports the CPU time of
// that process alone per delivery (user + system of all its threads, from
// /proc/<pid>/stat), counted as cpu.per_delivery_us counts a Herald pass:
// from just before the alert is written until every delivery has arrived
// and the deliver group has committed every job. cpu.per_delivery_us also
// counts the broker, the receivers and the bench, which share its
// process; this figure is Herald's work alone. It has no goal.
func (e *env) runRoles(ctx context.Context) ([]Result, error) {
	hooks := make([]*subscribers.Subscriber, e.opt.WebhookPartners)
	for i := range hooks {
		hooks[i] = e.partner(fmt.Sprintf("wh-%05d", i), webhookSector, false, true, i)
		// The default format, left out of the record as a partner
		// registered before formats existed would have it, so that
		// --serve-binary can run issue 12's baseline build (73479c6), whose
		// registry refuses a field it does not know. Every build reads
		// an absent format as herald.
		hooks[i].Webhooks[0].Format = ""
	}
	var perDelivery float64
	err := e.againstServe(ctx, RunRoles, hooks, func(p *serveProcess, b *bus.Bus, subs []*subscribers.Subscriber) error {
		var err error
		perDelivery, err = e.throughRoles(p, b, subs)
		return err
	})
	if err != nil {
		return nil, err
	}
	e.progress("roles: %.1f µs of the fanout and deliver process's CPU time per delivery", perDelivery)
	return []Result{{Name: RolesCPUPerDelivery, Herald: perDelivery, Unit: unitMicroseconds}}, nil
}

// throughRoles warms the serve process up with one delivery, then sends
// Rounds alerts to hooks through it and returns its CPU time per delivery
// in µs over those passes.
func (e *env) throughRoles(p *serveProcess, b *bus.Bus, hooks []*subscribers.Subscriber) (float64, error) {
	ctx := p.ctx
	pub := b.Producer(bus.TopicAlerts)
	e.progress("roles: waiting for the process to join its groups")
	if _, err := e.latencyOnce(ctx, pub, hooks[0], "bench-roles-warm", workersStartTimeout); err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	if err := waitCommitted(ctx, b, app.GroupDeliver, bus.TopicDeliveries); err != nil {
		return 0, err
	}
	cpu := func() (time.Duration, error) { return processCPU(p.cmd.Process.Pid) }
	var total, elapsed time.Duration
	for round := range e.opt.Rounds {
		err := passCPU(ctx, b, cpu, &total, func() error {
			_, err := e.publishAndWait(ctx, pub, "roles", webhookSector, round, hooks, e.hooks,
				func(s *subscribers.Subscriber) string { return s.Webhooks[0].URL }, &elapsed)
			return err
		})
		if err != nil {
			return 0, err
		}
	}
	n := e.opt.Rounds * len(hooks)
	return float64(total.Nanoseconds()) / 1e3 / float64(n), nil
}
