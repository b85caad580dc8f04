package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

// Notifier sends one job to its target. It returns nil when the receiver
// accepted it, or an error that delivery.Classify turns into a temporary or
// permanent *delivery.Failure. The email and webhook notifiers satisfy it.
type Notifier interface {
	Notify(ctx context.Context, job *delivery.Job, sub *subscribers.Subscriber) error
}

// Bus is what the runner needs of Kafka; *bus.Bus satisfies it.
type Bus interface {
	Consume(ctx context.Context, group string, topics []string, handle bus.Handler, opts ...bus.ConsumeOption) error
	Producer(topic string) *bus.Producer
	ReadAll(ctx context.Context, topic string, fn func(kafka.Message) error) error
	// Authenticate checks that a record read was written by Herald.
	Authenticate(m kafka.Message) error
	// AuthenticateHeaders checks that its other headers (a lease) were
	// too.
	AuthenticateHeaders(m kafka.Message) error
	// RetiredRetryTiers lists the existing retry topics from tier
	// retryTiers on (bus.Bus.RetiredRetryTiers).
	RetiredRetryTiers(ctx context.Context, retryTiers int) ([]int, error)
}

var _ Bus = (*bus.Bus)(nil)

// Internal tunables of Config's zero values; the operator's settings come
// from config.Delivery.
const (
	DefaultGroup          = "herald-deliver"
	defaultAttemptTimeout = 30 * time.Second
	defaultHold           = 2 * time.Second
	defaultGrace          = 25 * time.Millisecond
	defaultTierHold       = 30 * time.Second
)

// deliveriesPipeline is how many batches of the deliveries topic are
// handled at once (bus.Pipeline): the next batch's attempts start while
// the last ones of a batch run and its outcomes are written and committed.
// Retry tiers handle one batch at a time: their sequences wait for jobs
// that are not yet due.
const deliveriesPipeline = 2

// deliveriesQueue is how many records of the deliveries topic the reader
// fetches ahead of the batches: a pack of one partition's jobs of an alert
// is up to 512 KiB (tens of KB for a webhook alert), where a record of one
// job was a few KB, so the default of 500 records could hold hundreds of
// MB of a backlog. 64 packs keep the two batches in flight fed.
const deliveriesQueue = 64

// alertCacheSize is how many decoded alerts a runner keeps: the jobs of an
// alert arrive close together.
const alertCacheSize = 256

// Config configures a Runner.
type Config struct {
	// Delivery holds the operator's settings (delivery.*: retry
	// schedule, concurrency, per-endpoint bound, jitter, breaker), as
	// validated by config.Validate; the zero value means
	// config.Default().Delivery. Retry tier i waits RetrySchedule[i]; its
	// topic must exist.
	config.Delivery
	// Group is the consumer group of the deliveries topic; retry tier i
	// uses Group + ".retry.i".
	Group string
	// AttemptTimeout is the deadline of one attempt.
	AttemptTimeout time.Duration
	// Hold is the longest a batch waits for its running attempts before
	// handing them off.
	Hold time.Duration
	// Grace is the least time a batch waits for stragglers once the rest
	// of it has finished (see the package doc).
	Grace time.Duration
	// TierHold is how long a retry-tier batch waits for a job that is not
	// yet due behind one it has already run; a job due later is forwarded.
	TierHold time.Duration
	// Now returns the time; default time.Now.
	Now func() time.Time
	// Log receives the runner's events.
	Log *slog.Logger
	// Policy are the operator's policy settings, for re-evaluation.
	Policy policy.Options
}

