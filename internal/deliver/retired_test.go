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

// listedOnce is the bus, except that the first listing of retired retry
// tiers names a tier whose topic an operator deletes right after (the
// guide says a retired topic may be deleted once its group has no lag).
type listedOnce struct {
	*bus.Bus
	tier   int
	listed bool
}

func (b *listedOnce) RetiredRetryTiers(ctx context.Context, retryTiers int) ([]int, error) {
	if !b.listed {
		b.listed = true
		return []int{b.tier}, nil
	}
	return b.Bus.RetiredRetryTiers(ctx, retryTiers)
}

// TestDeletedRetiredTierEndsOnlyItsReader: a retired retry tier's topic
// deleted while the runner reads it (here, before its first session)
// ends the reading of that topic, not the deliver role: jobs of the
// deliveries topic are still delivered.
func TestDeletedRetiredTierEndsOnlyItsReader(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("bank", "https://bank.example/hook"))
	r := New(e.cfg, &listedOnce{Bus: e.bus, tier: len(testSchedule) + 3}, e.reg,
		map[string]Notifier{delivery.ChannelEmail: e.n, delivery.ChannelWebhook: e.n})
	stop := e.start(r)
	job := testJob(testAlert("ALERT-AFTER-DELETE"), "bank", delivery.ChannelWebhook, "https://bank.example/hook")
	e.publish(job)
	e.waitState(job.ID, delivery.StateDelivered)
	require.NoError(t, stop(), "the deliver role ran on")
}
