package deliver

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestRetiredRetryTiersAreStillRead: an operator who shortens
// delivery.retry_schedule leaves jobs waiting in the retry topics of the
// tiers it no longer lists. Nobody else reads those topics: the runner
// still reads them, sending each job when it is due (a job not yet due
// moves to a tier of the schedule), until the topic's retention empties
// them.
func TestRetiredRetryTiersAreStillRead(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tiers := len(testSchedule)
	// The topics of a longer schedule, as an earlier configuration made them.
	require.NoError(t, e.bus.EnsureTopics(ctx, tiers+2))
	e.reg.Put(testSub("bank", "https://bank.example/hook"))

	due := testJob(testAlert("ALERT-RETIRED-1"), "bank", delivery.ChannelWebhook, "https://bank.example/hook")
	due.Attempt = 1
	due.NotBefore = time.Now()
	later := testJob(testAlert("ALERT-RETIRED-2"), "bank", delivery.ChannelWebhook, "https://bank.example/hook")
	later.Attempt = 1
	later.NotBefore = time.Now().Add(300 * time.Millisecond)
	for _, w := range []struct {
		tier int
		job  *delivery.Job
	}{{tiers + 1, due}, {tiers, later}} {
		v, err := w.job.Encode()
		require.NoError(t, err)
		require.NoError(t, e.bus.Producer(bus.RetryTopic(w.tier)).Write(ctx, kafka.Message{Key: []byte(w.job.Subscriber), Value: v}))
	}

	e.start(e.runner())
	e.waitState(due.ID, delivery.StateDelivered)
	e.waitState(later.ID, delivery.StateDelivered)
}
