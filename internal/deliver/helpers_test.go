package deliver

import (
	"bytes"
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
	"github.com/herald-alerts/herald/crypto/busauth"
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
	t       testing.TB
	cluster *kafkatest.Cluster
	bus     *bus.Bus
	reg     *subscribers.Registry
	n       *fake
	cfg     Config
}

func newEnv(t testing.TB, mods ...func(*Config)) *env {
	t.Helper()
	c := kafkatest.Start(t, kafkatest.RetryTiers(len(testSchedule)))
	b := c.Open(t, c.Config())
	e := &env{t: t, cluster: c, bus: b, reg: subscribers.NewRegistry(), n: newFake()}
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
		v, err := j.Encode()
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
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		if err != nil {
			return err
		}
		for _, rc := range rs {
			if rc.Kind == delivery.KindOutcome && rc.DeliveryID == id {
				out = append(out, rc)
			}
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

// stranger returns a Bus on the same cluster whose publishing key is not
// Herald's: a Kafka client that can write to the topics but cannot
// authenticate what it writes.
func (e *env) stranger() *bus.Bus {
	e.t.Helper()
	k, err := busauth.New(bytes.Repeat([]byte{0x5a}, busauth.KeySize))
	require.NoError(e.t, err)
	return e.cluster.OpenWith(e.t, e.cluster.Config(), bus.Options{Keyring: k, Log: kafkatest.Logger(e.t, slog.LevelError)})
}

// rawWriter returns a plain kafka-go writer to topic: records without any
// authenticator, or with headers copied as they are.
func (e *env) rawWriter(topic string) *kafka.Writer {
	w := &kafka.Writer{Addr: kafka.TCP(e.bus.Brokers()...), Topic: e.bus.Topic(topic), Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: 2 * time.Millisecond, RequiredAcks: kafka.RequireAll}
	e.t.Cleanup(func() { _ = w.Close() })
	return w
}

// follow keeps e.reg in step with the subscribers topic as the registry
// follower of a Herald process does (authentic records only), from now
// until the test ends; it returns once the registry has caught up.
func (e *env) follow() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	caughtUp := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- e.bus.Follow(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
			if e.bus.Authentic(m) {
				if err := e.reg.Apply(m.Key, m.Value); err != nil {
					e.t.Errorf("apply subscribers record %q: %v", m.Key, err)
				}
			}
			return nil
		}, func() { close(caughtUp) })
	}()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("follow subscribers: %v", err)
		}
	})
	select {
	case <-caughtUp:
	case <-time.After(10 * time.Second):
		e.t.Fatal("the registry did not catch up with the subscribers topic within 10s")
	}
}

// putSub writes s to the subscribers topic, as an administrator does.
func (e *env) putSub(s *subscribers.Subscriber) {
	e.t.Helper()
	v, err := json.Marshal(s)
	require.NoError(e.t, err)
	require.NoError(e.t, e.bus.Producer(bus.TopicSubscribers).Write(context.Background(), kafka.Message{Key: []byte(s.ID), Value: v}))
}

// readRegistry returns a registry read from the whole subscribers topic,
// as a process starting now would build it.
func (e *env) readRegistry() *subscribers.Registry {
	e.t.Helper()
	reg := subscribers.NewRegistry()
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicSubscribers, func(m kafka.Message) error {
		if e.bus.Authentic(m) {
			require.NoError(e.t, reg.Apply(m.Key, m.Value))
		}
		return nil
	}))
	return reg
}

// hookJob registers partner id, with the webhook https://<id>.example/hook,
// and returns its job of a.
func (e *env) hookJob(a *alerts.Alert, id string) *delivery.Job {
	hook := "https://" + id + ".example/hook"
	if e.reg.Get(id) == nil {
		e.reg.Put(testSub(id, hook))
	}
	return testJob(a, id, delivery.ChannelWebhook, hook)
}

// packOf returns the record packing jobs, all of alert a, as the fan-out
// writes it.
func packOf(t testing.TB, a *alerts.Alert, jobs ...*delivery.Job) []byte {
	t.Helper()
	raw, err := json.Marshal(a)
	require.NoError(t, err)
	bare := make([][]byte, len(jobs))
	for i, j := range jobs {
		bare[i], err = j.EncodeBare()
		require.NoError(t, err)
	}
	records := delivery.PackJobs(raw, bare)
	require.Len(t, records, 1)
	return records[0]
}

// deadLetters waits until the dead topic lists n letters, and returns them.
func (e *env) deadLetters(n int) []DeadLetter {
	e.t.Helper()
	var dead []DeadLetter
	require.Eventually(e.t, func() bool {
		var err error
		dead, err = ListDead(context.Background(), e.bus, DeadFilter{})
		return err == nil && len(dead) == n
	}, 5*time.Second, 20*time.Millisecond)
	return dead
}
