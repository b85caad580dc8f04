package deliver

import (
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
)

// TestFlushPhases: dead letters and endpoint states are acknowledged
// before the receipts that tell of them, and the receipts before the
// retry jobs whose outcomes will follow them in the receipts topic.
func TestFlushPhases(t *testing.T) {
	m := []kafka.Message{{}}
	all := map[string][]kafka.Message{
		bus.RetryTopic(0): m, bus.TopicReceipts: m, bus.TopicDead: m, bus.TopicSubscribers: m, bus.RetryTopic(2): m,
	}
	require.Equal(t, [][]string{
		{bus.TopicDead, bus.TopicSubscribers},
		{bus.TopicReceipts},
		{bus.RetryTopic(0), bus.RetryTopic(2)},
	}, flushPhases(all))

	require.Equal(t, [][]string{{bus.TopicReceipts}}, flushPhases(map[string][]kafka.Message{bus.TopicReceipts: m}))
	require.Equal(t, [][]string{{bus.TopicReceipts}, {bus.RetryTopic(1)}},
		flushPhases(map[string][]kafka.Message{bus.RetryTopic(1): m, bus.TopicReceipts: m}))
	require.Empty(t, flushPhases(nil))
}
