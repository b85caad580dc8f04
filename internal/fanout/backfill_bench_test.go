package fanout_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/viewtest"
	"github.com/herald-alerts/herald/internal/view"
)

// BenchmarkBackfill is the fan-out's start on a deployment that ran
// without bindings: 10,000 alerts fanned out (their alert receipts on the
// receipts topic), none bound. Each iteration backfills them all from a
// view of ScopeFanOut (the view's read and the writes), then, once the
// view has read the bindings back, runs the backfill again, which finds
// nothing missing (reported as noop-ms). Run it with -benchtime=1x.
func BenchmarkBackfill(b *testing.B) {
	const alerts = 10_000
	for range b.N {
		b.StopTimer()
		bs := kafkatest.New(b, kafkatest.Partitions(6))
		at := time.Now().UTC()
		var msgs []kafka.Message
		for i := range alerts {
			a := benchAlert(fmt.Sprintf("op-backfill-%05d", i))
			msgs = append(msgs, fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, At: at,
				Type: a.Type, TLP: a.TLP, Marking: a.Marking, Title: a.Title, IssuedBy: a.IssuedBy, Digest: a.Digest()}))
		}
		if err := bs.Producer(bus.TopicReceipts).Write(b.Context(), msgs...); err != nil {
			b.Fatal(err)
		}
		v, stop := viewtest.Run(b, b.TempDir(), view.Options{Scope: view.ScopeFanOut}, bs, time.Minute)
		p := bs.Producer(bus.TopicAlertIDs)
		b.StartTimer()
		n, err := fanout.Backfill(b.Context(), v, p)
		b.StopTimer()
		if err != nil || n != alerts {
			b.Fatalf("backfilled %d of %d: %v", n, alerts, err)
		}
		if err := v.Sync(b.Context(), bus.TopicAlertIDs); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		n, err = fanout.Backfill(b.Context(), v, p)
		noop := time.Since(start)
		if err != nil || n != 0 {
			b.Fatalf("backfilled %d again: %v", n, err)
		}
		b.ReportMetric(float64(noop.Microseconds())/1000, "noop-ms")
		stop()
		b.StartTimer()
	}
}
