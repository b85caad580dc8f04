package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

const hookA = "https://a.partner.example/hook"

func TestTemporaryFailuresThenDelivered(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, failTimes(2))
	job := testJob(testAlert("al-1"), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)

	rs := e.waitState(job.ID, delivery.StateDelivered)
	assert.Equal(t, []string{delivery.StateRetrying, delivery.StateRetrying, delivery.StateDelivered}, states(rs))
	for i, r := range rs {
		assert.Equal(t, i+1, r.Attempt, "receipt %d", i)
		assert.Equal(t, "al-1", r.AlertID)
	}
	assert.Equal(t, delivery.ReasonHTTP5xx, rs[0].Reason)
	assert.False(t, rs[0].RetryAt.IsZero())

	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 3)
	for i, c := range calls {
		assert.Equal(t, job.ID, c.job.ID, "same delivery id on every attempt")
		assert.Equal(t, i, c.job.Attempt)
		assert.Len(t, c.job.History, i)
	}
	// A retry is never attempted before its due time.
	assert.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), time.Duration(float64(testSchedule[0])*0.8))
	assert.GreaterOrEqual(t, calls[2].at.Sub(calls[1].at), time.Duration(float64(testSchedule[1])*0.8))

	// Nothing more arrives: exactly one delivered outcome.
	require.Never(t, func() bool {
		return len(e.n.callsTo(hookA)) != 3 || countState(e.outcomes(job.ID), delivery.StateDelivered) != 1
	}, 300*time.Millisecond, 20*time.Millisecond, "a fourth attempt or a second delivered outcome")
	assert.Len(t, e.n.callsTo(hookA), 3)
	assert.Equal(t, 1, countState(e.outcomes(job.ID), delivery.StateDelivered))
}

func countState(rs []delivery.Receipt, state string) int {
	n := 0
	for _, r := range rs {
		if r.State == state {
			n++
		}
	}
	return n
}

func TestPermanentFailureIsDeadAtOnce(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, func(context.Context, int) error {
		return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 400"))
	})
	job := testJob(testAlert("al-2"), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)

	rs := e.waitState(job.ID, delivery.StateDead)
	assert.Equal(t, []string{delivery.StateDead}, states(rs))
	assert.Equal(t, delivery.ReasonHTTP4xx, rs[0].Reason)
	assert.Len(t, e.n.callsTo(hookA), 1)

	dead, err := ListDead(context.Background(), e.bus, DeadFilter{Alert: "al-2"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, delivery.ReasonHTTP4xx, dead[0].Reason)
	require.NotNil(t, dead[0].Job)
	assert.Equal(t, job.ID, dead[0].Job.ID)
	require.Len(t, dead[0].Job.History, 1)
	assert.Contains(t, dead[0].Error, "400")
}

func TestExhaustedScheduleIsDeadWithHistory(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, failTimes(1000))
	job := testJob(testAlert("al-3"), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)

	rs := e.waitState(job.ID, delivery.StateDead)
	want := len(testSchedule) + 1
	assert.Len(t, e.n.callsTo(hookA), want)
	last := rs[len(rs)-1]
	assert.Equal(t, delivery.ReasonExhausted, last.Reason)
	assert.Equal(t, want, last.Attempt)

	dead, err := ListDead(context.Background(), e.bus, DeadFilter{Subscriber: "acme"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, delivery.ReasonExhausted, dead[0].Reason)
	require.Len(t, dead[0].Job.History, want)
	for _, h := range dead[0].Job.History {
		assert.Equal(t, delivery.ReasonHTTP5xx, h.Reason)
	}
}

