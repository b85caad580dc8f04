package bus_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// pipelined runs Consume with Pipeline(depth) until the test ends and
// returns a function that stops it and returns Consume's result.
func pipelined(t *testing.T, b *bus.Bus, group string, depth int, h bus.Handler) (stop func() error) {
	t.Helper()
	return inBackground(t, "consume", func(ctx context.Context) error {
		return b.Consume(ctx, group, []string{bus.TopicReceipts}, h, bus.Pipeline(depth))
	})
}

func contains(msgs []kafka.Message, value string) bool {
	for _, m := range msgs {
		if string(m.Value) == value {
			return true
		}
	}
	return false
}

// TestPipelineHandlesLaterBatchesBeforeAnEarlierOneEndsAndCommitsInOrder:
// while the first batch's handler is still at work, later batches are
// handled, but nothing is committed past the unfinished batch until it
// ends.
func TestPipelineHandlesLaterBatchesBeforeAnEarlierOneEndsAndCommitsInOrder(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(1))
	ctx := t.Context()
	release := make(chan struct{})
	firstEntered := make(chan struct{})
	var later recorder
	stop := pipelined(t, b, "pipe", 3, func(_ context.Context, msgs []kafka.Message) error {
		if contains(msgs, "first-000") {
			close(firstEntered)
			<-release
			return nil
		}
		later.add(msgs)
		return nil
	})
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, messages("first", 1)...))
	<-firstEntered
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, messages("later", 5)...))

	require.Eventually(t, func() bool { return later.len() == 5 }, waitFor, tick, "later batches are handled while the first is")
	require.Never(t, func() bool {
		lag, err := b.Lag(ctx, "pipe", bus.TopicReceipts)
		return err != nil || lag != 6
	}, 300*time.Millisecond, 20*time.Millisecond, "nothing is committed while the first batch is unfinished")

	close(release)
	require.Eventually(t, func() bool {
		lag, err := b.Lag(ctx, "pipe", bus.TopicReceipts)
		return err == nil && lag == 0
	}, waitFor, tick)
	require.NoError(t, stop())
}

// TestPipelineCommitsNothingAfterAFailedBatch: when one batch fails, the
// batches handled after it are not committed either: they are fetched and
// handled again with it.
func TestPipelineCommitsNothingAfterAFailedBatch(t *testing.T) {
	b := kafkatest.New(t, kafkatest.Partitions(1))
	ctx := t.Context()
	release := make(chan struct{})
	firstEntered := make(chan struct{})
	var firstCalls atomic.Int32
	var rec recorder
	stop := pipelined(t, b, "pipe-fail", 3, func(_ context.Context, msgs []kafka.Message) error {
		if contains(msgs, "first-000") && firstCalls.Add(1) == 1 {
			close(firstEntered)
			<-release
			return errors.New("downstream unavailable")
		}
		rec.add(msgs)
		return nil
	})
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, messages("first", 1)...))
	<-firstEntered
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, messages("later", 5)...))
	require.Eventually(t, func() bool { return rec.len() == 5 }, waitFor, tick)
	close(release)

	// Everything is fetched again from the failed batch on: the later
	// messages, handled once already, are handled a second time.
	require.Eventually(t, func() bool {
		lag, err := b.Lag(ctx, "pipe-fail", bus.TopicReceipts)
		return err == nil && lag == 0
	}, waitFor, tick)
	require.NoError(t, stop())
	assert.EqualValues(t, 2, firstCalls.Load())
	count := map[string]int{}
	for _, v := range rec.values() {
		count[v]++
	}
	assert.Equal(t, 1, count["first-000"])
	for _, m := range messages("later", 5) {
		assert.Equal(t, 2, count[string(m.Value)], "%s was not committed after the failed batch, so it ran again", m.Value)
	}
}
