package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestPartnerDeadListsOnlyReplayableJobs: a partner's dead letters, as the
// partner API lists them to replay, are its dead jobs; the dead letter of
// a job of a pack the runner refused, which ListDead shows under the
// partner it names, has no delivery to replay and is left out.
func TestPartnerDeadListsOnlyReplayableJobs(t *testing.T) {
	b := kafkatest.New(t)
	ctx := context.Background()
	target := "https://acme.example/hook"
	job := &delivery.Job{ID: delivery.ID("op-1", "acme", target), Alert: &alerts.Alert{ID: "op-1", Title: "t"},
		Subscriber: "acme", Channel: delivery.ChannelWebhook, Target: target, Mode: delivery.ModeSigned}
	v, err := job.Encode()
	require.NoError(t, err)
	refused := `{"id":"` + delivery.ID("op-1", "acme", "x") + `","subscriber":"acme","channel":"sms","target":"x"}`
	reason := []kafka.Header{{Key: bus.HeaderReason, Value: []byte(delivery.ReasonInvalid)}}
	require.NoError(t, b.Producer(bus.TopicDead).Write(ctx,
		kafka.Message{Key: []byte("acme"), Value: v, Headers: reason},
		kafka.Message{Key: []byte("~refused/acme"), Value: []byte(refused), Headers: reason}))

	ids, err := app.DeadLetters{Bus: b, Now: time.Now}.Dead(ctx, "acme", "")
	require.NoError(t, err)
	assert.Equal(t, []string{job.ID}, ids)
}