func TestExpiredAlert(t *testing.T) {
	var skew atomic.Int64 // added to the runner's clock
	e := newEnv(t, func(c *Config) {
		c.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	const hookB = "https://b.partner.example/hook"
	e.reg.Put(testSub("acme", hookA, hookB))
	past := testAlert("al-4")
	gone := time.Now().Add(-time.Minute)
	past.ExpiresAt = &gone
	expired := testJob(past, "acme", delivery.ChannelWebhook, hookA)

	// A job that fails and whose alert expires before its retry ends as
	// expired, not dead.
	later := testAlert("al-5")
	at := time.Now().Add(30 * time.Minute)
	later.ExpiresAt = &at
	e.n.on(hookB, func(context.Context, int) error {
		skew.Store(int64(time.Hour))
		return delivery.Temporary(delivery.ReasonConnect, errors.New("connection refused"))
	})
	retried := testJob(later, "acme", delivery.ChannelWebhook, hookB)

	e.start(e.runner())
	e.publish(expired)
	rs := e.waitState(expired.ID, delivery.StateExpired)
	assert.Equal(t, policy.RuleExpired, rs[0].Rule)
	assert.Empty(t, e.n.callsTo(hookA))

	e.publish(retried)
	rs = e.waitState(retried.ID, delivery.StateExpired)
	assert.Equal(t, []string{delivery.StateRetrying, delivery.StateExpired}, states(rs))
	assert.Len(t, e.n.callsTo(hookB), 1)
}

func TestNotBeforeIsRespected(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	job := testJob(testAlert("al-6"), "acme", delivery.ChannelWebhook, hookA)
	// Far beyond the last tier: it hops through the tiers until due.
	job.NotBefore = time.Now().Add(700 * time.Millisecond)
	e.start(e.runner())
	e.publish(job)

	e.waitState(job.ID, delivery.StateDelivered)
	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 1)
	assert.False(t, calls[0].at.Before(job.NotBefore), "attempted %s before not_before", job.NotBefore.Sub(calls[0].at))
	assert.Equal(t, 0, calls[0].job.Attempt)
}

func TestRetryAfterIsHonouredWithinBounds(t *testing.T) {
	e := newEnv(t)
	const hookB = "https://b.partner.example/hook"
	e.reg.Put(testSub("acme", hookA, hookB))
	// 150 ms is longer than the first tier's 50 ms: honoured.
	e.n.on(hookA, func(_ context.Context, n int) error {
		if n == 1 {
			return &delivery.Failure{Reason: delivery.ReasonHTTP5xx, Temporary: true, RetryAfter: 150 * time.Millisecond}
		}
		return nil
	})
	// An hour is longer than the last tier: capped to it.
	e.n.on(hookB, func(_ context.Context, n int) error {
		if n == 1 {
			return &delivery.Failure{Reason: delivery.ReasonHTTP5xx, Temporary: true, RetryAfter: time.Hour}
		}
		return nil
	})
	a := testAlert("al-7")
	ja := testJob(a, "acme", delivery.ChannelWebhook, hookA)
	jb := testJob(a, "acme", delivery.ChannelWebhook, hookB)
	e.start(e.runner())
	e.publish(ja, jb)

	rs := e.waitState(ja.ID, delivery.StateDelivered)
	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 2)
	assert.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), 150*time.Millisecond)
	assert.GreaterOrEqual(t, rs[0].RetryAt.Sub(rs[0].At), 150*time.Millisecond)

	rs = e.waitState(jb.ID, delivery.StateDelivered)
	assert.LessOrEqual(t, rs[0].RetryAt.Sub(rs[0].At), testSchedule[len(testSchedule)-1])
}

func TestGoneDisablesEndpoint(t *testing.T) {
	e := newEnv(t)
	sub := testSub("acme", hookA)
	e.reg.Put(sub)
	e.n.on(hookA, func(context.Context, int) error {
		return &delivery.Failure{Reason: delivery.ReasonGone, Gone: true, Err: errors.New("receiver answered 410")}
	})
	job := testJob(testAlert("al-8"), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)

	rs := e.waitState(job.ID, delivery.StateDisabled)
	assert.Equal(t, delivery.ReasonGone, rs[0].Reason)

	// The 410 is recorded as the endpoint's own state, under its own key;
	// the partner's record is never written.
	var states []subscribers.EndpointState
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicSubscribers, func(m kafka.Message) error {
		require.NoError(t, e.bus.Authenticate(m))
		require.Equal(t, subscribers.EndpointKey("acme", hookA), string(m.Key), "only the endpoint state is written")
		var st subscribers.EndpointState
		require.NoError(t, json.Unmarshal(m.Value, &st))
		states = append(states, st)
		return nil
	}))
	require.Len(t, states, 1)
	assert.Equal(t, "acme", states[0].Subscriber)
	assert.Equal(t, hookA, states[0].URL)
	assert.True(t, states[0].Disabled)
	assert.Equal(t, delivery.ReasonGone, states[0].Reason)
	assert.Equal(t, ActorDeliver, states[0].By)
	assert.False(t, states[0].At.IsZero())
	// The registry applies it on top of the record, which is kept as it
	// was.
	rec := e.reg.Get("acme")
	require.Len(t, rec.Webhooks, 1)
	assert.True(t, rec.Webhooks[0].Disabled)
	assert.Equal(t, sub.Email, rec.Email, "the rest of the record is kept")
	assert.Same(t, sub, e.reg.Record("acme"))
	assert.False(t, sub.Webhooks[0].Disabled, "the stored record is not mutated")
	st, ok := e.readRegistry().Endpoint("acme", hookA)
	assert.True(t, ok && st.Disabled, "a process reading the topic sees it disabled")

	dead, err := ListDead(context.Background(), e.bus, DeadFilter{})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, delivery.ReasonGone, dead[0].Reason)

	// The policy withholds the next job for the disabled endpoint.
	next := testJob(testAlert("al-9"), "acme", delivery.ChannelWebhook, hookA)
	e.publish(next)
	rs = e.waitState(next.ID, delivery.StateWithheld)
	assert.Equal(t, policy.RuleDisabled, rs[0].Rule)
	assert.Len(t, e.n.callsTo(hookA), 1)
}

