package deliver

import (
	"fmt"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
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

// TestPackReceipts: a flush's receipts go out alert by alert, each
// alert's in the order they were settled, packed into arrays; a lone
// receipt as it is.
func TestPackReceipts(t *testing.T) {
	rc := func(alert, sub string) kafka.Message {
		r := delivery.Receipt{Kind: delivery.KindOutcome, AlertID: alert, Subscriber: sub, State: delivery.StateDelivered}
		return kafka.Message{Key: []byte(alert), Value: r.Encode()}
	}
	decode := func(msgs []kafka.Message) []string {
		var out []string
		for _, m := range msgs {
			rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
			require.NoError(t, err)
			var subs []string
			for _, r := range rs {
				subs = append(subs, r.Subscriber)
			}
			out = append(out, string(m.Key)+":"+strings.Join(subs, ","))
		}
		return out
	}
	one := []kafka.Message{rc("a1", "s1")}
	require.Equal(t, one, packReceipts(one))
	distinct := []kafka.Message{rc("a1", "s1"), rc("a2", "s1")}
	require.Equal(t, distinct, packReceipts(distinct), "one receipt an alert: as they are")

	mixed := []kafka.Message{rc("a1", "s1"), rc("a2", "s1"), rc("a1", "s2"), rc("a3", "s9"), rc("a1", "s3"), rc("a2", "s2")}
	packed := packReceipts(mixed)
	require.Equal(t, []string{"a1:s1,s2,s3", "a2:s1,s2", "a3:s9"}, decode(packed))
	require.Equal(t, byte('['), packed[0].Value[0])
	require.Equal(t, mixed[3], packed[2], "a lone receipt is the record it was")

	headed := []kafka.Message{rc("a1", "s1"), rc("a1", "s2")}
	headed[1].Headers = []kafka.Header{{Key: "x", Value: []byte("1")}}
	require.Equal(t, headed, packReceipts(headed), "records with headers are left alone")

	many := make([]kafka.Message, delivery.MaxRecordReceipts+1)
	for i := range many {
		many[i] = rc("a1", fmt.Sprintf("s%d", i))
	}
	packed = packReceipts(many)
	require.Len(t, packed, 2, "bounded")
	require.Equal(t, byte('{'), packed[1].Value[0])
}
