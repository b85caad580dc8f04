package view_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/viewtest"
	"github.com/herald-alerts/herald/internal/view"
)

var benchReceipts = flag.Int("view.receipts", 1_000_000,
	"receipts of other alerts in the receipts topic for BenchmarkStatusLookup")

// The status goal (issue 12): GET /v1/alerts/{id}/deliveries for an alert
// with 1,000 receipts among at least 1,000,000 receipts of other alerts.
const (
	targetReceipts = 1000
	targetEntries  = 500  // 500 decisions, 499 outcomes and the alert receipt
	partners       = 1000 // per other alert: 1 alert receipt, a decision and an outcome each
)

// statusFixture is a receipts topic holding the target alert's receipts
// among others, and a view caught up with it.
type statusFixture struct {
	bus     *bus.Bus
	view    *view.View
	written int // receipts in the topic
	write   time.Duration
	build   time.Duration
	dir     string
}

// newStatusFixture writes others receipts of other alerts (alerts of
// 2,001 receipts each: fan-out to 1,000 partners and one outcome each) and
// the target alert's 1,000 receipts in the middle of them, straight to the
// broker in big batches, then builds a view from scratch and times it.
func newStatusFixture(tb testing.TB, others int) *statusFixture {
	c := kafkatest.Start(tb, kafkatest.RetryTiers(0), kafkatest.LogLevel(slog.LevelError))
	b := c.Open(tb, c.Config())
	ctx := context.Background()
	p := b.Producer(bus.TopicReceipts)
	start := time.Now()
	var batch []kafka.Message
	flush := func(force bool) {
		if len(batch) >= 20000 || (force && len(batch) > 0) {
			require.NoError(tb, p.Write(ctx, batch...))
			batch = batch[:0]
		}
	}
	add := func(r delivery.Receipt) {
		v, err := json.Marshal(r)
		require.NoError(tb, err)
		batch = append(batch, kafka.Message{Key: []byte(r.AlertID), Value: v})
		flush(false)
	}
	fannedOut := t0
	writeAlert := func(id string, n, fanout int) {
		fannedOut = fannedOut.Add(time.Minute)
		a := alert(tb, id, "Alert "+id, "AMBER", "api:alice", fannedOut, "", time.Time{})
		add(alertReceipt(a, fannedOut))
		n--
		for i := 0; n > 0; i++ {
			sub, target := fmt.Sprintf("p-%04d", i%fanout), fmt.Sprintf("soc@p-%04d.example", i%fanout)
			if i < fanout {
				add(decision(id, sub, delivery.ChannelEmail, target, delivery.Deliver, delivery.ModeEncrypted, fannedOut))
			} else {
				add(outcome(id, sub, target, delivery.StateDelivered, 1, "", fannedOut.Add(time.Second)))
			}
			n--
		}
	}
	written, targetDone := 0, false
	perAlert := 1 + 2*partners
	for i := 0; written < others; i++ {
		n := min(perAlert, others-written)
		writeAlert(fmt.Sprintf("o-%06d", i), n, partners)
		written += n
		if !targetDone && written >= others/2 {
			writeAlert("target", targetReceipts, targetEntries)
			targetDone = true
		}
	}
	if !targetDone {
		writeAlert("target", targetReceipts, targetEntries)
	}
	flush(true)
	f := &statusFixture{bus: b, written: written + targetReceipts, write: time.Since(start)}

	f.dir = tb.TempDir()
	start = time.Now()
	v, _ := viewtest.Run(tb, f.dir, view.Options{}, b, 10*time.Minute)
	f.build, f.view = time.Since(start), v
	require.EqualValues(tb, f.written, v.Stats().Applied[bus.TopicReceipts])
	return f
}

// lookup answers the status question and checks the answer.
func (f *statusFixture) lookup(tb testing.TB) {
	got, err := f.view.Lookup(context.Background(), []string{"target"})
	if err != nil {
		tb.Fatal(err)
	}
	if a := got["target"]; a == nil || len(a.Entries()) != targetEntries {
		tb.Fatalf("target alert: %v", got)
	}
}