func (c *Config) setDefaults() {
	if len(c.RetrySchedule) == 0 {
		c.Delivery = config.Default().Delivery
	}
	c.RetrySchedule = slices.Clone(c.RetrySchedule)
	if c.Group == "" {
		c.Group = DefaultGroup
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = defaultAttemptTimeout
	}
	if c.Hold <= 0 {
		c.Hold = defaultHold
	}
	if c.Grace <= 0 {
		c.Grace = defaultGrace
	}
	if c.TierHold <= 0 {
		c.TierHold = defaultTierHold
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
}

// Runner consumes delivery jobs and retry tiers and carries each job to an
// outcome. Create it with New and start it with Run.
type Runner struct {
	cfg       Config
	bus       Bus
	reg       *subscribers.Registry
	notifiers map[string]Notifier
	log       *slog.Logger
	metrics   *metrics

	workers   *workers // the goroutines that run attempts, Concurrency at most
	endpoints *endpoints

	stopping chan struct{} // closed when Run's context ends
	stopOnce sync.Once
	orphans  sync.WaitGroup // attempts handed off by their batch

	alerts *delivery.AlertCache // decoded alerts by digest of their bytes

	deadline error // the cause of an attempt's deadline

	leaseMu sync.Mutex
	leases  map[string]leaseState // delivery id + attempt → state

	// beforeCommit, if set, runs after a batch's outcomes were written
	// and before the handler returns (tests inject crashes with it).
	beforeCommit func(msgs []kafka.Message) error
	// beforeFlush, if set, runs when records are about to be written (a
	// partition's settled outcomes, or a handed-off attempt's), with them
	// by topic; an error fails the write. Tests act between an attempt
	// and the write of its outcome with it.
	beforeFlush func(byTopic map[string][]kafka.Message) error
}

// New returns a Runner that reads jobs from b, subscribers from reg and
// sends through notifiers, keyed by delivery.ChannelEmail and
// delivery.ChannelWebhook.
func New(cfg Config, b Bus, reg *subscribers.Registry, notifiers map[string]Notifier) *Runner {
	cfg.setDefaults()
	r := &Runner{
		cfg:       cfg,
		bus:       b,
		reg:       reg,
		notifiers: notifiers,
		log:       cfg.Log,
		workers:   newWorkers(cfg.Concurrency),
		stopping:  make(chan struct{}),
		leases:    make(map[string]leaseState),
		alerts:    delivery.NewAlertCache(alertCacheSize),
		deadline:  fmt.Errorf("attempt deadline of %s exceeded", cfg.AttemptTimeout),
	}
	r.endpoints = newEndpoints(cfg.PerEndpoint, cfg.Breaker)
	r.metrics = newMetrics(r.endpoints, cfg.Now)
	return r
}

// Run consumes the deliveries topic and every retry tier (with those of a
// longer schedule configured before, whose topics exist) until ctx ends,
// then drains: in-flight batches finish (waiting jobs are forwarded) and
// commit, and attempts handed off by their batches finish and write their
// outcomes. It returns nil after a clean drain, or the first error that
// stopped a consumer for good (missing topics, authorisation).
func (r *Runner) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.stopOnce.Do(func() { close(r.stopping) }) })
	defer stop()
	// The tiers of a longer schedule configured before may still hold
	// jobs (read below).
	retired, err := r.bus.RetiredRetryTiers(ctx, len(r.cfg.RetrySchedule))
	if err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return r.bus.Consume(gctx, r.cfg.Group, []string{bus.TopicDeliveries}, func(hctx context.Context, msgs []kafka.Message) error {
			return r.handle(hctx, -1, msgs)
		}, bus.Pipeline(deliveriesPipeline), bus.Weigh(weighJobs), bus.Queue(deliveriesQueue))
	})
	for tier := range r.cfg.RetrySchedule {
		g.Go(func() error {
			topic := bus.RetryTopic(tier)
			return r.bus.Consume(gctx, r.cfg.Group+"."+topic, []string{topic}, func(hctx context.Context, msgs []kafka.Message) error {
				return r.handle(hctx, tier, msgs)
			})
		})
	}
	// The tiers of a longer schedule configured before hold jobs waiting
	// for their time, and nothing else reads them: read them as
	// the deliveries topic is read, sending what is due and moving the
	// rest to a tier of the schedule.
	for _, tier := range retired {
		g.Go(func() error {
			topic := bus.RetryTopic(tier)
			err := r.bus.Consume(gctx, r.cfg.Group+"."+topic, []string{topic}, func(hctx context.Context, msgs []kafka.Message) error {
				return r.handle(hctx, -1, msgs)
			})
			// Once emptied, a retired tier's topic may be deleted (the
			// operator guide says when): that ends its reading, not the
			// role.
			if err != nil && gctx.Err() == nil {
				if still, lerr := r.bus.RetiredRetryTiers(gctx, len(r.cfg.RetrySchedule)); lerr == nil && !slices.Contains(still, tier) {
					r.log.Info("retired retry topic deleted: no longer read", "topic", topic)
					return nil
				}
			}
			return err
		})
	}
	err = g.Wait()
	r.stopOnce.Do(func() { close(r.stopping) })
	r.orphans.Wait()
	r.workers.stop()
	if err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	return nil
}

// weighJobs weighs a record by the jobs it holds, so that a batch of the
// deliveries topic holds about kafka.consumer.commit_batch jobs however
// the fan-out packed them: the batch waits for all of them (Hold) before
// it commits.
func weighJobs(m kafka.Message) int { return delivery.JobsIn(m.Value) }

// now returns the configured time.
func (r *Runner) now() time.Time { return r.cfg.Now() }

// jittered spreads d by ±Jitter.
func (r *Runner) jittered(d time.Duration) time.Duration {
	f := 1 + r.cfg.Jitter*(2*rand.Float64()-1)
	return time.Duration(float64(d) * f)
}

// tierFor returns the largest retry tier whose wait is at most remaining,
// or 0.
func (r *Runner) tierFor(remaining time.Duration) int {
	tier := 0
	for i, w := range r.cfg.RetrySchedule {
		if w <= remaining {
			tier = i
		}
	}
	return tier
}

// retryDelay returns how long a job that failed temporarily at attempt n
// (earlier failures) waits: Schedule[n] with jitter, at least retryAfter,
// at most the last tier's wait.
func (r *Runner) retryDelay(n int, retryAfter time.Duration) time.Duration {
	d := r.jittered(r.cfg.RetrySchedule[n])
	if retryAfter > d {
		d = retryAfter
	}
	return min(d, r.cfg.RetrySchedule[len(r.cfg.RetrySchedule)-1])
}

// errShutdown ends a wait when the runner stops.
var errShutdown = errors.New("deliver: shutting down")

// sleepUntil waits until t, or until the runner stops or ctx ends.
func (r *Runner) sleepUntil(ctx context.Context, t time.Time) error {
	d := t.Sub(r.now())
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-r.stopping:
		return errShutdown
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