func TestPolicyIsCheckedAgainAtDeliveryTime(t *testing.T) {
	e := newEnv(t)
	suspended := testSub("suspended", hookA)
	suspended.Status = subscribers.StatusSuspended
	e.reg.Put(suspended)
	lowered := testSub("lowered", "https://l.partner.example/hook")
	lowered.Clearance = alerts.TLPClear
	lowered.Normalize()
	e.reg.Put(lowered)
	cancelled := testSub("cancel", "https://c.partner.example/hook")
	cancelled.Clearance = alerts.TLPClear // would fail the clearance check
	e.reg.Put(cancelled)

	a := testAlert("al-10")
	j1 := testJob(a, "suspended", delivery.ChannelWebhook, hookA)
	j2 := testJob(a, "lowered", delivery.ChannelWebhook, "https://l.partner.example/hook")
	j3 := testJob(a, "deleted", delivery.ChannelWebhook, "https://d.partner.example/hook")
	j4 := testJob(a, "cancel", delivery.ChannelWebhook, "https://c.partner.example/hook")
	j4.Mode = delivery.ModeCancelNotice
	e.start(e.runner())
	e.publish(j1, j2, j3, j4)

	assert.Equal(t, policy.RuleSuspended, e.waitState(j1.ID, delivery.StateWithheld)[0].Rule)
	assert.Equal(t, policy.RuleClearance, e.waitState(j2.ID, delivery.StateWithheld)[0].Rule)
	assert.Equal(t, RuleSubscriberDeleted, e.waitState(j3.ID, delivery.StateWithheld)[0].Rule)
	// A cancel notice carries no content: only suspension stops it.
	e.waitState(j4.ID, delivery.StateDelivered)
	assert.Empty(t, e.n.callsTo(hookA))
	assert.Empty(t, e.n.callsTo("https://l.partner.example/hook"))
}

func TestBreakerOpensAndOtherEndpointsContinue(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Breaker = config.Breaker{Failures: 2, Cooldown: time.Minute}
		c.PerEndpoint = 1
	})
	const bad = "https://down.partner.example/hook"
	e.reg.Put(testSub("down", bad))
	e.n.on(bad, failTimes(1000))
	var good []*delivery.Job
	var jobs []*delivery.Job
	for i := range 5 {
		a := testAlert("al-b" + string(rune('0'+i)))
		jobs = append(jobs, testJob(a, "down", delivery.ChannelWebhook, bad))
		g := testJob(a, "acme", delivery.ChannelWebhook, hookA)
		good = append(good, g)
		jobs = append(jobs, g)
	}
	e.reg.Put(testSub("acme", hookA))
	r := e.runner()
	e.start(r)
	e.publish(jobs...)

	for _, g := range good {
		e.waitState(g.ID, delivery.StateDelivered)
	}
	require.Eventually(t, func() bool { return testutil.ToFloat64(r.metrics.open) == 1 }, 10*time.Second, 20*time.Millisecond)
	// Two failures opened the circuit; the jobs behind it were rescheduled
	// without attempts, and keep their attempt counts.
	require.Never(t, func() bool { return len(e.n.callsTo(bad)) > 2 }, 500*time.Millisecond, 20*time.Millisecond,
		"an attempt through the open circuit")
	assert.Len(t, e.n.callsTo(bad), 2)
	assert.Positive(t, testutil.ToFloat64(r.metrics.reschedule.WithLabelValues(causeCircuitOpen)))
}

