// Package app wires Herald's roles together and owns their start and stop
// order: the publishing key and the bus (and, with no brokers configured,
// the embedded broker), topics and their retention, the subscriber registry
// materialised from Kafka, then the roles api, fanout and deliver; on
// shutdown the roles drain first and the bus closes last.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// Roles.
const (
	RoleAPI     = "api"
	RoleFanout  = "fanout"
	RoleDeliver = "deliver"
)

// AllRoles is what serve runs by default.
var AllRoles = []string{RoleAPI, RoleFanout, RoleDeliver}

// Consumer groups.
const (
	GroupFanout  = "herald-fanout"
	GroupDeliver = "herald-deliver"
)

// ParseRoles checks a comma-separated role list.
func ParseRoles(s string) ([]string, error) {
	var roles []string
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		if !slices.Contains(AllRoles, r) {
			return nil, fmt.Errorf("unknown role %q: want api, fanout or deliver", r)
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return nil, errors.New("no roles given")
	}
	return roles, nil
}

// needsTopics lists the topics (without prefix) each role needs: those it
// reads, and those it writes for another role or a person to read later,
// whose records would be lost unread if the topic kept them too briefly
// (the fan-out's jobs and quarantine, the deliver role's receipts and dead
// letters). Their retention is checked before the role starts (PRODUCT.md
// §6). The api role's view reads quarantine: status and the alert list say
// which alerts the fan-out refused. Both read alert-ids (the fan-out
// writes it too): an id names one alert forever, after retention.
func needsTopics(role string, retryTiers int) []string {
	switch role {
	case RoleFanout:
		return []string{bus.TopicAlerts, bus.TopicSubscribers, bus.TopicReceipts, bus.TopicDeliveries, bus.TopicQuarantine, bus.TopicAlertIDs}
	case RoleDeliver:
		ts := []string{bus.TopicDeliveries, bus.TopicSubscribers, bus.TopicReceipts, bus.TopicDead}
		for i := range retryTiers {
			ts = append(ts, bus.RetryTopic(i))
		}
		return ts
	case RoleAPI:
		return []string{bus.TopicAlerts, bus.TopicSubscribers, bus.TopicReceipts, bus.TopicDead,
			bus.TopicPending, bus.TopicAudit, bus.TopicQuarantine, bus.TopicAlertIDs}
	}
	return nil
}

// App is a running Herald process.
type App struct {
	// apiListener is Options.APIListener.
	apiListener net.Listener
	cfg         *config.Config
	log         *slog.Logger
	bus         *bus.Bus
	signer      *pgp.Signer
	registry    *subscribers.Registry
	follower    *registryFollower
	view        *view.View // nil unless a role that answers questions runs
	metrics     *prometheus.Registry
	now         func() time.Time
	roles       []string // the roles actually running
	// taxonomy is the configured sectors and regions (taxonomy.sectors,
	// taxonomy.regions) the api role checks alerts and partners against.
	taxonomy *taxonomy.Taxonomy
}

// Options are the less common knobs of Run.
type Options struct {
	// Roles to run; empty means all. Explicit says the user chose them, so a
	// deliver role that cannot start for want of a signing key is an error
	// rather than a warning. A role stopped by a topic's retention stops
	// alone either way (PRODUCT.md §6). Run fails when no role can start.
	Roles    []string
	Explicit bool
	// Bus, if set, is used instead of opening one from the configuration
	// (the demo and tests share one).
	Bus *bus.Bus
	// Started, if set, is called once every role is running.
	Started func(*App)
	Now     func() time.Time
	// APIListener, if set, is where the api role serves instead of
	// binding api.listen, which must name its address: a caller that
	// prints the API's URL before the roles start binds it first, so that
	// nothing else can take the port in between. Run closes it.
	APIListener net.Listener
}

