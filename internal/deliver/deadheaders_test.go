package deliver

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestDeadLetterReasonOnlyFromAuthenticHeaders: ListDead shows a dead
// letter's reason and error only when Herald wrote them. A copy of
// Herald's dead letter (its authenticators kept) under another reason, or
// a dead letter written before Herald covered headers (no
// herald-auth-headers), is listed with reason unauthenticated-headers and
// an error saying so, never the claimed reason or error; its job, which
// authenticates, is still Herald's and replayable. The same holds for the
// reason of a refused job and the error of an unattributed record (whose
// reason comes from its key).
func TestDeadLetterReasonOnlyFromAuthenticHeaders(t *testing.T) {
	e := newEnv(t)
	job := testJob(testAlert("al-h1"), "acme", delivery.ChannelWebhook, hookA)
	v, err := job.Encode()
	require.NoError(t, err)
	headers := func(reason, errText string) []kafka.Header {
		return []kafka.Header{{Key: bus.HeaderReason, Value: []byte(reason)}, {Key: bus.HeaderError, Value: []byte(errText)}}
	}
	require.NoError(t, e.bus.Producer(bus.TopicDead).Write(context.Background(),
		kafka.Message{Key: []byte("acme"), Value: v, Headers: headers(delivery.ReasonExhausted, "receiver answered 503")}))
	var own kafka.Message
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDead, func(m kafka.Message) error { own = m; return nil }))

	// Copies of records Herald wrote, their authenticators kept, their
	// reason and error headers someone else's.
	forged := kafka.Message{Key: own.Key, Value: own.Value}
	for _, h := range own.Headers {
		switch h.Key {
		case bus.HeaderReason:
			h.Value = []byte(delivery.ReasonGone)
		case bus.HeaderError:
			h.Value = []byte("forged error")
		}
		forged.Headers = append(forged.Headers, h)
	}
	legacy := e.bus.AsWritten(bus.TopicDead, kafka.Message{Key: own.Key, Value: own.Value})
	legacy.Headers = append(headers(delivery.ReasonGone, "forged error"), legacy.Headers...)
	refused := e.bus.AsWritten(bus.TopicDead, kafka.Message{Key: []byte(refusedKeyPrefix + "acme"), Value: []byte("{}")})
	refused.Headers = append(headers(delivery.ReasonGone, "forged error"), refused.Headers...)
	unattributed := e.bus.AsWritten(bus.TopicDead, kafka.Message{Key: []byte(unattributedKeyPrefix + "acme"), Value: []byte("{}")})
	unattributed.Headers = append(headers(delivery.ReasonGone, "forged error"), unattributed.Headers...)
	var raw []kafka.Message
	for _, m := range []kafka.Message{forged, legacy, refused, unattributed} {
		raw = append(raw, kafka.Message{Key: m.Key, Value: m.Value, Headers: m.Headers})
	}
	require.NoError(t, e.rawWriter(bus.TopicDead).WriteMessages(context.Background(), raw...))

	dead, err := ListDead(context.Background(), e.bus, DeadFilter{})
	require.NoError(t, err)
	require.Len(t, dead, 5)
	byKind := map[string][]DeadLetter{}
	for _, d := range dead {
		assert.True(t, d.Authentic, "every record is Herald's: %+v", d)
		assert.NotContains(t, d.Error, "forged error")
		assert.NotEqual(t, delivery.ReasonGone, d.Reason, "a forged reason is never shown")
		switch {
		case d.Job != nil:
			byKind["job"] = append(byKind["job"], d)
		case d.Reason == delivery.ReasonUnattributed:
			byKind["unattributed"] = append(byKind["unattributed"], d)
		default:
			byKind["refused"] = append(byKind["refused"], d)
		}
	}
	require.Len(t, byKind["job"], 3)
	assert.Equal(t, delivery.ReasonExhausted, byKind["job"][0].Reason, "Herald's own dead letter")
	assert.Equal(t, "receiver answered 503", byKind["job"][0].Error)
	for _, d := range byKind["job"][1:] {
		assert.Equal(t, ReasonUnauthenticatedHeaders, d.Reason)
		assert.Contains(t, d.Error, "not written by Herald")
		assert.True(t, d.replayable(), "the job itself is Herald's")
	}
	require.Len(t, byKind["refused"], 1)
	assert.Equal(t, ReasonUnauthenticatedHeaders, byKind["refused"][0].Reason)
	require.Len(t, byKind["unattributed"], 1)
	assert.Contains(t, byKind["unattributed"][0].Error, "not written by Herald")

	filtered, err := ListDead(context.Background(), e.bus, DeadFilter{Subscriber: "acme"})
	require.NoError(t, err)
	assert.Len(t, filtered, 3, "a filter matches on the job, which authenticates")
	require.Equal(t, busauth.HeadersHeader, own.Headers[len(own.Headers)-1].Key)
}