func (f *statusFixture) report(tb testing.TB) (rate float64) {
	rate = float64(f.written) / f.build.Seconds()
	var size int64
	if fi, err := os.Stat(filepath.Join(f.dir, "view.db")); err == nil {
		size = fi.Size()
	}
	tb.Logf("receipts topic: %d receipts (%d of the target alert), written in %s; view built from scratch in %s: %.0f receipts/s; view.db %d MiB",
		f.written, targetReceipts, f.write.Round(time.Millisecond), f.build.Round(time.Millisecond), rate, size>>20)
	return rate
}

// BenchmarkStatusLookup measures the status question against the view at
// -view.receipts receipts of other alerts (default 1,000,000); it reports
// the view's rebuild rate and, for comparison, one read of the target's
// receipts partition as ledger.FromBus does it.
//
//	go test -run '^$' -bench BenchmarkStatusLookup -benchtime 200x ./internal/view/
func BenchmarkStatusLookup(b *testing.B) {
	f := newStatusFixture(b, *benchReceipts)
	rate := f.report(b)
	start := time.Now()
	_, err := ledger.FromBus(f.bus).Lookup(context.Background(), []string{"target"})
	require.NoError(b, err)
	partitionRead := time.Since(start)
	b.ResetTimer()
	for b.Loop() {
		f.lookup(b)
	}
	b.StopTimer()
	b.ReportMetric(rate, "rebuild-receipts/s")
	b.ReportMetric(f.build.Seconds(), "rebuild-s")
	b.ReportMetric(float64(f.written), "receipts")
	b.ReportMetric(float64(partitionRead.Milliseconds()), "partition-read-ms")
}

// TestStatusLookupAmongOtherAlerts is BenchmarkStatusLookup at a size CI
// runs: the answer is the ledger's. (How fast it is, is measured by the
// benchmark and herald bench, not asserted here.)
func TestStatusLookupAmongOtherAlerts(t *testing.T) {
	f := newStatusFixture(t, 20000)
	f.report(t)
	got, err := f.view.Lookup(t.Context(), []string{"target"})
	require.NoError(t, err)
	want, err := ledger.FromBus(f.bus).Lookup(t.Context(), []string{"target"})
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Len(t, got["target"].Entries(), targetEntries)

}

// BenchmarkDeskTiles measures what one poll of the console's desk asks of
// the view for its five tiles, over the status fixture's alerts (about
// 500 at the default -view.receipts, each fanned out to 1,000 partners,
// a minute apart; "today" starts after the last of them): before, a page
// of up to 500 summaries per state (five List calls); now, one Counts.
// json-B/op is the size of what the API sends for them.
//
//	go test -run '^$' -bench BenchmarkDeskTiles -benchmem ./internal/view/
func BenchmarkDeskTiles(b *testing.B) {
	f := newStatusFixture(b, *benchReceipts)
	since := t0.Add(48 * time.Hour)
	b.Run("five-lists", func(b *testing.B) {
		size := 0
		for b.Loop() {
			size = 0
			for _, state := range []string{"pending", "published", "rejected", "expired", "quarantined"} {
				items, _, err := f.view.List(view.ListQuery{State: state, Limit: view.MaxLimit})
				if err != nil {
					b.Fatal(err)
				}
				out, _ := json.Marshal(items)
				size += len(out)
			}
		}
		b.ReportMetric(float64(size), "json-B/op")
	})
	b.Run("counts", func(b *testing.B) {
		size := 0
		for b.Loop() {
			n, err := f.view.Counts(view.CountQuery{Since: since})
			if err != nil || n.Published == 0 {
				b.Fatal(n, err)
			}
			out, _ := json.Marshal(n)
			size = len(out)
		}
		b.ReportMetric(float64(size), "json-B/op")
	})
}