// Run runs the roles until ctx is cancelled, then drains and returns.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, opt Options) error {
	own := *cfg // the app's copy: a listen address on port 0 becomes the one bound
	cfg = &own
	a := &App{cfg: cfg, log: log, registry: subscribers.NewRegistry(), metrics: prometheus.NewRegistry(), now: opt.Now,
		apiListener: opt.APIListener}
	if a.apiListener != nil {
		defer a.apiListener.Close() // served and shut down by then, or never used
	}
	if a.now == nil {
		a.now = time.Now
	}
	tax, err := cfg.Taxonomy.Build()
	if err != nil {
		return fmt.Errorf("the taxonomy: %w", err)
	}
	a.taxonomy = tax
	roles := opt.Roles
	if len(roles) == 0 {
		roles = AllRoles
	}
	// Roles start in the order of AllRoles whatever order they were given
	// in: the api role binds api.listen (a port 0 becomes the one bound)
	// before the deliver role builds acknowledgement links from it.
	roles = slices.Clone(roles)
	slices.SortStableFunc(roles, func(x, y string) int { return slices.Index(AllRoles, x) - slices.Index(AllRoles, y) })
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	roleUp := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "herald_role_up",
		Help: "1 for each role this process was asked to run that runs; 0 for one that does not (stopped by a topic's retention, or deliver without a signing key)."},
		[]string{"role"})
	a.metrics.MustRegister(roleUp)
	for _, r := range roles {
		roleUp.WithLabelValues(r).Set(0)
	}
	signer, err := LoadSigner(cfg, a.now())
	if err != nil {
		return err
	}
	a.signer = signer
	if opt.Bus != nil {
		a.bus = opt.Bus
	} else {
		refused := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_bus_refused_records_total",
			Help: "Records read from Herald's topics and skipped because Herald did not write them (no herald-auth, or one that does not match; or headers without a matching herald-auth-headers), by topic."},
			[]string{"topic"})
		a.metrics.MustRegister(refused)
		b, err := openBus(ctx, cfg, false, log, func(m kafka.Message, _ error) {
			refused.WithLabelValues(strings.TrimPrefix(m.Topic, cfg.Kafka.TopicPrefix)).Inc()
		})
		if err != nil {
			return err
		}
		a.bus = b
		defer b.Close()
	}
	tiers := len(cfg.Delivery.RetrySchedule)
	if cfg.Kafka.CreateTopics {
		if err := a.bus.EnsureTopics(ctx, tiers); err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
	}
	// A role whose topics keep records for too short a time, and a deliver
	// role without a signing key the user did not ask for by name, do not
	// start; the others do. Run fails only when no role can start.
	requested := roles
	roles, stopped, err := a.checkRetention(ctx, requested, tiers)
	if err != nil {
		return err
	}
	if a.signer == nil && !opt.Explicit && slices.Contains(roles, RoleDeliver) {
		roles = slices.DeleteFunc(roles, func(r string) bool { return r == RoleDeliver })
		stopped[RoleDeliver] = ErrNoSigner
	}
	if len(roles) == 0 {
		var errs []error
		for _, r := range requested {
			errs = append(errs, fmt.Errorf("%s role not started: %w", r, stopped[r]))
		}
		return errors.Join(errs...)
	}
	var down []string // the requested roles that do not start
	for _, r := range requested {
		if stopped[r] != nil {
			down = append(down, r)
		}
		switch err := stopped[r]; {
		case errors.Is(err, ErrNoSigner):
			log.Warn("deliver role not started: delivery jobs wait in Kafka until a deliver worker with a signing key runs", "reason", err)
		case err != nil:
			log.Error("role not started: a kafka topic it needs does not keep records as configured; the other roles run", "role", r, "error", err)
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	if slices.Contains(roles, RoleAPI) || slices.Contains(roles, RoleFanout) {
		dir, temporary, err := ViewDir(cfg)
		if err != nil {
			return err
		}
		// The fan-out alone asks the view only for the history of alerts
		// (view.ScopeFanOut): none of the outcomes, partner indexes or
		// audit trail the api role answers from.
		scope := view.ScopeFanOut
		if slices.Contains(roles, RoleAPI) {
			scope = view.ScopeAll
		}
		v, closeView, err := openView(dir, temporary, scope, log, a.now)
		if err != nil {
			return err
		}
		a.view = v
		defer func() {
			if err := closeView(); err != nil {
				log.Warn("close the view", "error", err)
			}
		}()
		g.Go(func() error {
			if err := v.Run(gctx, a.bus); err != nil {
				return fmt.Errorf("view: %w", err)
			}
			return nil
		})
		log.Info("keeping a view of kafka", "dir", dir, "temporary", temporary, "scope", scope)
	}
	caughtUp := make(chan struct{})
	a.follower = newRegistryFollower(a.bus, a.registry, log)
	g.Go(func() error {
		if err := a.follower.run(gctx, func() { close(caughtUp) }); err != nil {
			return fmt.Errorf("subscriber registry: %w", err)
		}
		return nil
	})
	select {
	case <-caughtUp:
		log.Info("subscriber registry loaded", "subscribers", a.registry.Len())
	case <-gctx.Done():
		return waitErr(g)
	}

	for _, role := range roles {
		run, err := a.role(gctx, role)
		if err != nil {
			g.Go(func() error { return err })
			return waitErr(g)
		}
		a.roles = append(a.roles, role)
		roleUp.WithLabelValues(role).Set(1)
		g.Go(func() error {
			if err := run(gctx); err != nil && !errors.Is(err, context.Canceled) {
				return fmt.Errorf("%s: %w", role, err)
			}
			return nil
		})
	}
	if cfg.Metrics.Listen != "" {
		run, err := a.metricsListener(cfg.Metrics.Listen)
		if err != nil {
			g.Go(func() error { return err })
			return waitErr(g)
		}
		g.Go(func() error { return run(gctx) })
	}
	running := []any{"roles", strings.Join(a.roles, ","), "brokers", strings.Join(a.bus.Brokers(), ","), "embedded", a.bus.Embedded()}
	if len(down) > 0 {
		running = append(running, "stopped", strings.Join(down, ","))
	}
	log.Info("herald running", running...)
	if opt.Started != nil {
		opt.Started(a)
	}
	<-gctx.Done()
	if ctx.Err() != nil {
		log.Info("shutting down: draining in-flight work")
	}
	return waitErr(g)
}

// checkRetention checks the retention of the topics each of roles reads
// (PRODUCT.md §6) and returns the roles that may start, and the others
// with why: a role reading a topic that keeps records for too short a
// time has an error naming the topic, its setting and both durations. The
// error is for topics whose configuration it could not read.
func (a *App) checkRetention(ctx context.Context, roles []string, tiers int) (run []string, stopped map[string]error, err error) {
	reads := map[string][]string{}
	for _, r := range roles {
		reads[r] = needsTopics(r, tiers)
	}
	failed, err := a.bus.CheckRetentionOf(ctx, reads, tiers)
	if err != nil {
		return nil, nil, fmt.Errorf("check the retention of kafka topics: %w", err)
	}
	stopped = map[string]error{}
	for _, r := range roles {
		if err := failed[r]; err != nil {
			stopped[r] = err
			continue
		}
		run = append(run, r)
	}
	return run, stopped, nil
}

// waitErr waits for every goroutine of g and returns the first error,
// ignoring the cancellation that shutdown is.
func waitErr(g *errgroup.Group) error {
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// role builds the run function of one role.
func (a *App) role(ctx context.Context, role string) (func(context.Context) error, error) {
	switch role {
	case RoleFanout:
		w := a.fanoutWorker()
		rebound := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_bindings_rewritten_total",
			Help: "Bindings of alert ids the fan-out wrote again on alert-ids because a later record under the id that Herald does not accept (not written by Herald, or not the binding) would have erased them at compaction: each is evidence of a writer on alert-ids other than Herald."})
		a.metrics.MustRegister(rebound)
		return a.withKeyWatch(func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			g.Go(func() error { return a.keepBindings(gctx, w.Bindings, rebound) })
			g.Go(func() error {
				return a.bus.Consume(gctx, GroupFanout, []string{bus.TopicAlerts}, func(ctx context.Context, msgs []kafka.Message) error {
					// Decide against every subscriber change, every receipt
					// (ids already fanned out, prior recipients) and every
					// binding of an id acknowledged before these alerts were
					// fetched: one request for all.
					offs, err := a.bus.Offsets(ctx, bus.TopicSubscribers, bus.TopicReceipts, bus.TopicAlertIDs)
					if err != nil {
						return fmt.Errorf("read the offsets the fan-out decides against: %w", err)
					}
					if err := a.follower.SyncTo(ctx, offs[bus.TopicSubscribers]); err != nil {
						return err
					}
					if err := a.view.SyncTo(ctx, map[string][]bus.PartitionOffsets{bus.TopicReceipts: offs[bus.TopicReceipts],
						bus.TopicAlertIDs: offs[bus.TopicAlertIDs]}); err != nil {
						return err
					}
					return w.Handle(ctx, msgs)
				})
			})
			return g.Wait()
		}), nil
	case RoleDeliver:
		return a.deliverRole()
	case RoleAPI:
		return a.apiRole()
	}
	return nil, fmt.Errorf("unknown role %q", role)
}

