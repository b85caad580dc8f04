package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/herald-alerts/herald/crypto/busauth"
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
	// reader reads the topic by its rule of endorsements (topicReader):
	// afresh for each load, then on while following. loading says a load
	// is under way: records signed with a key the keyring does not hold
	// are then reported together at its end, once the endorsements of
	// their partitions have been read, not one by one.
	reader  *topicReader
	loading bool

	mu   sync.Mutex
	next map[int]int64 // partition → offset after the last record applied
}

func newRegistryFollower(b *bus.Bus, reg *subscribers.Registry, log *slog.Logger) *registryFollower {
	return &registryFollower{bus: b, reg: reg, log: log, next: map[int]int64{}, reader: newTopicReader(b, false)}
}

// run follows the topic until ctx ends; caughtUp is called once, when
// everything written before run began has been applied.
//
// It first reads what the topic holds one partition after the other
// (bus.ReadAll), then follows every partition from where that read ended
// (bus.FollowFrom): reading all partitions at once for the load, as
// following does, holds a whole fetch of every partition in memory
// together, about 90 MB at the peak of loading 100,000 partners against
// a tenth of that one partition at a time.
func (f *registryFollower) run(ctx context.Context, caughtUp func()) error {
	var from map[int]int64
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		if from, err = f.load(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		f.log.Warn("load the subscriber registry: will retry", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
	if caughtUp != nil {
		caughtUp()
	}
	err := f.bus.FollowFrom(ctx, bus.TopicSubscribers, from, func(b bus.Batch) error {
		for _, m := range b.Messages {
			f.apply(m)
		}
		f.mu.Lock()
		f.next[b.Partition] = max(f.next[b.Partition], b.Next)
		f.mu.Unlock()
		return nil
	})
	if err != nil {
		return fmt.Errorf("follow the subscribers topic: %w", err)
	}
	return nil
}

// load reads everything the topic holds, one partition after the other,
// and returns the offsets to follow it from. Read again after a failure,
// the records are applied again in order: the registry ends as the topic
// is.
func (f *registryFollower) load(ctx context.Context) (map[int]int64, error) {
	offs, err := f.bus.Offsets(ctx, bus.TopicSubscribers)
	if err != nil {
		return nil, err
	}
	f.reader, f.loading = newTopicReader(f.bus, false), true
	defer func() { f.loading = false }()
	from := make(map[int]int64, len(offs[bus.TopicSubscribers]))
	for _, po := range offs[bus.TopicSubscribers] {
		from[po.Partition] = po.End
	}
	err = f.bus.ReadAll(ctx, bus.TopicSubscribers, func(m kafka.Message) error {
		f.apply(m)
		// ReadAll may read past the ends read above: follow from there.
		from[m.Partition] = max(from[m.Partition], m.Offset+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.reader.reportUnknown(f.log)
	f.mu.Lock()
	for p, next := range from {
		f.next[p] = max(f.next[p], next)
	}
	f.mu.Unlock()
	return from, nil
}

// apply applies one record of the topic by topicReader's rule: a record
// Herald wrote (tombstones included), or the record an endorsement
// vouches for. A record not authentic is logged (bus.Bus.Authentic), but
// during a load one signed with a key the keyring does not hold, which
// an endorsement may vouch for further on, is reported with the others
// at the load's end (topicReader.reportUnknown). Either way its offset
// counts as read for Sync.
func (f *registryFollower) apply(m kafka.Message) {
	res := f.reader.read(m)
	switch {
	case res.inForce != nil && res.inForce.apply:
		if err := f.reg.Apply(res.inForce.key, res.inForce.value); err != nil {
			f.log.Warn("skipping bad subscriber record", "key", string(res.inForce.key), "offset", m.Offset, "error", err)
		}
	case res.bad != nil:
		f.log.Warn("skipping bad subscriber record", "key", string(m.Key), "offset", m.Offset, "error", res.bad)
	case res.refused != nil && !(f.loading && errors.Is(res.refused, busauth.ErrUnknownKey)):
		f.bus.Authentic(m) // logs it and counts it
	}
	f.mu.Lock()
	f.next[m.Partition] = max(f.next[m.Partition], m.Offset+1)
	f.mu.Unlock()
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
