// Package app wires Herald's roles together and owns their start and stop
// order: the bus (and, with no brokers configured, the embedded broker),
// topics, the subscriber registry materialised from Kafka, then the roles
// api, fanout and deliver; on shutdown the roles drain first and the bus
// closes last.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/segmentio/kafka-go"
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

// App is a running Herald process.
type App struct {
	cfg      *config.Config
	log      *slog.Logger
	roles    []string
	explicit bool
	bus      *bus.Bus
	registry *subscribers.Registry
	follower *registryFollower
	metrics  *prometheus.Registry
	now      func() time.Time
	ready    chan struct{}
}

// Options are the less common knobs of Run.
type Options struct {
	// Roles to run; empty means all. Explicit says the user chose them, so a
	// role that cannot start is an error rather than a warning.
	Roles    []string
	Explicit bool
	// Bus, if set, is used instead of opening one from the configuration
	// (the demo and tests share one).
	Bus *bus.Bus
	// Started, if set, is called once every role is running.
	Started func(*App)
	Now     func() time.Time
}

// Run runs the roles until ctx is cancelled, then drains and returns.
func Run(ctx context.Context, cfg *config.Config, log *slog.Logger, opt Options) error {
	a := &App{cfg: cfg, log: log, roles: opt.Roles, explicit: opt.Explicit, registry: subscribers.NewRegistry(),
		metrics: prometheus.NewRegistry(), now: opt.Now, ready: make(chan struct{})}
	if len(a.roles) == 0 {
		a.roles = AllRoles
	}
	if a.now == nil {
		a.now = time.Now
	}
	a.metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if opt.Bus != nil {
		a.bus = opt.Bus
	} else {
		bc, err := BusConfig(cfg)
		if err != nil {
			return err
		}
		b, err := bus.Open(ctx, bc, log)
		if err != nil {
			return fmt.Errorf("open kafka: %w", err)
		}
		a.bus = b
		defer b.Close()
	}
	if cfg.Kafka.CreateTopics {
		if err := a.bus.EnsureTopics(ctx, len(cfg.Delivery.RetrySchedule)); err != nil {
			return fmt.Errorf("create topics: %w", err)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel(err)
			}
		}()
	}

	caughtUp := make(chan struct{})
	a.follower = newRegistryFollower(a.bus, a.registry, log)
	start("subscriber registry", func(ctx context.Context) error {
		return a.follower.run(ctx, func() { close(caughtUp) })
	})
	select {
	case <-caughtUp:
		log.Info("subscriber registry loaded", "subscribers", a.registry.Len())
	case <-ctx.Done():
		wg.Wait()
		return firstError(errs, ctx)
	}

	for _, role := range a.roles {
		switch role {
		case RoleFanout:
			w := a.fanoutWorker()
			start(RoleFanout, func(ctx context.Context) error {
				return a.bus.Consume(ctx, GroupFanout, []string{bus.TopicAlerts}, func(ctx context.Context, msgs []kafka.Message) error {
					// Decide against every subscriber change acknowledged
					// before these alerts were fetched.
					if err := a.follower.Sync(ctx); err != nil {
						return err
					}
					return w.Handle(ctx, msgs)
				})
			})
		case RoleDeliver:
			run, err := a.deliverRole(ctx)
			if err != nil {
				if a.explicit {
					cancel(err)
					wg.Wait()
					return err
				}
				log.Warn("deliver role not started; delivery jobs wait in Kafka until a deliver worker runs", "reason", err)
				continue
			}
			start(RoleDeliver, run)
		case RoleAPI:
			run, err := a.apiRole()
			if err != nil {
				cancel(err)
				wg.Wait()
				return err
			}
			start(RoleAPI, run)
		}
	}
	if cfg.Metrics.Listen != "" {
		run, err := a.metricsListener(cfg.Metrics.Listen)
		if err != nil {
			cancel(err)
			wg.Wait()
			return err
		}
		start("metrics", run)
	}
	log.Info("herald running", "roles", strings.Join(a.roles, ","), "brokers", strings.Join(a.bus.Brokers(), ","), "embedded", a.bus.Embedded())
	close(a.ready)
	if opt.Started != nil {
		opt.Started(a)
	}
	<-ctx.Done()
	log.Info("shutting down: draining in-flight work")
	wg.Wait()
	return firstError(errs, ctx)
}

func firstError(errs chan error, ctx context.Context) error {
	select {
	case err := <-errs:
		return err
	default:
	}
	if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return nil
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
		Registry:   a.registry,
		Taxonomy:   taxonomy.Default(),
		Policy:     PolicyOptions(a.cfg),
		Deliveries: a.bus.Producer(bus.TopicDeliveries),
		Receipts:   a.bus.Producer(bus.TopicReceipts),
		Quarantine: a.bus.Producer(bus.TopicQuarantine),
		History:    ledger.FromBus(a.bus),
		Now:        a.now,
		Log:        a.log.With("role", RoleFanout),
	}
	jobs := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_jobs_total", Help: "Delivery jobs written by the fan-out."})
	alertsSeen := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_alerts_total", Help: "Alerts fanned out."})
	withheld := prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_fanout_withheld_total", Help: "Targets the policy withheld an alert from."})
	a.metrics.MustRegister(jobs, alertsSeen, withheld)
	w.Observe = func(_ string, j, wh int) {
		alertsSeen.Inc()
		jobs.Add(float64(j))
		withheld.Add(float64(wh))
	}
	return w
}

// BusConfig maps the configuration onto the bus's.
func BusConfig(c *config.Config) (bus.Config, error) {
	bc := bus.DefaultConfig()
	bc.Brokers = c.Kafka.Brokers
	bc.TopicPrefix = c.Kafka.TopicPrefix
	bc.ClientID = c.Kafka.ClientID
	bc.Embedded.Listen = c.Kafka.Embedded.Listen
	bc.Embedded.DataDir = c.Kafka.Embedded.DataDir
	bc.CreateTopics = c.Kafka.CreateTopics
	bc.Partitions = c.Kafka.Partitions
	bc.ReplicationFactor = c.Kafka.ReplicationFactor
	bc.Consumer.SessionTimeout = c.Kafka.Consumer.SessionTimeout
	bc.Consumer.HeartbeatInterval = c.Kafka.Consumer.HeartbeatInterval
	bc.Consumer.RebalanceTimeout = c.Kafka.Consumer.RebalanceTimeout
	bc.Consumer.MaxWait = c.Kafka.Consumer.MaxWait
	bc.Consumer.CommitBatch = c.Kafka.Consumer.CommitBatch
	bc.TLS = bus.TLSConfig{Enabled: c.Kafka.TLS.Enabled, CAFile: c.Kafka.TLS.CAFile, CertFile: c.Kafka.TLS.CertFile,
		KeyFile: c.Kafka.TLS.KeyFile, ServerName: c.Kafka.TLS.ServerName, InsecureSkipVerify: c.Kafka.TLS.InsecureSkipVerify}
	if c.Kafka.SASL.Mechanism != "" {
		pw, err := config.ReadSecret(c.Kafka.SASL.PasswordFile, "HERALD_KAFKA_SASL_PASSWORD")
		if err != nil {
			return bc, fmt.Errorf("kafka.sasl.password_file: %w", err)
		}
		bc.SASL = bus.SASLConfig{Mechanism: c.Kafka.SASL.Mechanism, Username: c.Kafka.SASL.Username, Password: pw}
	}
	return bc, nil
}
