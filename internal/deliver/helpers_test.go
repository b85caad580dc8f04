package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// testSchedule is short so that retries run in milliseconds.
var testSchedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}

func testAlert(id string) *alerts.Alert {
	now := time.Now().UTC().Truncate(time.Second)
	return &alerts.Alert{
		ID: id, Type: alerts.TypeAlert, Status: alerts.StatusActual,
		Title:    "Labour exploitation at car washes",
		Severity: alerts.SeveritySevere,
		Audience: alerts.Audience{Sectors: []string{"car-washes"}},
		Marking:  alerts.MarkingOfficial, TLP: alerts.TLPGreen,
		Handling: alerts.Handling{Code: "P"},
		IssuedBy: "analyst-7", IssuedAt: &now,
	}
}

// testSub returns an active partner in car-washes with the given webhook
// URLs and one email address.
func testSub(id string, urls ...string) *subscribers.Subscriber {
	s := &subscribers.Subscriber{ID: id, Name: id, Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Status: subscribers.StatusActive,
		Email: []subscribers.Email{{Address: "alerts@" + id + ".example"}}}
	for _, u := range urls {
		s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: u, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}})
	}
	s.Normalize()
	return s
}

func testJob(a *alerts.Alert, sub, channel, target string) *delivery.Job {
	return &delivery.Job{ID: delivery.ID(a.ID, sub, target), Alert: a, Subscriber: sub,
		Channel: channel, Target: target, Mode: delivery.ModeSigned}
}

// call is one Notify call a fake notifier saw.
type call struct {
	job delivery.Job
	at  time.Time
}

// fake is a notifier whose answer per target is scripted.
type fake struct {
	mu     sync.Mutex
	calls  []call
	script map[string]func(ctx context.Context, n int) error // by target; n counts calls to it from 1
	counts map[string]int
}

func newFake() *fake {
	return &fake{script: map[string]func(context.Context, int) error{}, counts: map[string]int{}}
}

func (f *fake) on(target string, fn func(ctx context.Context, n int) error) {
	f.mu.Lock()
	f.script[target] = fn
	f.mu.Unlock()
}

func (f *fake) Notify(ctx context.Context, job *delivery.Job, _ *subscribers.Subscriber) error {
	f.mu.Lock()
	f.counts[job.Target]++
	n := f.counts[job.Target]
	f.calls = append(f.calls, call{job: *job, at: time.Now()})
	fn := f.script[job.Target]
	f.mu.Unlock()
	if fn == nil {
		return nil
	}
	return fn(ctx, n)
}

func (f *fake) callsTo(target string) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []call
	for _, c := range f.calls {
		if c.job.Target == target {
			out = append(out, c)
		}
	}
	return out
}

// failTimes fails n times with temporary failures, then succeeds.
func failTimes(n int) func(context.Context, int) error {
	return func(_ context.Context, i int) error {
		if i <= n {
			return delivery.Temporary(delivery.ReasonHTTP5xx, fmt.Errorf("server answered 503 (call %d)", i))
		}
		return nil
	}
}

// hang blocks until the attempt's deadline.
func hang(ctx context.Context, _ int) error {
	<-ctx.Done()
	return ctx.Err()
}

// env is a runner against a real kfake cluster.
type env struct {
	t   testing.TB
	bus *bus.Bus
	reg *subscribers.Registry
	n   *fake
	cfg Config
}

func newEnv(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	b := kafkatest.New(t, kafkatest.RetryTiers(len(testSchedule)))
	e := &env{t: t, bus: b, reg: subscribers.NewRegistry(), n: newFake()}
	d := config.Default().Delivery
	d.RetrySchedule = testSchedule
	e.cfg = Config{
		Delivery:       d,
		Group:          "deliver-test",
		AttemptTimeout: 2 * time.Second,
		Log:            kafkatest.Logger(t, slog.LevelInfo),
	}
	for _, m := range mods {
		m(&e.cfg)
	}
	return e
}

func (e *env) runner() *Runner {
	return New(e.cfg, e.bus, e.reg, map[string]Notifier{delivery.ChannelEmail: e.n, delivery.ChannelWebhook: e.n})
}

// start runs r until the returned stop is called (or the test ends);
// stop returns Run's error.
func (e *env) start(r *Runner) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = errors.New("runner did not stop within 20s")
			}
		})
		return err
	}
	e.t.Cleanup(func() { _ = stop() })
	return stop
}

func (e *env) publish(jobs ...*delivery.Job) {
	e.t.Helper()
	var msgs []kafka.Message
	for _, j := range jobs {
		v, err := json.Marshal(j)
		require.NoError(e.t, err)
		msgs = append(msgs, kafka.Message{Key: []byte(j.Subscriber), Value: v})
	}
	require.NoError(e.t, e.bus.Producer(bus.TopicDeliveries).Write(context.Background(), msgs...))
}

// outcomes returns the outcome receipts of delivery id, in order.
func (e *env) outcomes(id string) []delivery.Receipt {
	e.t.Helper()
	var out []delivery.Receipt
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicReceipts, func(m kafka.Message) error {
		var rc delivery.Receipt
		if err := json.Unmarshal(m.Value, &rc); err != nil {
			return err
		}
		if rc.Kind == delivery.KindOutcome && rc.DeliveryID == id {
			out = append(out, rc)
		}
		return nil
	}))
	return out
}

// waitState waits until delivery id has an outcome receipt in state and
// returns its receipts.
func (e *env) waitState(id, state string) []delivery.Receipt {
	e.t.Helper()
	var rs []delivery.Receipt
	require.Eventually(e.t, func() bool {
		rs = e.outcomes(id)
		for _, r := range rs {
			if r.State == state {
				return true
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond, "delivery %s never reached %s; receipts %+v", id, state, rs)
	return rs
}

func states(rs []delivery.Receipt) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.State)
	}
	return out
}
