package deliver

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWorkers: every submitted function runs once, at most max at a time,
// submit never blocks while all workers are busy, and stop waits for the
// queue to drain and leaves the pool usable.
func TestWorkers(t *testing.T) {
	const max, n = 4, 1000
	w := newWorkers(max)
	var ran, active, peak atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(n)
	for i := range n {
		w.submit(func() {
			defer wg.Done()
			a := active.Add(1)
			for p := peak.Load(); a > p && !peak.CompareAndSwap(p, a); p = peak.Load() {
			}
			if i < max {
				<-release // the first ones hold every worker
			}
			active.Add(-1)
			ran.Add(1)
		})
	}
	// All n were queued while the workers were held: none runs until
	// a worker is free.
	require.Never(t, func() bool { return ran.Load() != 0 }, 100*time.Millisecond, 5*time.Millisecond,
		"a function ran while every worker was held")
	close(release)
	wg.Wait()
	if got := ran.Load(); got != n {
		t.Fatalf("ran %d, want %d", got, n)
	}
	if got := peak.Load(); got > max {
		t.Fatalf("%d ran at once, want at most %d", got, max)
	}
	w.stop()
	if w.running != 0 {
		t.Fatalf("%d workers still running after stop", w.running)
	}
	done := make(chan struct{})
	w.submit(func() { close(done) })
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a function submitted after stop did not run")
	}
	w.stop()
}
