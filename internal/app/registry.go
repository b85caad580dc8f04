package app

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/segmentio/kafka-go"
)

// registryFollower keeps the subscriber registry in step with the compacted
// subscribers topic (partner records and endpoint states, see
// subscribers.Registry.Apply), applying only the records Herald wrote, and
// can wait until it has read everything written before a given moment, so
// that an alert is never decided against a registry older than the alert.
type registryFollower struct {
	bus *bus.Bus
	reg *subscribers.Registry
	log *slog.Logger

	mu   sync.Mutex
	next map[int]int64 // partition → offset after the last record applied
}

func newRegistryFollower(b *bus.Bus, reg *subscribers.Registry, log *slog.Logger) *registryFollower {
	return &registryFollower{bus: b, reg: reg, log: log, next: map[int]int64{}}
}

// run follows the topic until ctx ends; caughtUp is called once.
func (f *registryFollower) run(ctx context.Context, caughtUp func()) error {
	return f.bus.Follow(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		// A record not written by Herald (Authentic logs it) is skipped,
		// tombstones included; its offset still counts for Sync.
		if f.bus.Authentic(m) {
			if err := f.reg.Apply(m.Key, m.Value); err != nil {
				f.log.Warn("skipping bad subscriber record", "key", string(m.Key), "offset", m.Offset, "error", err)
			}
		}
		f.mu.Lock()
		f.next[m.Partition] = m.Offset + 1
		f.mu.Unlock()
		return nil
	}, caughtUp)
}

// Sync waits until every record written to the subscribers topic before
// Sync was called has been applied to the registry.
func (f *registryFollower) Sync(ctx context.Context) error {
	offs, err := f.bus.Offsets(ctx, bus.TopicSubscribers)
	if err != nil {
		return fmt.Errorf("sync subscriber registry: %w", err)
	}
	return f.SyncTo(ctx, offs[bus.TopicSubscribers])
}

// SyncTo waits until the registry has applied the subscribers topic up to
// the given offsets (bus.Offsets, read by the caller).
func (f *registryFollower) SyncTo(ctx context.Context, offs []bus.PartitionOffsets) error {
	hw := make(map[int]int64, len(offs))
	for _, po := range offs {
		hw[po.Partition] = po.End
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if f.reached(hw) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sync subscriber registry: not caught up with the subscribers topic: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

func (f *registryFollower) reached(hw map[int]int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for p, end := range hw {
		// A partition that was never written, or whose every record was
		// read, is caught up; compaction always keeps a partition's last
		// record, so its offset is end-1.
		if end > 0 && f.next[p] < end {
			return false
		}
	}
	return true
}
