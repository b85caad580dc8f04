package deliver

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
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