func TestCrashBeforeCommitRunsJobsAgain(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	job := testJob(testAlert("al-11"), "acme", delivery.ChannelWebhook, hookA)
	r := e.runner()
	var crashed atomic.Bool
	r.beforeCommit = func(msgs []kafka.Message) error {
		if msgs[0].Topic == e.bus.Topic(bus.TopicDeliveries) && crashed.CompareAndSwap(false, true) {
			return errors.New("simulated crash after the outcome was written, before the commit")
		}
		return nil
	}
	e.start(r)
	e.publish(job)

	require.Eventually(t, func() bool { return len(e.n.callsTo(hookA)) >= 2 }, 15*time.Second, 20*time.Millisecond)
	for _, c := range e.n.callsTo(hookA) {
		assert.Equal(t, job.ID, c.job.ID)
	}
	require.Eventually(t, func() bool { return countState(e.outcomes(job.ID), delivery.StateDelivered) >= 2 }, 5*time.Second, 20*time.Millisecond)
	// The second run committed: nothing is left for the group.
	require.Eventually(t, func() bool {
		lag, err := e.bus.Lag(context.Background(), e.cfg.Group, bus.TopicDeliveries)
		return err == nil && lag == 0
	}, 5*time.Second, 20*time.Millisecond)
}

func TestGracefulShutdownDrainsAndLosesNothing(t *testing.T) {
	// The subject is the drain: every job of the batch in flight is
	// attempted before its offset is committed. A batch that outlives Hold
	// (or whose stragglers outlive Grace) hands its queued jobs to retry
	// tier 0 unattempted instead (TestSlowAttemptIsHandedOff), and there,
	// with this schedule, they would wait an hour behind the job that
	// failed: on a loaded machine the 100 ms attempts below can take that
	// long, so neither bound may end the wait here.
	e := newEnv(t, func(c *Config) {
		c.RetrySchedule = []time.Duration{time.Hour, time.Hour, time.Hour}
		c.Hold, c.Grace = time.Hour, time.Hour
	})
	const hookB = "https://b.partner.example/hook"
	e.reg.Put(testSub("acme", hookA, hookB))
	started := make(chan struct{}, 100)
	e.n.on(hookA, func(ctx context.Context, n int) error {
		started <- struct{}{}
		time.Sleep(100 * time.Millisecond)
		return nil
	})
	e.n.on(hookB, failTimes(1))
	var jobs []*delivery.Job
	jobs = append(jobs, testJob(testAlert("al-s"), "acme", delivery.ChannelWebhook, hookB))
	for i := range 20 {
		jobs = append(jobs, testJob(testAlert("al-s"+string(rune('a'+i))), "acme", delivery.ChannelWebhook, hookA))
	}
	r := e.runner()
	stop := e.start(r)
	e.publish(jobs...)
	<-started
	require.NoError(t, stop())

	// Every job that was attempted has its outcome; the others are still
	// uncommitted in the deliveries topic.
	attempted := map[string]bool{}
	for _, c := range append(e.n.callsTo(hookA), e.n.callsTo(hookB)...) {
		attempted[c.job.ID] = true
	}
	for id := range attempted {
		assert.NotEmpty(t, e.outcomes(id), "attempted delivery %s has no outcome", id)
	}
	lag, err := e.bus.Lag(context.Background(), e.cfg.Group, bus.TopicDeliveries)
	require.NoError(t, err)
	assert.Equal(t, int64(len(jobs)-len(attempted)), lag)

	// The first job waits an hour in retry tier 0; a restarted runner
	// delivers the rest and stops promptly although that tier waits.
	r2 := e.runner()
	stop2 := e.start(r2)
	for _, j := range jobs[1:] {
		e.waitState(j.ID, delivery.StateDelivered)
	}
	e.waitState(jobs[0].ID, delivery.StateRetrying)
	done := make(chan error, 1)
	go func() { done <- stop2() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("runner did not stop while a retry tier was waiting")
	}
	retried := 0
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.RetryTopic(0), func(m kafka.Message) error {
		var j delivery.Job
		require.NoError(t, json.Unmarshal(m.Value, &j))
		if j.ID == jobs[0].ID {
			retried++
		}
		return nil
	}))
	assert.GreaterOrEqual(t, retried, 1, "the waiting retry is still in its tier")
}

func TestUndecodableJobIsDeadAndDoesNotBlock(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	job := testJob(testAlert("al-12"), "acme", delivery.ChannelWebhook, hookA)
	forged := testJob(testAlert("al-13"), "acme", delivery.ChannelWebhook, hookA)
	forged.ID = "msg_forged"
	v, _ := json.Marshal(forged)
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: []byte("{not json")},
		kafka.Message{Key: []byte("acme"), Value: v}))
	e.publish(job)
	e.start(e.runner())

	e.waitState(job.ID, delivery.StateDelivered)
	var dead []DeadLetter
	require.Eventually(t, func() bool {
		var err error
		dead, err = ListDead(context.Background(), e.bus, DeadFilter{})
		return err == nil && len(dead) == 2
	}, 5*time.Second, 20*time.Millisecond)
	for _, d := range dead {
		assert.Equal(t, delivery.ReasonInvalid, d.Reason)
		assert.Nil(t, d.Job)
	}
	assert.Len(t, e.n.callsTo(hookA), 1)
}

