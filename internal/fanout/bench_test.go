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
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
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

// benchAlert is an alert of herald bench's size (about 1.5 KiB of JSON)
// for the first sector.
func benchAlert(id string) *alerts.Alert {
	at := time.Now().UTC()
	a := &alerts.Alert{
		ID:      id,
		Title:   "Hand car wash network moving workers between sites under debt bondage",
		Summary: "Workers at several hand car washes are housed above the premises, have their passports held by a controller and are moved between sites weekly.",
		Body: "Intelligence from three independent sources indicates that a network operating hand car washes " +
			"recruits workers abroad with promises of construction work, charges them for travel and housing, " +
			"and deducts the debt from wages that are paid in cash, if at all.\n\n" +
			"Workers are collected from a shared house at 06:30 and returned after 20:00. The same vehicles are " +
			"seen at several sites. Payments for rent are made to one account in the name of a lettings company.\n",
		Indicators: []alerts.Indicator{
			{Type: "phone", Value: "+44 7700 900123", Context: "controller"},
			{Type: "vehicle", Value: "YX19 ABC", Context: "transport of workers"},
			{Type: "iban", Value: "GB33BUKB20201555555555", Context: "rent payments"},
			{Type: "address", Value: "12 Example Road, Leeds LS1 1AA", Context: "shared house"},
		},
		Actions:   []string{"Check right-to-work records of staff supplied by third parties", "Report matching payments"},
		Reporting: "Submit a SAR quoting the alert id, or call the modern slavery helpline.",
		Contact:   "Herald duty desk, 0300 000 0000",
		Severity:  alerts.SeveritySevere, Audience: alerts.Audience{Sectors: benchSectors[:1]},
		Marking: alerts.MarkingOfficial, TLP: alerts.TLPGreen, Handling: alerts.Handling{Code: "P"},
		Grading:  &alerts.Grading{Source: 2, Intelligence: "B"},
		IssuedBy: "bench-analyst", IssuedAt: &at,
	}
	a.Normalize()
	return a
}

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
		Registry: reg, Taxonomy: taxonomy.Default(), Policy: policy.Options{},
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
