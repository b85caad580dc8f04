package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestUnattributedJobIsNeverAttempted: a job record written by a Kafka
// client that is not Herald (no authenticator, or one made with another
// key) is moved to the dead topic as it is, with reason unattributed, and
// never attempted; it writes no receipt, and its offset is committed.
func TestUnattributedJobIsNeverAttempted(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	// A complete, well-formed job with another key, on the deliveries
	// topic; one without any authenticator on a retry topic.
	signedElsewhere := testJob(testAlert("al-f1"), "acme", delivery.ChannelWebhook, hookA)
	v1, err := signedElsewhere.Encode()
	require.NoError(t, err)
	require.NoError(t, e.stranger().Producer(bus.TopicDeliveries).Write(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: v1}))
	bare := testJob(testAlert("al-f2"), "acme", delivery.ChannelWebhook, hookA)
	bare.Attempt = 1
	v2, err := bare.Encode()
	require.NoError(t, err)
	require.NoError(t, e.rawWriter(bus.RetryTopic(0)).WriteMessages(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: v2}))
	good := testJob(testAlert("al-g"), "acme", delivery.ChannelWebhook, hookA)
	e.publish(good)
	r := e.runner()
	e.start(r)

	e.waitState(good.ID, delivery.StateDelivered)
	var dead []DeadLetter
	require.Eventually(t, func() bool {
		dead, err = ListDead(context.Background(), e.bus, DeadFilter{})
		return err == nil && len(dead) == 2
	}, 10*time.Second, 20*time.Millisecond)
	values := map[string]bool{}
	for _, d := range dead {
		assert.Equal(t, delivery.ReasonUnattributed, d.Reason)
		assert.True(t, d.Authentic, "Herald wrote the dead letter")
		assert.Nil(t, d.Job, "an unattributed record is not a job")
		assert.NotEmpty(t, d.Error)
		values[string(d.Raw)] = true
	}
	assert.Equal(t, map[string]bool{string(v1): true, string(v2): true}, values, "moved as they are")
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDead, func(m kafka.Message) error {
		assert.Equal(t, delivery.ReasonUnattributed, bus.Header(m, bus.HeaderReason))
		assert.NotEmpty(t, bus.Header(m, bus.HeaderSource))
		return nil
	}))

	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 1, "only Herald's job is attempted")
	assert.Equal(t, good.ID, calls[0].job.ID)
	assert.Empty(t, e.outcomes(signedElsewhere.ID), "no receipt under a claimed delivery id")
	assert.Empty(t, e.outcomes(bare.ID))
	assert.Equal(t, 2.0, testutil.ToFloat64(r.metrics.outcomes.WithLabelValues("", delivery.StateDead, delivery.ReasonUnattributed)))
	for group, topic := range map[string]string{e.cfg.Group: bus.TopicDeliveries, e.cfg.Group + "." + bus.RetryTopic(0): bus.RetryTopic(0)} {
		require.Eventually(t, func() bool {
			lag, err := e.bus.Lag(context.Background(), group, topic)
			return err == nil && lag == 0
		}, 5*time.Second, 20*time.Millisecond, "offsets of %s committed", topic)
	}

	// Nothing unattributed is ever replayed.
	n, err := Replay(context.Background(), e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n)
	assert.Len(t, e.n.callsTo(hookA), 1)
}