func TestSlowAttemptIsHandedOff(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.AttemptTimeout = 300 * time.Millisecond
		c.RetrySchedule = []time.Duration{time.Hour}
	})
	const slow = "https://slow.partner.example/hook"
	e.reg.Put(testSub("slow", slow))
	e.reg.Put(testSub("acme", hookA))
	e.n.on(slow, hang)
	a := testAlert("al-14")
	js := testJob(a, "slow", delivery.ChannelWebhook, slow)
	var good []*delivery.Job
	for i := range 10 {
		good = append(good, testJob(testAlert("al-15"+string(rune('a'+i))), "acme", delivery.ChannelWebhook, hookA))
	}
	r := e.runner()
	e.start(r)
	e.publish(append([]*delivery.Job{js}, good...)...)

	for _, g := range good {
		e.waitState(g.ID, delivery.StateDelivered)
	}
	rs := e.waitState(js.ID, delivery.StateRetrying)
	assert.Equal(t, delivery.ReasonTimeout, rs[0].Reason)
	assert.Equal(t, 1.0, testutil.ToFloat64(r.metrics.handoffs))
	// The lease comes back after the attempt's deadline and is dropped:
	// no second attempt within the hour of the schedule.
	require.Eventually(t, func() bool {
		_, ok := r.lease(js)
		return !ok
	}, 5*time.Second, 20*time.Millisecond)
	assert.Len(t, e.n.callsTo(slow), 1)
}

func TestListDeadAndReplay(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.reg.Put(testSub("other", "https://o.partner.example/hook"))
	broken := atomic.Bool{}
	broken.Store(true)
	fail := func(context.Context, int) error {
		if broken.Load() {
			return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 403"))
		}
		return nil
	}
	e.n.on(hookA, fail)
	e.n.on("https://o.partner.example/hook", fail)
	a := testAlert("al-16")
	ja := testJob(a, "acme", delivery.ChannelWebhook, hookA)
	jo := testJob(a, "other", delivery.ChannelWebhook, "https://o.partner.example/hook")
	e.start(e.runner())
	e.publish(ja, jo)
	e.waitState(ja.ID, delivery.StateDead)
	e.waitState(jo.ID, delivery.StateDead)

	ctx := context.Background()
	dead, err := ListDead(ctx, e.bus, DeadFilter{Subscriber: "acme"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, ja.ID, dead[0].Job.ID)
	dead, err = ListDead(ctx, e.bus, DeadFilter{Alert: "al-16"})
	require.NoError(t, err)
	assert.Len(t, dead, 2)
	dead, err = ListDead(ctx, e.bus, DeadFilter{Alert: "nope"})
	require.NoError(t, err)
	assert.Empty(t, dead)
	dead, err = ListDead(ctx, e.bus, DeadFilter{Deliveries: []string{jo.ID, "msg_nope"}})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	assert.Equal(t, jo.ID, dead[0].Job.ID)
	dead, err = ListDead(ctx, e.bus, DeadFilter{Subscriber: "acme", Deliveries: []string{jo.ID}})
	require.NoError(t, err)
	assert.Empty(t, dead, "every field of the filter holds")

	broken.Store(false)
	n, err := Replay(ctx, e.bus, DeadFilter{Subscriber: "acme"}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	rs := e.waitState(ja.ID, delivery.StateDelivered)
	assert.Equal(t, []string{delivery.StateDead, delivery.StatePending, delivery.StateDelivered}, states(rs))
	assert.Equal(t, ReasonReplayed, rs[1].Reason)
	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 2)
	assert.Equal(t, 0, calls[1].job.Attempt, "attempts reset")
	assert.Len(t, calls[1].job.History, 1, "history kept")

	// Delivered since: replaying everything re-queues only the other one.
	n, err = Replay(ctx, e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	e.waitState(jo.ID, delivery.StateDelivered)
	n, err = Replay(ctx, e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n, "nothing is replayed twice")
}

func TestLongWaitInShortTierHopsWithoutSpinning(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RetrySchedule = []time.Duration{50 * time.Millisecond, 2 * time.Second} })
	e.reg.Put(testSub("acme", hookA))
	// 800 ms is too long for tier 0 and too short for tier 1.
	e.n.on(hookA, func(_ context.Context, n int) error {
		if n == 1 {
			return &delivery.Failure{Reason: delivery.ReasonHTTP5xx, Temporary: true, RetryAfter: 800 * time.Millisecond}
		}
		return nil
	})
	job := testJob(testAlert("al-17"), "acme", delivery.ChannelWebhook, hookA)
	r := e.runner()
	e.start(r)
	e.publish(job)

	e.waitState(job.ID, delivery.StateDelivered)
	calls := e.n.callsTo(hookA)
	require.Len(t, calls, 2)
	assert.GreaterOrEqual(t, calls[1].at.Sub(calls[0].at), 800*time.Millisecond)
	// It waited a tier's span between hops: about 800/70 forwards, not
	// a busy loop of rewrites.
	assert.Less(t, testutil.ToFloat64(r.metrics.reschedule.WithLabelValues(causeNotDue)), 30.0)
}

