package deliver

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// benchNotifier answers healthy endpoints after a millisecond and hangs
// on the slow one until the attempt's deadline.
type benchNotifier struct {
	slow      string
	delivered atomic.Int64
	first     atomic.Int64 // unix nanos of the first call
	last      atomic.Int64 // unix nanos of the last healthy delivery
}

func (n *benchNotifier) Notify(ctx context.Context, job *delivery.Job, _ *subscribers.Subscriber) error {
	n.first.CompareAndSwap(0, time.Now().UnixNano())
	if job.Target == n.slow {
		<-ctx.Done()
		return delivery.Temporary(delivery.ReasonTimeout, ctx.Err())
	}
	time.Sleep(time.Millisecond)
	n.delivered.Add(1)
	n.last.Store(time.Now().UnixNano())
	return nil
}

// runSlowEndpoint delivers jobsPerEndpoint jobs to each of 100 healthy
// endpoints, and as many to one endpoint that hangs when withSlow, and
// returns the healthy jobs' throughput.
func runSlowEndpoint(b *testing.B, withSlow bool) float64 {
	b.Helper()
	const healthy, jobsPerEndpoint = 100, 100
	bs := kafkatest.New(b)
	reg := subscribers.NewRegistry()
	n := &benchNotifier{slow: "https://slow.partner.example/hook"}
	var jobs []*delivery.Job
	for i := range jobsPerEndpoint {
		a := testAlert(fmt.Sprintf("bench-%d", i))
		for p := range healthy {
			id := fmt.Sprintf("p%03d", p)
			url := fmt.Sprintf("https://%s.partner.example/hook", id)
			if i == 0 {
				reg.Put(testSub(id, url))
			}
			jobs = append(jobs, testJob(a, id, delivery.ChannelWebhook, url))
		}
		if withSlow {
			if i == 0 {
				reg.Put(testSub("slow", n.slow))
			}
			// The slow endpoint's jobs are spread through the stream.
			jobs = append(jobs, testJob(a, "slow", delivery.ChannelWebhook, n.slow))
		}
	}
	e := &env{t: b, bus: bs, reg: reg}
	e.publish(jobs...)
	r := New(Config{
		AttemptTimeout: time.Second,
		Log:            kafkatest.Logger(b, slog.LevelWarn),
	}, bs, reg, map[string]Notifier{delivery.ChannelWebhook: n})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	want := int64(healthy * jobsPerEndpoint)
	deadline := time.Now().Add(2 * time.Minute)
	for n.delivered.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("delivered %d of %d healthy jobs in 2m", n.delivered.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	took := time.Duration(n.last.Load() - n.first.Load())
	b.Logf("slow=%v took=%s handoffs=%v saturated=%v open=%v", withSlow, took,
		testutil.ToFloat64(r.metrics.handoffs), testutil.ToFloat64(r.metrics.reschedule.WithLabelValues(causeSaturated)),
		testutil.ToFloat64(r.metrics.reschedule.WithLabelValues(causeCircuitOpen)))
	return float64(want) / took.Seconds()
}

// BenchmarkSlowEndpoint compares the throughput of deliveries to 100
// healthy endpoints alone and beside one endpoint that hangs until the
// attempt deadline (1 s). Goal: the slow endpoint costs at most 10 %.
func BenchmarkSlowEndpoint(b *testing.B) {
	var alone, beside float64
	for b.Loop() {
		alone += runSlowEndpoint(b, false)
		beside += runSlowEndpoint(b, true)
	}
	b.ReportMetric(alone/float64(b.N), "healthy-alone-jobs/s")
	b.ReportMetric(beside/float64(b.N), "with-slow-jobs/s")
	b.ReportMetric(100*(1-beside/alone), "slowdown-%")
}
