package deliver

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
)

// TestARefusedJobOfAPackIsNeverReplayedWithItsOwnAlert: the runner refuses
// a job of a pack that carries an alert of its own ("a job of a pack has
// the pack's alert, not one of its own") and dead-letters it as invalid.
// That dead letter must never become a replayable job that delivers the
// very alert the runner refused: it holds the job's bytes as they are,
// under a key that ListDead never decodes as a job.
func TestARefusedJobOfAPackIsNeverReplayedWithItsOwnAlert(t *testing.T) {
	e := newEnv(t)
	a := testAlert("al-pack")
	raw, err := json.Marshal(a)
	require.NoError(t, err)
	other := testAlert("al-other")
	other.Title = "NOT the pack's alert"
	otherRaw, err := json.Marshal(other)
	require.NoError(t, err)

	hookA, hookB := "https://acme.example/hook", "https://bolt.example/hook"
	e.reg.Put(testSub("acme", hookA))
	e.reg.Put(testSub("bolt", hookB))
	good, err := testJob(a, "acme", delivery.ChannelWebhook, hookA).EncodeBare()
	require.NoError(t, err)
	// A job of the pack with an alert member of its own (and the delivery
	// id of that alert, partner and target).
	own := delivery.Job{ID: delivery.ID(other.ID, "bolt", hookB), AlertJSON: otherRaw, Subscriber: "bolt",
		Channel: delivery.ChannelWebhook, Target: hookB, Mode: delivery.ModeSigned}
	bad, err := own.Encode()
	require.NoError(t, err)
	records := delivery.PackJobs(raw, [][]byte{good, bad})
	require.Len(t, records, 1)
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: records[0]}))
	e.start(e.runner())
	e.waitState(delivery.ID(a.ID, "acme", hookA), delivery.StateDelivered)
	assert.Empty(t, e.n.callsTo(hookB), "the runner refuses the job")

	dead := e.deadLetters(1)
	assert.Equal(t, delivery.ReasonInvalid, dead[0].Reason)
	if d := dead[0]; d.Job != nil {
		t.Errorf("a job the runner refused as invalid is listed as a replayable job of alert %s for %s", d.Job.Alert.ID, d.Job.Subscriber)
	}

	n, err := Replay(context.Background(), e.bus, DeadFilter{}, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 0, n, "nothing replayable")
	require.Never(t, func() bool { return len(e.n.callsTo(hookB)) > 0 }, time.Second, 20*time.Millisecond,
		"bolt must never get the alert the runner refused")
}

// TestARefusedJobOfAPackIsRecordedDead: a job of an authentic pack that
// fails its checks (a channel this deliver role does not know, as a newer
// fan-out may write during a rolling upgrade) is dead-lettered and, as it
// names its delivery, recorded dead: the ledger, which the fan-out's
// decision receipt told the delivery is pending, shows it dead with the
// error naming the bad field, and the dead list shows that error too. The
// pack's good job is delivered; a refused job that names no delivery for
// certain (its id is not its alert's, partner's and target's) is
// dead-lettered with an error that says no delivery was recorded dead.
func TestARefusedJobOfAPackIsRecordedDead(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := testAlert("al-refused")
	good := e.hookJob(a, "acme")
	bad := e.hookJob(a, "bolt")
	bad.Channel = "sms"
	unnamed := e.hookJob(a, "coda")
	unnamed.ID = delivery.ID("al-else", "coda", unnamed.Target)

	// The fan-out's decision receipts, then the pack it wrote.
	var decisions []kafka.Message
	for _, j := range []*delivery.Job{good, bad, unnamed} {
		rc := delivery.Receipt{Kind: delivery.KindDecision, AlertID: a.ID, DeliveryID: j.ID, Subscriber: j.Subscriber,
			Channel: j.Channel, Target: j.Target, Decision: delivery.Deliver, Mode: j.Mode, At: time.Now()}
		decisions = append(decisions, kafka.Message{Key: []byte(a.ID), Value: rc.Encode()})
	}
	require.NoError(t, e.bus.Producer(bus.TopicReceipts).Write(ctx, decisions...))
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(ctx,
		kafka.Message{Key: []byte("acme"), Value: packOf(t, a, good, bad, unnamed)}))

	e.start(e.runner())
	e.waitState(good.ID, delivery.StateDelivered)
	rs := e.waitState(bad.ID, delivery.StateDead)
	assert.Equal(t, delivery.ReasonInvalid, rs[len(rs)-1].Reason)
	assert.Empty(t, e.n.callsTo(bad.Target))

	dead := e.deadLetters(2)
	byKey := map[bool]DeadLetter{} // by whether it names bolt's delivery
	for _, d := range dead {
		assert.Equal(t, delivery.ReasonInvalid, d.Reason)
		assert.Nil(t, d.Job, "a refused job is never replayable")
		byKey[strings.Contains(string(d.Raw), `"bolt"`)] = d
	}
	assert.Contains(t, byKey[true].Error, `channel "sms"`, "the dead list names the bad field")
	assert.NotContains(t, byKey[true].Error, "none is recorded dead")
	assert.Contains(t, byKey[false].Error, "does not match")
	assert.Contains(t, byKey[false].Error, "none is recorded dead")

	got, err := ledger.FromBus(e.bus).Lookup(ctx, []string{a.ID})
	require.NoError(t, err)
	require.Contains(t, got, a.ID)
	states := map[string]string{}
	for _, en := range got[a.ID].Entries() {
		states[en.Subscriber] = en.State
	}
	assert.Equal(t, map[string]string{"acme": delivery.StateDelivered, "bolt": delivery.StateDead,
		"coda": delivery.StatePending}, states)
	en, ok := got[a.ID].Entry("bolt", bad.Target)
	require.True(t, ok)
	assert.Contains(t, en.LastError, `channel "sms"`)
}

