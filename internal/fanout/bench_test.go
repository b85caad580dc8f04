//go:build unix

package fanout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bench"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

var benchSectors = []string{"agriculture", "food-processing", "construction", "manufacturing", "textiles",
	"warehousing-logistics", "recruitment", "hospitality", "care", "retail"}

// benchPopulation is herald bench's fan-out population: partner i is in
// sector i mod 10 with one email address and one webhook.
func benchPopulation(n int) []*subscribers.Subscriber {
	formats := subscribers.WebhookFormats
	subs := make([]*subscribers.Subscriber, n)
	for i := range subs {
		id := fmt.Sprintf("p-%06d", i)
		s := &subscribers.Subscriber{
			ID: id, Name: "Partner " + id, Kind: subscribers.KindBusiness,
			Sectors: []string{benchSectors[i%len(benchSectors)]}, Clearance: alerts.TLPAmber, Status: subscribers.StatusActive,
			Email: []subscribers.Email{{Address: "alerts@" + id + ".example"}},
			Webhooks: []subscribers.Webhook{{URL: fmt.Sprintf("https://hooks-%d.example/hooks/%s", i%16, id),
				Secrets: []string{secret}, Format: formats[(i/len(benchSectors))%len(formats)]}},
		}
		s.Normalize()
		subs[i] = s
	}
	return subs
}

// benchAlert is herald bench's alert (about 1.5 KiB of JSON) for the
// first sector.
func benchAlert(id string) *alerts.Alert { return bench.NewAlert(id, benchSectors[:1], nil) }

// BenchmarkHandle is herald bench's fan-out run: one alert to 10,000 of
// 100,000 partners (20,000 jobs) per iteration, through Handle into a
// kfake broker, with the ledger read from the receipts topic as history.
// Run it with -benchtime=5x.
func BenchmarkHandle(b *testing.B) {
	bs := kafkatest.New(b, kafkatest.Partitions(6))
	reg := subscribers.NewRegistry()
	for _, s := range benchPopulation(100_000) {
		reg.Put(s)
	}
	w := &fanout.Worker{
		Registry: reg, Policy: policy.Options{},
		Deliveries: bs.Producer(bus.TopicDeliveries), Receipts: bs.Producer(bus.TopicReceipts),
		Quarantine: bs.Producer(bus.TopicQuarantine), History: ledger.FromBus(bs), Authenticate: bs.Authenticate,
		Now: time.Now, Log: slog.New(slog.DiscardHandler),
	}
	ctx := context.Background()
	handle := func(a *alerts.Alert) {
		v, err := json.Marshal(a)
		if err != nil {
			b.Fatal(err)
		}
		m := bs.AsWritten(bus.TopicAlerts, kafka.Message{Key: []byte(a.ID), Value: v, Time: time.Now()})
		if err := w.Handle(ctx, []kafka.Message{m}); err != nil {
			b.Fatal(err)
		}
	}
	warm := benchAlert("bench-warm")
	warm.Audience = alerts.Audience{Subscribers: []string{"p-000000"}}
	handle(warm)
	b.ReportAllocs()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before := cpu()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		handle(benchAlert(fmt.Sprintf("bench-fanout-%d", i)))
	}
	b.ReportMetric(float64(b.N*20_000)/b.Elapsed().Seconds(), "jobs/s")
	// The process's CPU time (the broker's included) per job: steadier
	// than jobs/s on a shared machine.
	b.ReportMetric(float64((cpu()-before).Microseconds())/float64(b.N*20_000), "cpu-µs/job")
}