// APIAddr returns the address the api role listens on (the one bound when
// api.listen asked for port 0), or "" when the role does not run.
func (a *App) APIAddr() string {
	if !slices.Contains(a.roles, RoleAPI) {
		return ""
	}
	return a.cfg.API.Listen
}

// Bus returns the app's bus.
func (a *App) Bus() *bus.Bus { return a.bus }

// Registry returns the live subscriber registry.
func (a *App) Registry() *subscribers.Registry { return a.registry }

// PolicyOptions maps the configuration onto the policy's options.
func PolicyOptions(cfg *config.Config) policy.Options {
	return policy.Options{AllowInsecureLoopback: cfg.Webhooks.AllowInsecureLoopback, KeyCheck: KeyCheck}
}

func (a *App) fanoutWorker() *fanout.Worker {
	w := &fanout.Worker{
		Registry:      a.registry,
		Policy:        PolicyOptions(a.cfg),
		Deliveries:    a.bus.Producer(bus.TopicDeliveries),
		Receipts:      a.bus.Producer(bus.TopicReceipts),
		Quarantine:    a.bus.Producer(bus.TopicQuarantine),
		Bindings:      a.bus.Producer(bus.TopicAlertIDs),
		History:       a.view,
		Authenticate:  a.bus.Authenticate,
		SecondAnalyst: a.cfg.Release.SecondAnalyst,
		Now:           a.now,
		Log:           a.log.With("role", RoleFanout),
	}
	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_jobs_total", Help: "Delivery jobs written by the fan-out."})
	alertsSeen := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_alerts_total", Help: "Alerts fanned out."})
	withheld := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_withheld_total", Help: "Targets the policy withheld an alert from."})
	quarantined := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_fanout_quarantined_total",
		Help: "Records of the alerts topic the fan-out refused and quarantined, by reason (unattributed, unapproved, invalid, duplicate-id, ...): each one reached no one."},
		[]string{"reason"})
	a.metrics.MustRegister(jobs, alertsSeen, withheld, quarantined)
	w.Quarantined = func(reason string) { quarantined.WithLabelValues(reason).Inc() }
	w.Observe = func(_ string, j, wh int) {
		alertsSeen.Inc()
		jobs.Add(float64(j))
		withheld.Add(float64(wh))
	}
	return w
}

