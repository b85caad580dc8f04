package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// BenchmarkLoadRegistryAfterRotation loads a registry of 100,000 partners
// registered under publishing key A, vouched for with B (`keys resign`),
// once with B and A held (every record authentic) and once with B alone
// (every record vouched for by its endorsement), and reports the peak heap
// the load adds (HeapAlloc sampled during the load, above the heap after a
// GC before it; the in-process broker's work serving the fetches counts
// in it too) and the registry's own heap (freed by a GC once dropped). Run it alone:
// go test -run '^$' -bench LoadRegistryAfterRotation -benchtime 1x ./internal/app/
func BenchmarkLoadRegistryAfterRotation(b *testing.B) {
	const n = 100_000
	c := kafkatest.Start(b, kafkatest.RetryTiers(1))
	secretA, secretB := bytes.Repeat([]byte{1}, busauth.KeySize), bytes.Repeat([]byte{2}, busauth.KeySize)
	open := func(secrets ...[]byte) *bus.Bus {
		keys, err := busauth.New(secrets...)
		if err != nil {
			b.Fatal(err)
		}
		return c.OpenWith(b, c.Config(), bus.Options{Keyring: keys, Log: slog.New(slog.DiscardHandler)})
	}
	bA, bBA, bB := open(secretA), open(secretB, secretA), open(secretB)
	p := bA.Producer(bus.TopicSubscribers)
	for start := 0; start < n; start += 1000 {
		msgs := make([]kafka.Message, 0, 1000)
		for i := start; i < start+1000; i++ {
			s := acmeCarWash()
			s.ID, s.Name = fmt.Sprintf("p-%06d", i), fmt.Sprintf("Partner %d", i)
			s.Email = []subscribers.Email{{Address: fmt.Sprintf("soc@p-%06d.example", i)}}
			s.Normalize()
			v, err := json.Marshal(s)
			if err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, kafka.Message{Key: []byte(s.ID), Value: v})
		}
		if err := p.Write(b.Context(), msgs...); err != nil {
			b.Fatal(err)
		}
	}
	store := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := store.ScanSigners(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	if res, err := store.Resign(b.Context(), "cli:bench", scan); err != nil || res.Records != n {
		b.Fatalf("resign: %+v, %v", res, err)
	}
	for _, run := range []struct {
		name string
		bus  *bus.Bus
	}{{"authentic", bBA}, {"vouched", bB}} {
		b.Run(run.name, func(b *testing.B) {
			var peak, base, kept uint64
			for b.Loop() {
				var reg *subscribers.Registry
				base, peak = measureHeap(func() {
					reg, err = app.LoadRegistry(b.Context(), run.bus, slog.New(slog.DiscardHandler))
				})
				if err != nil {
					b.Fatal(err)
				}
				if got := reg.Len(); got != n {
					b.Fatalf("loaded %d partners, want %d", got, n)
				}
				kept = heapAfterGC()
				runtime.KeepAlive(reg)
				reg = nil
				kept -= heapAfterGC()
			}
			b.ReportMetric(float64(peak-base)/(1<<20), "peak-heap-MiB")
			b.ReportMetric(float64(kept)/(1<<20), "registry-MiB")
		})
	}
}

// heapAfterGC returns HeapAlloc after a GC.
func heapAfterGC() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// measureHeap runs fn and returns HeapAlloc after a GC before it and the
// highest HeapAlloc sampled while it ran.
func measureHeap(fn func()) (base, peak uint64) {
	base = heapAfterGC()
	peak = base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var s runtime.MemStats
		for {
			runtime.ReadMemStats(&s)
			peak = max(peak, s.HeapAlloc)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	fn()
	close(done)
	wg.Wait()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return base, max(peak, ms.HeapAlloc)
}
