package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/formats"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/subscribers"
)

// fanoutSectors spread the fan-out population: the alert names the first,
// so one partner in len(fanoutSectors) matches.
var fanoutSectors = []string{"agriculture", "food-processing", "construction", "manufacturing", "textiles",
	"warehousing-logistics", "recruitment", "hospitality", "care", "retail"}

// population returns the fan-out population of n partners: partner i is
// in sector i mod 10 and has one email address and one webhook; the
// webhooks of each sector take the payload formats in turn.
func (e *env) population(n int) []*subscribers.Subscriber {
	subs := make([]*subscribers.Subscriber, n)
	for i := range subs {
		s := e.partner(fmt.Sprintf("p-%06d", i), fanoutSectors[i%len(fanoutSectors)], true, true, i)
		s.Webhooks[0].Format = string(formats.Formats[(i/len(fanoutSectors))%len(formats.Formats)])
		subs[i] = s
	}
	return subs
}

// runFanout is run 1: FanoutAlerts alerts, each matched against Partners
// partners (one in ten sharing its sector, each with one email address and
// one webhook; the webhooks of the matching partners take the payload
// formats in turn), through fanout.Worker.Handle into an embedded broker
// of its own, so that none of these jobs reach the end-to-end runs. Then
// the jobs of the last alert (planned again by Worker.Plan, the function
// Handle uses) are delivered through Herald's webhook and email notifiers
// to the loopback receivers, and the agency key's signature count is read
// from pgp.Signer.Ops before and after each webhook format and the email
// channel.
func (e *env) runFanout(ctx context.Context) ([]Result, error) {
	opt := e.opt
	b, err := app.OpenBus(ctx, e.cfg, false, opt.Log.With("component", "bench-fanout"))
	if err != nil {
		return nil, fmt.Errorf("fan-out: open embedded broker: %w", err)
	}
	defer b.Close()
	if err := b.EnsureTopics(ctx, len(e.cfg.Delivery.RetrySchedule)); err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}

	e.progress("fan-out: registering %d partners", opt.Partners)
	reg := subscribers.NewRegistry()
	matching := 0
	for _, s := range e.population(opt.Partners) {
		if s.Sectors[0] == fanoutSectors[0] {
			matching++
		}
		reg.Put(s)
	}
	var jobs atomic.Int64
	w := &fanout.Worker{
		Registry:     reg,
		Policy:       app.PolicyOptions(e.cfg),
		Deliveries:   b.Producer(bus.TopicDeliveries),
		Receipts:     b.Producer(bus.TopicReceipts),
		Quarantine:   b.Producer(bus.TopicQuarantine),
		Bindings:     b.Producer(bus.TopicAlertIDs),
		History:      ledger.FromBus(b),
		Authenticate: b.Authenticate,
		Now:          time.Now,
		Log:          opt.Log.With("role", app.RoleFanout),
		Observe:      func(_ string, j, _ int) { jobs.Add(int64(j)) },
	}

	// Warm up the producers (metadata, connections) with an alert for one
	// named partner.
	warm := NewAlert("bench-fanout-warm", []string{"online-platforms"}, []string{"p-000000"})
	if err := w.Handle(ctx, []kafka.Message{b.AsWritten(bus.TopicAlerts, alertMessage(warm))}); err != nil {
		return nil, fmt.Errorf("fan-out: warm-up: %w", err)
	}
	jobs.Store(0)

	e.progress("fan-out: %d alerts × %d matching partners × 2 targets", opt.FanoutAlerts, matching)
	var elapsed time.Duration
	var last *alerts.Alert
	for k := range opt.FanoutAlerts {
		last = NewAlert(fmt.Sprintf("bench-fanout-%d", k), []string{fanoutSectors[0]}, nil)
		msg := b.AsWritten(bus.TopicAlerts, alertMessage(last))
		start := time.Now()
		if err := w.Handle(ctx, []kafka.Message{msg}); err != nil {
			return nil, fmt.Errorf("fan-out of %s: %w", last.ID, err)
		}
		elapsed += time.Since(start)
	}
	want := int64(opt.FanoutAlerts * matching * 2)
	if got := jobs.Load(); got != want {
		return nil, fmt.Errorf("fan-out: %d jobs written, want %d: %w", got, want, errIncomplete)
	}
	results := []Result{{Name: FanoutJobs, Herald: float64(want) / elapsed.Seconds(), Unit: unitJobsPerSecond}}
	e.progress("fan-out: %.0f jobs/s", results[0].Herald)

	signs, err := e.signatures(ctx, w, reg, last)
	if err != nil {
		return results, err
	}
	return append(results,
		Result{Name: FanoutSignsHerald, Herald: signs[string(formats.FormatHerald)], Unit: unitSignatures},
		Result{Name: FanoutSignsSTIX, Herald: signs[string(formats.FormatSTIX)], Unit: unitSignatures},
		Result{Name: FanoutSignsMISP, Herald: signs[string(formats.FormatMISP)], Unit: unitSignatures},
		Result{Name: FanoutSignsCAP, Herald: signs[string(formats.FormatCAP)], Unit: unitSignatures},
		Result{Name: FanoutSignsEmail, Herald: signs[delivery.ChannelEmail], Unit: unitSignatures},
	), nil
}

