package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
	"github.com/herald-alerts/herald/subscribers"
)

// BenchmarkFanOut10k delivers one alert per iteration to 10,000 endpoints
// (100 loopback receivers × 100 paths, one partner each) with Herald's
// notifier, then posts the same body to the same endpoints with a bare
// net/http client with the same pool settings, and reports both rates,
// their ratio, and PGP signatures per alert.
//
//	go test -run '^$' -bench FanOut10k -benchtime 3x ./internal/deliver/webhook/
func BenchmarkFanOut10k(b *testing.B) {
	const (
		receivers = 100
		paths     = 100
		workers   = 64
	)
	var urls []string
	for range receivers {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusNoContent)
		}))
		b.Cleanup(srv.Close)
		for p := range paths {
			urls = append(urls, fmt.Sprintf("%s/partner/%d", srv.URL, p))
		}
	}
	subs := make([]*subscribers.Subscriber, len(urls))
	for i, u := range urls {
		s := testSub(u)
		s.ID = fmt.Sprintf("partner-%05d", i)
		subs[i] = s
	}
	signer := webhooktest.NewSigner(b)
	n, err := webhook.New(webhook.Config{AllowInsecureLoopback: true, Timeout: 30 * time.Second}, signer, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(n.Close)
	raw := &http.Client{Transport: &http.Transport{
		ForceAttemptHTTP2: true, MaxIdleConns: 1024, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second,
		DisableCompression: true,
	}}
	b.Cleanup(raw.CloseIdleConnections)

	run := func(send func(i int) error) time.Duration {
		var next atomic.Int64
		var failed atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= len(urls) {
						return
					}
					if err := send(i); err != nil && failed.Add(1) == 1 {
						b.Errorf("delivery %d: %v", i, err)
					}
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}

	var heraldTime, rawTime time.Duration
	signsBefore := signer.Count()
	alerts := 0
	for b.Loop() {
		a := testAlert(fmt.Sprintf("bench-%d", alerts))
		heraldPass := func() {
			heraldTime += run(func(i int) error {
				job := &delivery.Job{ID: delivery.ID(a.ID, subs[i].ID, urls[i]), Alert: a, Subscriber: subs[i].ID,
					Channel: delivery.ChannelWebhook, Target: urls[i], Mode: delivery.ModeSigned}
				return n.Notify(context.Background(), job, subs[i])
			})
		}
		rawPass := func() {
			body, _, err := n.Body(a) // the same bytes; signed at most once
			if err != nil {
				b.Fatal(err)
			}
			rawTime += run(func(i int) error { return rawPost(raw, urls[i], body) })
		}
		// Alternate the order, so that neither side always meets the
		// other's leftovers (idle connections, GC debt, a busy machine).
		if alerts%2 == 0 {
			heraldPass()
			rawPass()
		} else {
			rawPass()
			heraldPass()
		}
		alerts++
	}
	total := float64(alerts * len(urls))
	heraldRate := total / heraldTime.Seconds()
	rawRate := total / rawTime.Seconds()
	b.ReportMetric(heraldRate, "herald-deliveries/s")
	b.ReportMetric(rawRate, "raw-deliveries/s")
	b.ReportMetric(heraldRate/rawRate, "ratio")
	b.ReportMetric(float64(signer.Count()-signsBefore)/float64(alerts), "pgp-signs/alert")
}

// rawPost is the baseline: a bare net/http POST of body.
func rawPost(c *http.Client, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
