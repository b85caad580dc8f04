package bus_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestProducerConcurrentWritesKeepEachKeysOrder: writes from many
// goroutines share requests while their partition is busy; every message
// lands once, and each writer's messages (one key each) keep their order.
func TestProducerConcurrentWritesKeepEachKeysOrder(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(3))
	p := b.Producer(bus.TopicReceipts)
	const writers, each = 16, 40
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			seq := 0
			for i := range each {
				msgs := []kafka.Message{{Key: fmt.Appendf(nil, "k%d", w), Value: fmt.Appendf(nil, "%d-%d", w, seq)}}
				seq++
				if i%5 == 0 {
					// Some writes carry several messages.
					msgs = append(msgs, kafka.Message{Key: fmt.Appendf(nil, "k%d", w), Value: fmt.Appendf(nil, "%d-%d", w, seq)})
					seq++
				}
				assert.NoError(t, p.Write(t.Context(), msgs...))
			}
		})
	}
	wg.Wait()

	last := map[string]int{}
	seen := map[string]bool{}
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicReceipts, func(m kafka.Message) error {
		require.True(t, b.Authentic(m), "every message carries its authenticator")
		v := string(m.Value)
		require.False(t, seen[v], "%s written twice", v)
		seen[v] = true
		w, i, _ := strings.Cut(v, "-")
		n, err := strconv.Atoi(i)
		require.NoError(t, err)
		if prev, ok := last[w]; ok {
			require.Greater(t, n, prev, "writer %s's messages out of order", w)
		}
		last[w] = n
		return nil
	}))
	assert.Len(t, last, writers)
}

// TestPlacementIsWhereWriteWrites: a key goes to the partition Placement
// names for it, so that a record packing several keys' messages, keyed by
// one of them, lands where each of them would have.
func TestPlacementIsWhereWriteWrites(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(5))
	p := b.Producer(bus.TopicDeliveries)
	place, err := p.Placement(t.Context())
	require.NoError(t, err)
	var msgs []kafka.Message
	used := map[int]bool{}
	for i := range 60 {
		k := fmt.Appendf(nil, "partner-%d", i)
		used[place.Partition(k)] = true
		msgs = append(msgs, kafka.Message{Key: k, Value: k})
	}
	require.Len(t, used, 5, "keys spread over every partition")
	require.NoError(t, p.Write(t.Context(), msgs...))
	n := 0
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicDeliveries, func(m kafka.Message) error {
		n++
		require.Equal(t, place.Partition(m.Key), m.Partition, "key %s", m.Key)
		return nil
	}))
	require.Equal(t, 60, n)
}

// TestWriteToPartitionPlacesWhereAsked: messages written to a partition
// land there whatever their key, signed and in order after what the
// partition held; a partition the topic lacks is refused.
func TestWriteToPartitionPlacesWhereAsked(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(3))
	p := b.Producer(bus.TopicSubscribers)
	place, err := p.Placement(t.Context())
	require.NoError(t, err)
	require.NoError(t, p.Write(t.Context(), kafka.Message{Key: []byte("acme"), Value: []byte("first")}))
	target := (place.Partition([]byte("acme")) + 1) % 3
	var msgs []kafka.Message
	for i := range 5 {
		msgs = append(msgs, kafka.Message{Key: []byte("acme"), Value: fmt.Appendf(nil, "%d", i)})
	}
	require.NoError(t, p.WriteToPartition(t.Context(), target, msgs...))
	var got []string
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicSubscribers, func(m kafka.Message) error {
		require.True(t, b.Authentic(m), "every message carries its authenticator")
		if string(m.Value) != "first" {
			require.Equal(t, target, m.Partition)
			got = append(got, string(m.Value))
		}
		return nil
	}))
	assert.Equal(t, []string{"0", "1", "2", "3", "4"}, got)
	assert.ErrorContains(t, p.WriteToPartition(t.Context(), 3, msgs[0]), "no partition 3")
}
