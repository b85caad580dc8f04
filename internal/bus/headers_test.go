package bus_test

import (
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// names returns the names of m's headers, in order.
func names(m kafka.Message) []string {
	var out []string
	for _, h := range m.Headers {
		out = append(out, h.Key)
	}
	return out
}

// TestHeadersAreAuthenticated: a record written with headers of its own
// carries herald-auth-headers after herald-auth, and its headers
// authenticate as written; a record without gets herald-auth only. A copy
// of the record (its authenticators kept) whose headers someone changed,
// added to, removed from, reordered or stripped of herald-auth-headers,
// or that moved to another topic, fails AuthenticateHeaders while the
// record itself stays authentic.
func TestHeadersAreAuthenticated(t *testing.T) {
	b := kafkatest.New(t)
	reason, errText, source := kafka.Header{Key: bus.HeaderReason, Value: []byte("unissued")},
		kafka.Header{Key: bus.HeaderError, Value: []byte("no herald-auth header")},
		kafka.Header{Key: bus.HeaderSource, Value: []byte("herald.alerts/0/7")}
	require.NoError(t, b.Producer(bus.TopicQuarantine).Write(t.Context(),
		kafka.Message{Key: []byte("a1"), Value: []byte("v"), Headers: []kafka.Header{reason, errText, source,
			{Key: busauth.HeadersHeader, Value: []byte("v1=stale")}}}))
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(), kafka.Message{Key: []byte("a1"), Value: []byte("r")}))

	var written kafka.Message
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicQuarantine, func(m kafka.Message) error { written = m; return nil }))
	assert.Equal(t, []string{"reason", "error", "source", busauth.Header, busauth.HeadersHeader}, names(written))
	require.NoError(t, b.AuthenticateHeaders(written))
	assert.True(t, b.AuthenticHeaders(written))
	asWritten := b.AsWritten(bus.TopicQuarantine, kafka.Message{Key: []byte("a1"), Value: []byte("v"), Headers: []kafka.Header{reason, errText, source}})
	assert.Equal(t, written.Headers, asWritten.Headers, "AsWritten adds what Write adds")
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicReceipts, func(m kafka.Message) error {
		assert.Equal(t, []string{busauth.Header}, names(m), "no other headers: herald-auth only")
		return b.AuthenticateHeaders(m)
	}))

	auth := kafka.Header{Key: busauth.Header, Value: []byte(bus.Header(written, busauth.Header))}
	hauth := kafka.Header{Key: busauth.HeadersHeader, Value: []byte(bus.Header(written, busauth.HeadersHeader))}
	forgedSource := kafka.Header{Key: bus.HeaderSource, Value: []byte("herald.alerts/0/3")}
	copies := map[string]struct {
		topic   string
		headers []kafka.Header
	}{
		"forged source":             {bus.TopicQuarantine, []kafka.Header{reason, errText, forgedSource, auth, hauth}},
		"source put first":          {bus.TopicQuarantine, []kafka.Header{forgedSource, reason, errText, source, auth, hauth}},
		"source added at the end":   {bus.TopicQuarantine, []kafka.Header{reason, errText, source, auth, hauth, forgedSource}},
		"source removed":            {bus.TopicQuarantine, []kafka.Header{reason, errText, auth, hauth}},
		"reordered":                 {bus.TopicQuarantine, []kafka.Header{errText, reason, source, auth, hauth}},
		"without its authenticator": {bus.TopicQuarantine, []kafka.Header{reason, errText, forgedSource, auth}},
		"to the dead topic":         {bus.TopicDead, []kafka.Header{reason, errText, source, auth, hauth}},
	}
	for name, c := range copies {
		m := kafka.Message{Topic: b.Topic(c.topic), Key: written.Key, Value: written.Value, Headers: c.headers}
		if c.topic == bus.TopicQuarantine {
			require.NoError(t, b.Authenticate(m), "%s: the record itself is Herald's", name)
		}
		err := b.AuthenticateHeaders(m)
		assert.Error(t, err, name)
		assert.False(t, b.AuthenticHeaders(m), name)
		if c.topic == bus.TopicQuarantine && name != "without its authenticator" {
			assert.ErrorIs(t, err, busauth.ErrHeadersMismatch, name)
		}
	}
	err := b.AuthenticateHeaders(kafka.Message{Topic: b.Topic(bus.TopicQuarantine), Key: written.Key, Value: written.Value,
		Headers: []kafka.Header{reason, errText, source, auth}})
	assert.ErrorIs(t, err, busauth.ErrHeadersMissing, "a record with other headers and no herald-auth-headers: from before Herald covered them, or altered")
	assert.ErrorContains(t, err, "headers of the record")
}
