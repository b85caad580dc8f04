package deliver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestSettledOutcomesAreWrittenWhileAPartitionWaits: one batch of a retry
// tier holds, on partition A, a job delivered at once and behind it a job
// due in ten minutes, and on partition B jobs that are due. While the
// handler waits for A's job, the outcomes of B's jobs and of A's first job
// are already in Kafka (PRODUCT.md §4); the batch still commits only when
// everything is written.
func TestSettledOutcomesAreWrittenWhileAPartitionWaits(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.RetrySchedule = []time.Duration{time.Hour}
		c.TierHold = time.Hour
	})
	// Two partners whose jobs lie on different partitions.
	parts := map[string]int{}
	subA, subB := "", ""
	for i := 0; subB == ""; i++ {
		id := fmt.Sprintf("p%d", i)
		p := (&kafka.Murmur2Balancer{}).Balance(kafka.Message{Key: []byte(id)}, 0, 1, 2)
		switch {
		case subA == "":
			subA, parts[id] = id, p
		case p != parts[subA]:
			subB = id
		}
	}
	const hookA2, hookB, hookB2 = "https://a2.partner.example/hook", "https://b.partner.example/hook", "https://b2.partner.example/hook"
	e.reg.Put(testSub(subA, hookA, hookA2))
	e.reg.Put(testSub(subB, hookB, hookB2))
	retry := func(j *delivery.Job, due time.Time) *delivery.Job {
		j.Attempt, j.NotBefore = 1, due
		return j
	}
	now := time.Now()
	readyA := retry(testJob(testAlert("al-pa"), subA, delivery.ChannelWebhook, hookA), now)
	waiting := retry(testJob(testAlert("al-pw"), subA, delivery.ChannelWebhook, hookA2), now.Add(10*time.Minute))
	readyB := retry(testJob(testAlert("al-pb"), subB, delivery.ChannelWebhook, hookB), now)
	readyB2 := retry(testJob(testAlert("al-pb2"), subB, delivery.ChannelWebhook, hookB2), now)
	var out []kafka.Message
	for _, j := range []*delivery.Job{readyA, waiting, readyB, readyB2} {
		v, err := j.Encode()
		require.NoError(t, err)
		out = append(out, kafka.Message{Key: []byte(j.Subscriber), Value: v})
	}
	require.NoError(t, e.bus.Producer(bus.RetryTopic(0)).Write(context.Background(), out...))
	// The batch as the consumer hands it over: all four, one handler call.
	var msgs []kafka.Message
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.RetryTopic(0), func(m kafka.Message) error {
		msgs = append(msgs, m)
		return nil
	}))
	require.Len(t, msgs, 4)

	r := e.runner()
	done := make(chan error, 1)
	go func() { done <- r.handle(context.Background(), 0, msgs) }()

	for _, j := range []*delivery.Job{readyB, readyB2, readyA} {
		require.Eventually(t, func() bool {
			return countState(e.outcomes(j.ID), delivery.StateDelivered) == 1
		}, 10*time.Second, 20*time.Millisecond, "the outcome of %s (%s) is not written while the batch waits", j.Alert.ID, j.Subscriber)
	}
	select {
	case err := <-done:
		t.Fatalf("the handler returned (%v): the job due in ten minutes did not wait", err)
	default:
	}
	assert.Empty(t, e.n.callsTo(hookA2), "attempted before its time")
	assert.Empty(t, e.outcomes(waiting.ID))

	// Stopping forwards the waiting job to its tier; then the batch is done.
	r.stopOnce.Do(func() { close(r.stopping) })
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not return after the runner stopped")
	}
	copies := 0
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.RetryTopic(0), func(m kafka.Message) error {
		j, err := delivery.DecodeJob(m.Value, nil)
		require.NoError(t, err)
		if j.ID == waiting.ID {
			copies++
			assert.Equal(t, 1, j.Attempt)
			assert.True(t, j.NotBefore.Equal(waiting.NotBefore), "due %s, not %s", j.NotBefore, waiting.NotBefore)
		}
		return nil
	}))
	assert.Equal(t, 2, copies, "the waiting job is forwarded, not lost")
	assert.Empty(t, e.n.callsTo(hookA2))
}
