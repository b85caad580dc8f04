// Package viewtest runs a receipts view (internal/view) against a test's
// bus for as long as the test needs it.
package viewtest

import (
	"context"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/view"
)

// Run opens the view in dir with opt and runs it on b, and returns it once
// it is ready (failing tb if it is not within ready, or if Run returns
// first). stop ends Run, checks that it returned without error and closes
// the view; it runs at the end of the test too, and only once.
func Run(tb testing.TB, dir string, opt view.Options, b *bus.Bus, ready time.Duration) (v *view.View, stop func()) {
	tb.Helper()
	v, err := view.Open(dir, opt)
	if err != nil {
		tb.Fatalf("open view: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx, b) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				tb.Errorf("view: Run: %v", err)
			}
		case <-time.After(ready):
			tb.Errorf("view: Run did not return within %s of its cancel", ready)
		}
		if err := v.Close(); err != nil {
			tb.Errorf("view: close: %v", err)
		}
	}
	tb.Cleanup(stop)
	select {
	case <-v.Ready():
	case err := <-done:
		tb.Fatalf("view: Run returned before the view was ready: %v", err)
	case <-time.After(ready):
		tb.Fatalf("view: not ready within %s", ready)
	}
	return v, stop
}
