package bus_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestOffsetsAgreeWithKafkaGo: Offsets asks each leader for all its
// partitions at once; its answer is kafka-go's (which asks partition by
// partition), for every partition of several topics, empty ones included.
func TestOffsetsAgreeWithKafkaGo(t *testing.T) {
	for _, brokers := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d brokers", brokers), func(t *testing.T) { testOffsetsAgree(t, brokers) })
	}
}

func testOffsetsAgree(t *testing.T, brokers int) {
	b := kafkatest.New(t, kafkatest.Partitions(4), kafkatest.Brokers(brokers))
	ctx := t.Context()
	var msgs []kafka.Message
	for i := range 37 {
		msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", i%5), Value: []byte("v")})
	}
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, msgs...))
	require.NoError(t, b.Producer(bus.TopicSubscribers).Write(ctx, msgs[:3]...))

	got, err := b.Offsets(ctx, bus.TopicReceipts, bus.TopicSubscribers, bus.TopicAlerts)
	require.NoError(t, err)

	c := &kafka.Client{Addr: kafka.TCP(b.Brokers()...), Timeout: 10 * time.Second}
	for _, topic := range []string{bus.TopicReceipts, bus.TopicSubscribers, bus.TopicAlerts} {
		var reqs []kafka.OffsetRequest
		for p := range 4 {
			reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
		}
		res, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{b.Topic(topic): reqs}})
		require.NoError(t, err)
		want := make([]bus.PartitionOffsets, 4)
		total := int64(0)
		for _, po := range res.Topics[b.Topic(topic)] {
			require.NoError(t, po.Error)
			want[po.Partition] = bus.PartitionOffsets{Partition: po.Partition, Start: po.FirstOffset, End: po.LastOffset}
			total += po.LastOffset - po.FirstOffset
		}
		assert.Equal(t, want, got[topic], topic)
		assert.EqualValues(t, map[string]int{bus.TopicReceipts: 37, bus.TopicSubscribers: 3, bus.TopicAlerts: 0}[topic], total, topic)
	}
}

// TestReadRange: ReadRange reads the records of one partition between two
// offsets, in order, with their Kafka timestamps, and nothing else;
// records deleted by retention below the range's start are skipped.
func TestReadRange(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(2))
	b := c.Open(t, c.Config())
	ctx := t.Context()
	p := b.Producer(bus.TopicReceipts)
	old := keyed("old", 3)
	at := time.Now().Add(-500 * 24 * time.Hour).UTC().Truncate(time.Millisecond)
	for i := range old {
		old[i].Time = at
	}
	require.NoError(t, p.WriteToPartition(ctx, 1, old...))
	require.NoError(t, p.WriteToPartition(ctx, 1, keyed("new", 5)...))
	require.NoError(t, p.WriteToPartition(ctx, 0, keyed("other", 2)...))

	read := func(from, until int64) (keys []string, times []time.Time) {
		t.Helper()
		require.NoError(t, b.ReadRange(ctx, bus.TopicReceipts, 1, from, until, func(m kafka.Message) error {
			assert.Equal(t, 1, m.Partition)
			keys = append(keys, fmt.Sprintf("%s@%d", m.Key, m.Offset))
			times = append(times, m.Time)
			return nil
		}))
		return keys, times
	}
	keys, times := read(2, 5)
	assert.Equal(t, []string{"old-02@2", "new-00@3", "new-01@4"}, keys)
	assert.True(t, times[0].Equal(at), "the record's own timestamp: %v", times[0])
	keys, _ = read(6, 8)
	assert.Equal(t, []string{"new-03@6", "new-04@7"}, keys)
	keys, _ = read(8, 8)
	assert.Empty(t, keys)

	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicReceipts)
		return err == nil && offs[bus.TopicReceipts][1].Start == 3
	}, 10*time.Second, 10*time.Millisecond)
	keys, _ = read(0, 4)
	assert.Equal(t, []string{"new-00@3"}, keys, "deleted by retention")

	stop := errors.New("stop")
	n := 0
	err := b.ReadRange(ctx, bus.TopicReceipts, 1, 3, 8, func(kafka.Message) error { n++; return stop })
	assert.Same(t, stop, err, "fn's error as is")
	assert.Equal(t, 1, n)
}
