package deliver

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

func gone(context.Context, int) error {
	return &delivery.Failure{Reason: delivery.ReasonGone, Gone: true, Err: errors.New("receiver answered 410")}
}

// TestGoneRacingSuspension provokes issue 10's race deterministically: a
// webhook answers 410 at the moment an administrator suspends its partner.
// Whatever the order of the two writes, the partner ends suspended AND the
// endpoint disabled, in the running registry and for a process reading
// the topic afresh.
func TestGoneRacingSuspension(t *testing.T) {
	const hookB = "https://b.partner.example/hook"
	for _, when := range []string{
		"during the attempt", // before the runner concludes
		"between the attempt and the write of its outcome", // the window in which a stale copy was written back
		"after the outcome is written, before the commit",  // the endpoint state first
	} {
		t.Run("suspension "+when, func(t *testing.T) {
			e := newEnv(t)
			e.follow()
			sub := testSub("acme", hookA, hookB)
			e.putSub(sub)
			require.Eventually(t, func() bool { return e.reg.Get("acme") != nil }, 5*time.Second, 10*time.Millisecond)

			// The administrator's copy of the record, suspended: it knows
			// nothing of the 410.
			admin := *sub
			admin.Webhooks = slices.Clone(sub.Webhooks)
			admin.Status = subscribers.StatusSuspended
			var once sync.Once
			suspend := func() {
				once.Do(func() {
					e.putSub(&admin)
					// assert, not require: this runs on the runner's goroutines.
					assert.Eventually(t, func() bool { return !e.reg.Get("acme").Active() }, 5*time.Second, 5*time.Millisecond,
						"the registry did not apply the suspension")
				})
			}

			job := testJob(testAlert("al-race"), "acme", delivery.ChannelWebhook, hookA)
			r := e.runner()
			switch when {
			case "during the attempt":
				e.n.on(hookA, func(ctx context.Context, n int) error {
					suspend()
					return gone(ctx, n)
				})
			case "between the attempt and the write of its outcome":
				e.n.on(hookA, gone)
				r.beforeFlush = func(byTopic map[string][]kafka.Message) error {
					if len(byTopic[bus.TopicSubscribers]) > 0 {
						assert.Len(t, e.n.callsTo(hookA), 1, "attempted")
						suspend()
					}
					return nil
				}
			default:
				e.n.on(hookA, gone)
				r.beforeCommit = func(msgs []kafka.Message) error {
					if len(e.n.callsTo(hookA)) > 0 {
						assert.Equal(t, 1, countState(e.outcomes(job.ID), delivery.StateDisabled), "the outcome is written")
						suspend()
					}
					return nil
				}
			}
			e.start(r)
			e.publish(job)
			e.waitState(job.ID, delivery.StateDisabled)

			check := func(reg *subscribers.Registry) bool {
				s := reg.Get("acme")
				return s != nil && s.Status == subscribers.StatusSuspended && s.Webhooks[0].Disabled && !s.Webhooks[1].Disabled
			}
			require.Eventually(t, func() bool { return check(e.reg) }, 5*time.Second, 10*time.Millisecond,
				"the running registry: want suspended with %s disabled, got %+v", hookA, e.reg.Get("acme"))
			fresh := e.readRegistry()
			assert.True(t, check(fresh), "a registry read from the topic: want suspended with %s disabled, got %+v", hookA, fresh.Get("acme"))
			assert.Equal(t, &admin, e.reg.Record("acme"), "the partner's record is the administrator's")

			// Only the administrator wrote the partner's record.
			n := 0
			require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicSubscribers, func(m kafka.Message) error {
				if string(m.Key) == "acme" {
					n++
				}
				return nil
			}))
			assert.Equal(t, 2, n, "the partner's record was written by someone other than the administrator")

			// The suspension stands: the other endpoint gets nothing.
			next := testJob(testAlert("al-race-2"), "acme", delivery.ChannelWebhook, hookB)
			e.publish(next)
			assert.Equal(t, policy.RuleSuspended, e.waitState(next.ID, delivery.StateWithheld)[0].Rule)
			assert.Empty(t, e.n.callsTo(hookB))
		})
	}
}

// TestReEnabledEndpointIsUsedAgain: an administrator's endpoint state
// with Disabled false lifts the 410's.
func TestReEnabledEndpointIsUsedAgain(t *testing.T) {
	e := newEnv(t)
	e.follow()
	e.putSub(testSub("acme", hookA))
	require.Eventually(t, func() bool { return e.reg.Get("acme") != nil }, 5*time.Second, 10*time.Millisecond)
	fixed := make(chan struct{})
	e.n.on(hookA, func(ctx context.Context, n int) error {
		select {
		case <-fixed:
			return nil
		default:
			return gone(ctx, n)
		}
	})
	e.start(e.runner())
	first := testJob(testAlert("al-re-1"), "acme", delivery.ChannelWebhook, hookA)
	e.publish(first)
	e.waitState(first.ID, delivery.StateDisabled)
	require.Eventually(t, func() bool { return e.reg.Get("acme").Webhooks[0].Disabled }, 5*time.Second, 10*time.Millisecond)

	close(fixed)
	st := subscribers.EndpointState{Subscriber: "acme", URL: hookA, Disabled: false, Reason: "fixed by the partner", By: "api:admin", At: time.Now()}
	v, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, e.bus.Producer(bus.TopicSubscribers).Write(context.Background(),
		kafka.Message{Key: []byte(subscribers.EndpointKey("acme", hookA)), Value: v}))
	require.Eventually(t, func() bool { return !e.reg.Get("acme").Webhooks[0].Disabled }, 5*time.Second, 10*time.Millisecond)

	second := testJob(testAlert("al-re-2"), "acme", delivery.ChannelWebhook, hookA)
	e.publish(second)
	e.waitState(second.ID, delivery.StateDelivered)
	assert.False(t, e.readRegistry().Get("acme").Webhooks[0].Disabled)
}

// receiptsWatch is the bus, except that it calls taken whenever the
// runner takes the receipts topic's producer, which a flush does just
// before it writes the receipts.
type receiptsWatch struct {
	*bus.Bus
	taken func()
}

func (w receiptsWatch) Producer(topic string) *bus.Producer {
	if topic == bus.TopicReceipts {
		w.taken()
	}
	return w.Bus.Producer(topic)
}

// TestGoneDisablesEndpointBeforeItsReceipt: the runner's registry has the
// endpoint disabled before the "disabled" receipt of its 410 is written,
// so whoever reads that receipt and publishes again finds the endpoint's
// next job withheld (deliver doc: endpoint states).
func TestGoneDisablesEndpointBeforeItsReceipt(t *testing.T) {
	e := newEnv(t)
	e.reg.Put(testSub("acme", hookA))
	e.n.on(hookA, gone)
	var early atomic.Bool // receipts written after the 410, the endpoint still enabled
	r := New(e.cfg, receiptsWatch{Bus: e.bus, taken: func() {
		if len(e.n.callsTo(hookA)) > 0 && !e.reg.Get("acme").Webhooks[0].Disabled {
			early.Store(true)
		}
	}}, e.reg, map[string]Notifier{delivery.ChannelWebhook: e.n})
	job := testJob(testAlert("al-gone-first"), "acme", delivery.ChannelWebhook, hookA)
	stop := e.start(r)
	e.publish(job)
	e.waitState(job.ID, delivery.StateDisabled)
	require.NoError(t, stop())
	assert.False(t, early.Load(), "the receipts were written while the runner's registry still had the endpoint enabled")
}