// signatures delivers every job of alert a through Herald's notifiers,
// one webhook format after the other and then the email channel, and
// returns the agency-key signatures each format's and the email channel's
// deliveries made (email: per message).
func (e *env) signatures(ctx context.Context, w *fanout.Worker, reg *subscribers.Registry, a *alerts.Alert) (map[string]float64, error) {
	plan, err := w.Plan(ctx, a, nil)
	if err != nil {
		return nil, fmt.Errorf("fan-out: plan %s again: %w", a.ID, err)
	}
	// Jobs by webhook format, and the email jobs.
	byGroup := map[string][]*delivery.Job{}
	for _, m := range plan.Jobs {
		js, bad, err := delivery.DecodeJobs(m.Value, nil)
		if err == nil && len(bad) > 0 {
			err = bad[0].Err
		}
		if err != nil {
			return nil, fmt.Errorf("fan-out: decode jobs: %w", err)
		}
		for _, j := range js {
			group := j.Channel
			if j.Channel == delivery.ChannelWebhook {
				group = reg.Get(j.Subscriber).Webhooks[0].Format
			}
			byGroup[group] = append(byGroup[group], j)
		}
	}
	wc, err := app.WebhookConfig(e.cfg)
	if err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	wc.Agency = app.Agency(e.cfg, e.signer)
	wn, err := webhook.New(wc, e.signer, e.opt.Log)
	if err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	defer wn.Close()
	ec, err := app.EmailConfig(e.cfg)
	if err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	en, err := email.New(ec, e.signer, e.opt.Log)
	if err != nil {
		return nil, fmt.Errorf("fan-out: %w", err)
	}
	defer en.Close()

	type notifier interface {
		Notify(context.Context, *delivery.Job, *subscribers.Subscriber) error
	}
	type group struct {
		name    string
		n       notifier
		tr      *tracker
		workers int
	}
	var groups []group
	for _, f := range formats.Formats {
		groups = append(groups, group{string(f), wn, e.hooks, e.concurrency(e.opt.Receivers)})
	}
	groups = append(groups, group{delivery.ChannelEmail, en, e.mails, e.concurrency(1)})
	out := map[string]float64{}
	for _, ch := range groups {
		jobs := byGroup[ch.name]
		if len(jobs) == 0 {
			return nil, fmt.Errorf("fan-out: alert %s has no %s jobs: %w", a.ID, ch.name, errIncomplete)
		}
		e.progress("fan-out: delivering the %d %s jobs of %s to count signatures", len(jobs), ch.name, a.ID)
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = j.ID
		}
		done := ch.tr.expect(ids, false)
		before := e.signer.Ops()
		err := parallel(ctx, ch.workers, len(jobs), func(i int) error {
			return ch.n.Notify(ctx, jobs[i], reg.Get(jobs[i].Subscriber))
		})
		if err != nil {
			return nil, fmt.Errorf("fan-out: deliver %s jobs of %s: %w", ch.name, a.ID, err)
		}
		if err := waitDone(ctx, done, 10*time.Second, ch.tr, "fan-out: "+ch.name+" deliveries"); err != nil {
			return nil, err
		}
		signs := float64(e.signer.Ops() - before)
		if ch.name == delivery.ChannelEmail {
			// Each message carries its recipient's protected headers
			// (RFC 9788) and acknowledgement link: one signature per
			// message, and the text rendered once per alert.
			signs /= float64(len(jobs))
		}
		out[ch.name] = signs
	}
	return out, nil
}

// parallel runs fn(0) … fn(n-1) on workers goroutines and returns the
// first error.
func parallel(ctx context.Context, workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = fmt.Errorf("item %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
