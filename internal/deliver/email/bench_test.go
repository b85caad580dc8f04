package email_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
)

const (
	benchRecipients = 10_000
	benchConns      = 4 // the notifier's default pool
)

// BenchmarkSend10k sends one alert to 10,000 partners (one address each)
// through the Notifier to a loopback go-smtp sink, signed only and signed
// and encrypted, and beside it, in the same iteration, a bare go-smtp
// client sending a message of the same bytes over the same number of
// connections. It reports both rates, their ratio, renderings per alert
// (which must be 1) and signatures per message (1: the signed part names
// its recipient, RFC 9788 header protection).
//
//	go test -run '^$' -bench Send10k -benchtime 3x ./internal/deliver/email/
func BenchmarkSend10k(b *testing.B) {
	for _, mode := range []string{delivery.ModeSigned, delivery.ModeEncrypted} {
		b.Run(mode, func(b *testing.B) {
			sink := smtptest.New(b, smtptest.Options{Discard: true})
			signer := pgptest.AgencySigner(b)
			n := newNotifier(b, sink, signer, func(c *email.Config) { c.Pool = benchConns })
			alice, _ := pgptest.RecipientKey(b, pgptest.Alice)
			subs := make([]*subscribers.Subscriber, benchRecipients)
			for i := range subs {
				addr := fmt.Sprintf("ops%d@partner%d.example", i, i)
				subs[i] = &subscribers.Subscriber{ID: fmt.Sprintf("p%d", i), Email: []subscribers.Email{{Address: addr, PGPKey: alice}}}
			}
			tlp := alerts.TLPGreen
			if mode == delivery.ModeEncrypted {
				tlp = alerts.TLPAmber
			}
			// One message as the raw client's payload: the same size and
			// shape as what the notifier sends.
			probe := smtptest.New(b, smtptest.Options{})
			pn := newNotifier(b, probe, pgptest.AgencySigner(b), nil)
			pa := testAlert("PROBE", tlp, alerts.MarkingOfficial)
			if err := pn.Notify(context.Background(), job(pa, subs[0], subs[0].Email[0].Address, mode), subs[0]); err != nil {
				b.Fatal(err)
			}
			payload := probe.Messages()[0].Data

			var heraldTime, rawTime time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				a := testAlert(fmt.Sprintf("BENCH-%d", i), tlp, alerts.MarkingOfficial)
				start := time.Now()
				fanOut(b, benchConns, func(k int) error {
					s := subs[k]
					return n.Notify(context.Background(), job(a, s, s.Email[0].Address, mode), s)
				})
				heraldTime += time.Since(start)

				start = time.Now()
				rawSend(b, sink.Addr, payload)
				rawTime += time.Since(start)
			}
			b.StopTimer()
			iters := float64(b.N)
			heraldRate := iters * benchRecipients / heraldTime.Seconds()
			rawRate := iters * benchRecipients / rawTime.Seconds()
			b.ReportMetric(heraldRate, "herald-msgs/s")
			b.ReportMetric(rawRate, "raw-msgs/s")
			b.ReportMetric(heraldRate/rawRate, "ratio")
			b.ReportMetric(float64(email.Renders(n))/iters, "renders/alert")
			b.ReportMetric(float64(signer.Ops())/(iters*benchRecipients), "signs/msg")
			if got := email.Renders(n); got != uint64(b.N) {
				b.Fatalf("%d renderings for %d alerts", got, b.N)
			}
			if got, want := signer.Ops(), uint64(b.N*benchRecipients); got != want {
				b.Fatalf("%d signatures for %d messages", got, want)
			}
			if want := 2 * b.N * benchRecipients; sink.Count() != want {
				b.Fatalf("sink got %d messages, want %d", sink.Count(), want)
			}
		})
	}
}

// fanOut runs send for every recipient index on workers goroutines.
func fanOut(b *testing.B, workers int, send func(k int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	for range workers * 4 {
		wg.Go(func() {
			for {
				k := int(next.Add(1)) - 1
				if k >= benchRecipients {
					return
				}
				if err := send(k); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// rawSend sends payload to benchRecipients addresses with bare go-smtp
// clients over benchConns connections.
func rawSend(b *testing.B, addr string, payload []byte) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, benchConns)
	for range benchConns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			for {
				k := int(next.Add(1)) - 1
				if k >= benchRecipients {
					errs <- c.Quit()
					return
				}
				if err := c.Mail("alerts@herald.example", nil); err != nil {
					errs <- err
					return
				}
				if err := c.Rcpt(fmt.Sprintf("ops%d@partner%d.example", k, k), nil); err != nil {
					errs <- err
					return
				}
				w, err := c.Data()
				if err != nil {
					errs <- err
					return
				}
				w.Write(payload)
				if err := w.Close(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}
