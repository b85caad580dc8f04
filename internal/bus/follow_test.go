package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// batches collects what FollowFrom hands its function.
type batches struct {
	mu   sync.Mutex
	next map[int]int64
	keys []string
	n    int // batches
}

func (c *batches) add(b bus.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.next == nil {
		c.next = map[int]int64{}
	}
	prev, seen := c.next[b.Partition]
	for i, m := range b.Messages {
		if m.Partition != b.Partition || (seen && i == 0 && m.Offset < prev) {
			return fmt.Errorf("message %d of a batch of partition %d is from partition %d at %d (next was %d)", i, b.Partition, m.Partition, m.Offset, prev)
		}
		c.keys = append(c.keys, string(m.Key))
	}
	c.next[b.Partition] = b.Next
	c.n++
	return nil
}

func (c *batches) snapshot() (map[int]int64, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[int]int64, len(c.next))
	for p, o := range c.next {
		next[p] = o
	}
	return next, append([]string(nil), c.keys...)
}

// follow runs FollowFrom in the background until stop is called.
func follow(t *testing.T, b *bus.Bus, topic string, from map[int]int64, c *batches) (stop func() error) {
	t.Helper()
	return inBackground(t, "FollowFrom", func(ctx context.Context) error { return b.FollowFrom(ctx, topic, from, c.add) })
}

func keyed(prefix string, n int) []kafka.Message {
	out := make([]kafka.Message, n)
	for i := range out {
		out[i] = kafka.Message{Key: fmt.Appendf(nil, "%s-%02d", prefix, i), Value: []byte("v")}
	}
	return out
}

func TestFollowFromResumesFromGivenOffsets(t *testing.T) {
	b := kafkatest.New(t)
	ctx := t.Context()
	p := b.Producer(bus.TopicReceipts)
	require.NoError(t, p.Write(ctx, keyed("first", 20)...))

	var c batches
	stop := follow(t, b, bus.TopicReceipts, nil, &c)
	require.Eventually(t, func() bool { _, keys := c.snapshot(); return len(keys) == 20 }, waitFor, tick)
	require.NoError(t, stop())
	next, _ := c.snapshot()
	offs, err := b.Offsets(ctx, bus.TopicReceipts, bus.TopicAlerts)
	require.NoError(t, err)
	require.Len(t, offs[bus.TopicReceipts], 3)
	require.Len(t, offs[bus.TopicAlerts], 3)
	for _, po := range offs[bus.TopicReceipts] {
		assert.Equal(t, po.End, next[po.Partition], "partition %d read to its high watermark", po.Partition)
		assert.Zero(t, po.Start)
	}

	// Resuming from those offsets reads only what was written since.
	require.NoError(t, p.Write(ctx, keyed("second", 10)...))
	var c2 batches
	stop = follow(t, b, bus.TopicReceipts, next, &c2)
	require.Eventually(t, func() bool { _, keys := c2.snapshot(); return len(keys) == 10 }, waitFor, tick)
	require.Never(t, func() bool { _, keys := c2.snapshot(); return len(keys) != 10 }, 300*time.Millisecond, tick)
	require.NoError(t, stop())
	_, keys := c2.snapshot()
	for _, k := range keys {
		assert.Contains(t, k, "second-")
	}

	// ReadAt finds a message by its place, and nothing beyond the end.
	m, ok, err := b.ReadAt(ctx, bus.TopicReceipts, 0, 0)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Zero(t, m.Offset)
	assert.NotEmpty(t, m.Key)
	_, ok, err = b.ReadAt(ctx, bus.TopicReceipts, 0, 1000)
	require.NoError(t, err)
	assert.False(t, ok, "beyond the high watermark")
	hw, err := b.HighWatermarks(ctx, bus.TopicReceipts)
	require.NoError(t, err)
	_, ok, err = b.ReadAt(ctx, bus.TopicReceipts, 0, hw[0])
	require.NoError(t, err)
	assert.False(t, ok, "at the high watermark")
}

func TestFollowFromRefusesOffsetsThatDoNotFit(t *testing.T) {
	b := kafkatest.New(t)
	ctx := t.Context()
	require.NoError(t, b.Producer(bus.TopicAudit).Write(ctx, keyed("a", 5)...))
	fn := func(bus.Batch) error { return nil }

	err := b.FollowFrom(ctx, bus.TopicAudit, map[int]int64{0: 1000}, fn)
	require.ErrorIs(t, err, bus.ErrNotResumable)
	assert.ErrorContains(t, err, "offset 1000 of partition 0 is beyond its high watermark")

	err = b.FollowFrom(ctx, bus.TopicAudit, map[int]int64{7: 0}, fn)
	require.ErrorIs(t, err, bus.ErrNotResumable)
	assert.ErrorContains(t, err, "partition 7 does not exist")
}

func TestFollowFromSkipsRecordsDeletedByRetention(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	b := c.Open(t, c.Config())
	ctx := t.Context()
	p := b.Producer(bus.TopicReceipts)
	// Older than the topic's retention (400 days): deleted when retention
	// is applied.
	old := keyed("old", 5)
	for i := range old {
		old[i].Time = time.Now().Add(-500 * 24 * time.Hour)
	}
	require.NoError(t, p.Write(ctx, old...))
	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicReceipts)
		return err == nil && offs[bus.TopicReceipts][0].Start == 5
	}, waitFor, tick)

	// Asked to resume below the first offset, FollowFrom moves to it and
	// says so with a batch holding no message.
	var got batches
	stop := follow(t, b, bus.TopicReceipts, map[int]int64{0: 2}, &got)
	require.Eventually(t, func() bool { next, _ := got.snapshot(); return next[0] == 5 }, waitFor, tick)
	require.NoError(t, p.Write(ctx, keyed("new", 3)...))
	require.Eventually(t, func() bool { next, _ := got.snapshot(); return next[0] == 8 }, waitFor, tick)
	require.NoError(t, stop())
	_, keys := got.snapshot()
	assert.Equal(t, []string{"new-00", "new-01", "new-02"}, keys)

	_, ok, err := b.ReadAt(ctx, bus.TopicReceipts, 0, 1)
	require.NoError(t, err)
	assert.False(t, ok, "deleted by retention")
}
