package bus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

func TestReadKeysFindsEveryMessageOfTheKeysAndNoOther(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(5))
	ctx := context.Background()
	var msgs []kafka.Message
	for i := range 200 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("alert-%d", i%40)), Value: []byte(fmt.Sprint(i))})
	}
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, msgs...))

	want := []string{"alert-3", "alert-17", "alert-39"}
	got := map[string]int{}
	partitions := map[int]bool{}
	require.NoError(t, b.ReadKeys(ctx, bus.TopicReceipts, want, func(m kafka.Message) error {
		got[string(m.Key)]++
		partitions[m.Partition] = true
		return nil
	}))
	require.Equal(t, map[string]int{"alert-3": 5, "alert-17": 5, "alert-39": 5}, got)

	// ReadAll agrees on where those keys live.
	all := map[string]int{}
	require.NoError(t, b.ReadAll(ctx, bus.TopicReceipts, func(m kafka.Message) error {
		for _, k := range want {
			if string(m.Key) == k {
				all[k]++
				require.True(t, partitions[m.Partition])
			}
		}
		return nil
	}))
	require.Equal(t, got, all)
}