// TestARefusedJobOfAPackIsListedUnderItsPartner: `herald dead list
// --subscriber bolt` shows the job of a pack the runner refused for bolt,
// by the partner its key names, and --alert shows it when its delivery id
// is that alert's (the record holds no alert). A refused job is never
// among the Deliveries a replay selects, nor under another partner.
func TestARefusedJobOfAPackIsListedUnderItsPartner(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := testAlert("al-refused-list")
	good := e.hookJob(a, "acme")
	bad := e.hookJob(a, "bolt")
	bad.Channel, bad.Incarnation = "sms", "inc-1"
	unnamed := e.hookJob(a, "coda")
	unnamed.ID = delivery.ID("al-else", "coda", unnamed.Target)
	require.NoError(t, e.bus.Producer(bus.TopicDeliveries).Write(ctx,
		kafka.Message{Key: []byte("acme"), Value: packOf(t, a, good, bad, unnamed)}))
	e.start(e.runner())
	e.waitState(good.ID, delivery.StateDelivered)
	e.deadLetters(2)

	for _, tc := range []struct {
		name   string
		filter DeadFilter
		want   []string // the partners the listed dead letters' bytes name
	}{
		{"its partner", DeadFilter{Subscriber: "bolt"}, []string{"bolt"}},
		{"the other's partner", DeadFilter{Subscriber: "coda"}, []string{"coda"}},
		{"its partner and incarnation", DeadFilter{Subscriber: "bolt", Incarnation: "inc-1"}, []string{"bolt"}},
		{"its partner registered again", DeadFilter{Subscriber: "bolt", Incarnation: "inc-2"}, nil},
		{"the pack's partner", DeadFilter{Subscriber: "acme"}, nil},
		{"its alert", DeadFilter{Alert: a.ID}, []string{"bolt"}},
		{"its partner and alert", DeadFilter{Subscriber: "bolt", Alert: a.ID}, []string{"bolt"}},
		{"another alert", DeadFilter{Subscriber: "bolt", Alert: "al-else"}, nil},
		{"its delivery", DeadFilter{Subscriber: "bolt", Deliveries: []string{bad.ID}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dead, err := ListDead(ctx, e.bus, tc.filter)
			require.NoError(t, err)
			var got []string
			for _, d := range dead {
				require.Nil(t, d.Job)
				var w struct{ Subscriber string }
				require.NoError(t, json.Unmarshal(d.Raw, &w))
				got = append(got, w.Subscriber)
			}
			assert.Equal(t, tc.want, got)
		})
	}
	// What `herald dead list` shows of each: the partner and target a
	// refused job names for certain, nothing of the one that names
	// another alert's delivery under the pack's key.
	dead, err := ListDead(ctx, e.bus, DeadFilter{Subscriber: "bolt"})
	require.NoError(t, err)
	require.Len(t, dead, 1)
	alert, sub, target := dead[0].Names()
	assert.Equal(t, [3]string{"", "bolt", bad.Target}, [3]string{alert, sub, target})
	n, err := Replay(ctx, e.bus, DeadFilter{Subscriber: "bolt"}, time.Now())
	require.NoError(t, err)
	assert.Zero(t, n, "a refused job is listed, never replayed")
}