// failingQueue is the bus, except that writing jobs to the deliveries
// topic fails.
type failingQueue struct {
	*bus.Bus
	closed *bus.Bus
}

func (f failingQueue) Producer(topic string) *bus.Producer {
	if topic == bus.TopicDeliveries {
		return f.closed.Producer(topic)
	}
	return f.Bus.Producer(topic)
}

// deadThenMended runs a webhook job of alertID to acme that its receiver
// refuses for good (403), waits for it to be dead, and mends the receiver:
// a dead letter that a replay delivers.
func deadThenMended(t *testing.T, alertID string) (*env, *delivery.Job) {
	t.Helper()
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	broken := atomic.Bool{}
	broken.Store(true)
	e.n.on(hookA, func(context.Context, int) error {
		if broken.Load() {
			return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 403"))
		}
		return nil
	})
	job := testJob(testAlert(alertID), "acme", delivery.ChannelWebhook, hookA)
	e.start(e.runner())
	e.publish(job)
	e.waitState(job.ID, delivery.StateDead)
	broken.Store(false)
	return e, job
}

func TestReplayThatCannotQueueLeavesTheDeliveryDeadAndReplayable(t *testing.T) {
	e, job := deadThenMended(t, "al-19")

	closed := e.cluster.Open(t, e.cluster.Config())
	require.NoError(t, closed.Close())
	ctx := context.Background()
	n, err := Replay(ctx, failingQueue{Bus: e.bus, closed: closed}, DeadFilter{}, time.Now())
	require.Error(t, err)
	assert.Zero(t, n)
	rs := e.outcomes(job.ID)
	assert.Equal(t, []string{delivery.StateDead, delivery.StatePending, delivery.StateDead}, states(rs))
	assert.Equal(t, ReasonReplayFailed, rs[2].Reason)

	n, err = Replay(ctx, e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a replay that was not queued can be replayed")
	e.waitState(job.ID, delivery.StateDelivered)
}

// TestReplayCutShortIsQueuedAgain: a replay killed between its pending
// receipt and its job leaves the delivery pending with nothing queued; a
// Replay within ReplayGrace leaves it (a replay in flight), one after
// ReplayGrace queues it again, and it is delivered.
func TestReplayCutShortIsQueuedAgain(t *testing.T) {
	e, job := deadThenMended(t, "al-cut")

	// What a Replay killed after its first write leaves: the pending
	// receipt, no job.
	cut := time.Now()
	pending := delivery.Receipt{Kind: delivery.KindOutcome, AlertID: job.Alert.ID, DeliveryID: job.ID, Subscriber: job.Subscriber,
		Channel: job.Channel, Target: job.Target, State: delivery.StatePending, Reason: ReasonReplayed, At: cut}
	ctx := context.Background()
	require.NoError(t, e.bus.Producer(bus.TopicReceipts).Write(ctx, kafka.Message{Key: []byte(job.Alert.ID), Value: pending.Encode()}))

	n, err := Replay(ctx, e.bus, DeadFilter{}, cut.Add(time.Minute))
	require.NoError(t, err)
	assert.Zero(t, n, "a replay still in flight is not queued twice")
	n, err = Replay(ctx, e.bus, DeadFilter{}, cut.Add(ReplayGrace+time.Second))
	require.NoError(t, err)
	assert.Equal(t, 1, n, "a replay cut short is queued again")
	e.waitState(job.ID, delivery.StateDelivered)
}

// TestOutcomesOfABatchShareRecords: the outcomes a flush writes go out as
// one record per alert (an array, or the receipt alone), authenticated,
// and every outcome is there once.
func TestOutcomesOfABatchShareRecords(t *testing.T) {
	e := newEnv(t)
	var jobs []*delivery.Job
	for i := range 40 {
		sub := fmt.Sprintf("p%02d", i)
		e.reg.Put(testSub(sub, hookA))
		jobs = append(jobs, testJob(testAlert(fmt.Sprintf("al-%d", i%2)), sub, delivery.ChannelWebhook, hookA))
	}
	r := e.runner()
	var mu sync.Mutex
	want := 0 // records: one per alert per flush
	r.beforeFlush = func(byTopic map[string][]kafka.Message) error {
		keys := map[string]bool{}
		for _, m := range byTopic[bus.TopicReceipts] {
			keys[string(m.Key)] = true
		}
		mu.Lock()
		want += len(keys)
		mu.Unlock()
		return nil
	}
	e.start(r)
	e.publish(jobs...)
	for _, j := range jobs {
		e.waitState(j.ID, delivery.StateDelivered)
	}

	records, outcomes := 0, map[string]int{}
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicReceipts, func(m kafka.Message) error {
		require.NoError(t, e.bus.Authenticate(m))
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		records++
		for _, rc := range rs {
			require.Equal(t, delivery.StateDelivered, rc.State)
			outcomes[rc.DeliveryID]++
		}
		return nil
	}))
	require.Len(t, outcomes, len(jobs))
	for id, n := range outcomes {
		require.Equal(t, 1, n, id)
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, want, records, "one record per alert per flush")
	require.Less(t, records, len(jobs), "outcomes share records")
}

