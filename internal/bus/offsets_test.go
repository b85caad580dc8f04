package bus_test

import (
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