// TestOnlyDeadLettersHeraldWroteAreReplayed: a record a stranger wrote to
// the dead topic is listed as unauthenticated and never replayed, and a
// copy of Herald's unattributed dead letter that claims another reason in
// its (unauthenticated) headers is still unattributed.
func TestOnlyDeadLettersHeraldWroteAreReplayed(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	forged := testJob(testAlert("al-d1"), "acme", delivery.ChannelWebhook, hookA)
	v, err := forged.Encode()
	require.NoError(t, err)
	require.NoError(t, e.stranger().Producer(bus.TopicDead).Write(context.Background(), kafka.Message{Key: []byte("acme"), Value: v,
		Headers: []kafka.Header{{Key: bus.HeaderReason, Value: []byte(delivery.ReasonHTTP4xx)}}}))
	require.NoError(t, e.rawWriter(bus.TopicDeliveries).WriteMessages(context.Background(), kafka.Message{Key: []byte("acme"), Value: v}))
	e.start(e.runner())

	// The runner dead-letters the unattributed job; copy that dead letter,
	// authenticator and all, under another reason.
	var moved *kafka.Message
	require.Eventually(t, func() bool {
		require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDead, func(m kafka.Message) error {
			if e.bus.Authenticate(m) == nil {
				moved = &m
			}
			return nil
		}))
		return moved != nil
	}, 10*time.Second, 20*time.Millisecond)
	require.NotEmpty(t, bus.Header(*moved, busauth.Header))
	require.NoError(t, e.rawWriter(bus.TopicDead).WriteMessages(context.Background(), kafka.Message{Key: moved.Key, Value: moved.Value,
		Headers: []kafka.Header{
			{Key: busauth.Header, Value: []byte(bus.Header(*moved, busauth.Header))},
			{Key: bus.HeaderReason, Value: []byte(delivery.ReasonHTTP4xx)},
		}}))

	dead, err := ListDead(context.Background(), e.bus, DeadFilter{})
	require.NoError(t, err)
	require.Len(t, dead, 3)
	reasons := map[string]int{}
	for _, d := range dead {
		reasons[d.Reason]++
		assert.Nil(t, d.Job, "%+v", d)
		assert.Equal(t, v, d.Raw)
		if d.Reason == ReasonUnauthenticated {
			assert.False(t, d.Authentic, "the stranger's record")
		} else {
			assert.True(t, d.Authentic, "Herald's dead letter, and its copy")
		}
	}
	assert.Equal(t, map[string]int{ReasonUnauthenticated: 1, delivery.ReasonUnattributed: 2}, reasons)
	filtered, err := ListDead(context.Background(), e.bus, DeadFilter{Subscriber: "acme"})
	require.NoError(t, err)
	assert.Empty(t, filtered, "none of them is a dead job of acme's")

	n, err := Replay(context.Background(), e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n)
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		assert.Error(t, e.bus.Authenticate(m), "nothing was re-queued")
		return nil
	}))
	assert.Empty(t, e.n.callsTo(hookA))
}

// TestReplayNeverResendsDelivered: delivered is final. A delivery that was
// delivered and later dead-lettered by a duplicate attempt (a rebalance
// handed its job to two workers) is never replayed.
func TestReplayNeverResendsDelivered(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, func(_ context.Context, n int) error {
		if n == 1 {
			return nil
		}
		return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 409 to the duplicate"))
	})
	job := testJob(testAlert("al-dup"), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)
	e.waitState(job.ID, delivery.StateDelivered)
	e.publish(job) // the duplicate
	rs := e.waitState(job.ID, delivery.StateDead)
	require.Equal(t, []string{delivery.StateDelivered, delivery.StateDead}, states(rs), "the latest outcome says dead")
	dead, err := ListDead(context.Background(), e.bus, DeadFilter{Alert: "al-dup"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	require.NotNil(t, dead[0].Job)

	n, err := Replay(context.Background(), e.bus, DeadFilter{Alert: "al-dup"}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n, "a delivered delivery was replayed")
	assert.Equal(t, []string{delivery.StateDelivered, delivery.StateDead}, states(e.outcomes(job.ID)))
	assert.Len(t, e.n.callsTo(hookA), 2)
}

// TestReplayCountsOnlyHeraldsReceipts: receipts a stranger wrote neither
// stop a replay nor make one happen twice.
func TestReplayCountsOnlyHeraldsReceipts(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, func(context.Context, int) error {
		return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 403"))
	})
	job := testJob(testAlert("al-rc"), "acme", delivery.ChannelWebhook, hookA)
	stop := e.start(e.runner())
	e.publish(job)
	e.waitState(job.ID, delivery.StateDead)
	require.NoError(t, stop())

	stranger := e.stranger()
	forge := func(state string) {
		t.Helper()
		v, err := json.Marshal(delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "al-rc", DeliveryID: job.ID, Subscriber: "acme",
			Channel: job.Channel, Target: job.Target, State: state, At: time.Now()})
		require.NoError(t, err)
		require.NoError(t, stranger.Producer(bus.TopicReceipts).Write(context.Background(), kafka.Message{Key: []byte("al-rc"), Value: v}))
	}
	// A forged "delivered" does not stop the replay.
	forge(delivery.StateDelivered)
	n, err := Replay(context.Background(), e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	// Replayed and not dead again: a forged "dead" does not make it
	// replay twice.
	forge(delivery.StateDead)
	n, err = Replay(context.Background(), e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n)
}