// TestReplayPacksItsReceipts: the receipts a Replay writes of one alert's
// deliveries share a record (delivery.PackReceipts), as the runner's
// flushes do: the pending ones, and the ones that undo them when the jobs
// cannot be queued.
func TestReplayPacksItsReceipts(t *testing.T) {
	e := newEnv(t)
	const other = "https://o.partner.example/hook"
	e.reg.Put(testSub("acme", hookA))
	e.reg.Put(testSub("other", other))
	refuse := func(context.Context, int) error {
		return delivery.Permanent(delivery.ReasonHTTP4xx, errors.New("receiver answered 403"))
	}
	e.n.on(hookA, refuse)
	e.n.on(other, refuse)
	a := testAlert("al-pack")
	ja := testJob(a, "acme", delivery.ChannelWebhook, hookA)
	jo := testJob(a, "other", delivery.ChannelWebhook, other)
	e.start(e.runner())
	e.publish(ja, jo)
	e.waitState(ja.ID, delivery.StateDead)
	e.waitState(jo.ID, delivery.StateDead)

	closed := e.cluster.Open(t, e.cluster.Config())
	require.NoError(t, closed.Close())
	_, err := Replay(context.Background(), failingQueue{Bus: e.bus, closed: closed}, DeadFilter{}, time.Now())
	require.Error(t, err)

	records := map[string][]int{} // reason → receipts per record
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicReceipts, func(m kafka.Message) error {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		if r := rs[0].Reason; r == ReasonReplayed || r == ReasonReplayFailed {
			records[r] = append(records[r], len(rs))
		}
		return nil
	}))
	assert.Equal(t, map[string][]int{ReasonReplayed: {2}, ReasonReplayFailed: {2}}, records,
		"one record of the alert's two receipts each")
	assert.Equal(t, []string{delivery.StateDead, delivery.StatePending, delivery.StateDead}, states(e.outcomes(ja.ID)))
	assert.Equal(t, []string{delivery.StateDead, delivery.StatePending, delivery.StateDead}, states(e.outcomes(jo.ID)))
}

// TestAPackIsDeliveredJobByJob: the jobs of a pack (the fan-out's record
// of an alert's jobs for one partition) are attempted one by one, each with
// its own outcome; a job of it that fails its checks is dead-lettered
// alone, as a record of its own naming its place, and the others are
// delivered; the record is committed once every job's outcome is written.
func TestAPackIsDeliveredJobByJob(t *testing.T) {
	e := newEnv(t)
	a := testAlert("al-pack")
	acme, bolt, corp := e.hookJob(a, "acme"), e.hookJob(a, "bolt"), e.hookJob(a, "corp")
	bolt.ID = "msg_forged" // not the delivery id of its alert, partner and target
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: packOf(t, a, acme, bolt, corp)}))
	e.start(e.runner())

	for _, j := range []*delivery.Job{acme, corp} {
		e.waitState(j.ID, delivery.StateDelivered)
		assert.Len(t, e.n.callsTo(j.Target), 1)
	}
	assert.Empty(t, e.n.callsTo(bolt.Target))
	dead := e.deadLetters(1)
	assert.Equal(t, delivery.ReasonInvalid, dead[0].Reason)
	assert.Contains(t, dead[0].Error, "jobs[1]")
	assert.Contains(t, string(dead[0].Raw), `"bolt"`)
	assert.NotContains(t, string(dead[0].Raw), `"acme"`, "the bad job alone")
	require.Eventually(t, func() bool {
		lag, err := e.bus.Lag(context.Background(), e.cfg.Group, bus.TopicDeliveries)
		return err == nil && lag == 0
	}, 5*time.Second, 20*time.Millisecond)
}