// bindingsEvery is how often the fan-out checks the alert-ids topic
// against its view when nothing wakes it (keepBindings); a variable for
// tests.
var bindingsEvery = time.Hour

// keepBindings keeps the alert-ids topic holding the binding of every alert
// fanned out, in every process of the fan-out role (the one writer of
// bindings), once the view has caught up and then at each pass: when the
// view finds a binding displaced (view.View.Displacements), else every
// bindingsEvery, and after a failure with back-off. Each pass first syncs
// the view with the receipts and alert-ids topics, so that what another
// process wrote is not written twice (a second copy would be harmless),
// then
//   - writes the binding of every alert the receipts say was fanned out
//     and that has none (fanout.Backfill): alerts fanned out before Herald
//     kept bindings or by a process of an older release during a rolling
//     upgrade, and any whose fan-out stopped between its alert receipt and
//     its binding; logged with the count when it wrote any, or at the
//     first pass;
//   - writes again each binding a later record under its id that Herald
//     does not accept would erase at compaction (fanout.Rebind), each
//     counted and logged once at warn level: evidence of a writer on
//     alert-ids other than Herald.
//
// A pass with nothing to write reads the view only.
func (a *App) keepBindings(ctx context.Context, p fanout.Producer, rebound prometheus.Counter) error {
	log := a.log.With("role", RoleFanout, "component", "bindings")
	select {
	case <-a.view.Ready():
	case <-ctx.Done():
		return nil
	}
	const firstRetry = time.Second
	retry, first := firstRetry, true
	for {
		err := a.bindingsPass(ctx, p, rebound, log, first)
		var again <-chan time.Time
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("alert id bindings not all written; will retry", "error", err, "retry", retry)
			again = time.After(retry)
			retry = min(2*retry, time.Minute)
		default:
			first, retry = false, firstRetry
			again = time.After(bindingsEvery)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-a.view.Displacements():
		case <-again:
		}
	}
}

// bindingsPass is one pass of keepBindings.
func (a *App) bindingsPass(ctx context.Context, p fanout.Producer, rebound prometheus.Counter, log *slog.Logger, first bool) error {
	if err := a.view.Sync(ctx, bus.TopicReceipts, bus.TopicAlertIDs); err != nil {
		return err
	}
	start := time.Now()
	n, err := fanout.Backfill(ctx, a.view, p)
	if n > 0 || (first && err == nil) {
		log.Info("alert id bindings backfilled", "written", n, "took", time.Since(start).Round(time.Millisecond))
	}
	if err != nil {
		return err
	}
	written, err := fanout.Rebind(ctx, a.view, p)
	for _, d := range written {
		rebound.Inc()
		log.Warn("alert id binding written again: a later record under the id that Herald does not accept would have erased it at compaction; something other than Herald writes to alert-ids",
			"alert", d.Binding.ID, "digest", d.Binding.Digest, "record", d.Why, "partition", d.Partition, "offset", d.Offset)
	}
	return err
}
