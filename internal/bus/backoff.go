package bus

import (
	"context"
	"time"
)

// backoff paces every retry of the bus: waits that double from min up to
// max, back to min after progress. It is the one retry helper of the
// package.
type backoff struct {
	min, max, next time.Duration
}

func newBackoff(min, max time.Duration) *backoff { return &backoff{min: min, max: max, next: min} }

// readBackoff is the pacing of whole-topic reads and followers.
func readBackoff() *backoff { return newBackoff(100*time.Millisecond, 5*time.Second) }

// wait sleeps the next delay and doubles it; it reports false when ctx
// ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// reset starts the waits from min again, after progress.
func (b *backoff) reset() { b.next = b.min }

// current is the delay the next wait sleeps, for logs.
func (b *backoff) current() time.Duration { return b.next }

// until calls f until it succeeds or ctx ends (false), logging each failure
// with what.
func (b *Bus) until(ctx context.Context, what string, f func() error) bool {
	bo := readBackoff()
	for {
		err := f()
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		b.log.Warn(what+": will retry", "error", err, "backoff", bo.current())
		if !bo.wait(ctx) {
			return false
		}
	}
}