// TestABatchHoldsAboutCommitBatchJobs: a batch of the deliveries topic is
// bounded by the jobs its records pack (kafka.consumer.commit_batch, 100
// in tests), not by records: three packs of 80 jobs go in batches of at
// most two records, so that a batch never waits for many times the jobs it
// would hold if each job were a record.
func TestABatchHoldsAboutCommitBatchJobs(t *testing.T) {
	e := newEnv(t)
	r := e.runner()
	var mu sync.Mutex
	var batches []int
	r.beforeCommit = func(msgs []kafka.Message) error {
		if msgs[0].Topic == e.bus.Topic(bus.TopicDeliveries) {
			mu.Lock()
			batches = append(batches, len(msgs))
			mu.Unlock()
		}
		return nil
	}
	var msgs []kafka.Message
	var last string
	for p := range 3 {
		a := testAlert(fmt.Sprintf("al-batch-%d", p))
		var jobs []*delivery.Job
		for i := range 80 {
			jobs = append(jobs, e.hookJob(a, fmt.Sprintf("p-%02d", i)))
		}
		last = jobs[len(jobs)-1].ID
		msgs = append(msgs, kafka.Message{Key: []byte("p-00"), Value: packOf(t, a, jobs...)})
	}
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(context.Background(), msgs...))
	e.start(r)
	e.waitState(last, delivery.StateDelivered)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range batches {
			n += b
		}
		return n == 3
	}, 5*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, b := range batches {
		require.LessOrEqual(t, b, 2, "batches of records %v", batches)
	}
}

// TestAPackAnOlderRoleDeadLetteredIsReplayed: a deliver role from before
// packing moves a pack it cannot read to the dead topic as invalid. Each
// of its jobs is then a dead letter of its own, and a replay delivers them
// all: an upgrade made in the wrong order loses nothing.
func TestAPackAnOlderRoleDeadLetteredIsReplayed(t *testing.T) {
	e := newEnv(t)
	a := testAlert("al-old-role")
	acme, bolt := e.hookJob(a, "acme"), e.hookJob(a, "bolt")
	// And one job that fails its checks (not its delivery id).
	forged := e.hookJob(a, "corp")
	forged.ID = "msg_forged"
	// What the older role wrote: the record as it was, reason invalid.
	require.NoError(t, e.bus.Producer(bus.TopicDead).Write(context.Background(), kafka.Message{Key: []byte("acme"),
		Value: packOf(t, a, acme, bolt, forged),
		Headers: []kafka.Header{{Key: bus.HeaderReason, Value: []byte(delivery.ReasonInvalid)},
			{Key: bus.HeaderError, Value: []byte("delivery job has no subscriber or target")}}}))

	ctx := context.Background()
	dead := e.deadLetters(3) // a dead letter per job of the pack
	for i, j := range []*delivery.Job{acme, bolt} {
		require.NotNil(t, dead[i].Job)
		assert.Equal(t, j.ID, dead[i].Job.ID)
		assert.True(t, dead[i].Authentic)
	}
	assert.Nil(t, dead[2].Job, "the job that fails its checks is listed as it is, never replayed")
	assert.Contains(t, dead[2].Error, "jobs[2]")
	assert.Contains(t, string(dead[2].Raw), "msg_forged")
	dead, err := ListDead(ctx, e.bus, DeadFilter{Subscriber: "bolt"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	// The job that fails its checks is listed under the partner it names
	// and the pack's alert, never among the deliveries to replay.
	for _, f := range []DeadFilter{{Subscriber: "corp"}, {Subscriber: "corp", Alert: a.ID}} {
		dead, err = ListDead(ctx, e.bus, f)
		require.NoError(t, err)
		require.Len(t, dead, 1, "%+v", f)
		assert.Nil(t, dead[0].Job)
		assert.Contains(t, string(dead[0].Raw), "msg_forged")
	}
	dead, err = ListDead(ctx, e.bus, DeadFilter{Subscriber: "corp", Deliveries: []string{"msg_forged"}})
	require.NoError(t, err)
	assert.Empty(t, dead)

	e.start(e.runner())
	n, err := Replay(ctx, e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	e.waitState(acme.ID, delivery.StateDelivered)
	e.waitState(bolt.ID, delivery.StateDelivered)
}
