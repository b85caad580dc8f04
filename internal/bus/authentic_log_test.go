package bus_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/logtest"
)

// TestAuthenticTellsARemovedKeyFromAStranger: after a rotation removed a
// key, Herald's own older records are refused for naming a key the keyring
// does not hold; the log says so, instead of calling them "not written by
// Herald", which a record with no or a wrong authenticator still is.
func TestAuthenticTellsARemovedKeyFromAStranger(t *testing.T) {
	c := kafkatest.Start(t)
	old := c.Open(t, c.Config()) // the test keyring: the key since removed

	other, err := busauth.New(bytes.Repeat([]byte{7}, busauth.KeySize))
	require.NoError(t, err)
	var logs logtest.Buffer
	opts := c.Options(t)
	opts.Keyring, opts.Log = other, slog.New(slog.NewTextHandler(&logs, nil))
	now := c.OpenWith(t, c.Config(), opts)

	signed := old.AsWritten(bus.TopicReceipts, kafka.Message{Key: []byte("a-1"), Value: []byte(`{}`)})
	assert.False(t, now.Authentic(signed))
	assert.Contains(t, logs.String(), "ignoring a record signed with a key publishing.key_file does not hold")
	assert.NotContains(t, logs.String(), "not written by Herald")

	before := len(logs.String())
	stranger := kafka.Message{Topic: signed.Topic, Key: []byte("a-2"), Value: []byte(`{}`)}
	assert.False(t, now.Authentic(stranger))
	added := logs.String()[before:]
	assert.Contains(t, added, "ignoring a record not written by Herald")
	assert.Equal(t, 1, strings.Count(added, "level=WARN"), added)
}

// TestRefusedRecordKeyIsLoggedWholeCharacters: the log line of a refused
// record shortens its key on a character boundary, so that a key of
// non-ASCII text never puts half a character in the log.
func TestRefusedRecordKeyIsLoggedWholeCharacters(t *testing.T) {
	c := kafkatest.Start(t)
	var logs logtest.Buffer
	opts := c.Options(t)
	opts.Log = slog.New(slog.NewJSONHandler(&logs, nil))
	b := c.OpenWith(t, c.Config(), opts)

	key := strings.Repeat("a", 79) + "é" + strings.Repeat("b", 10) // é is bytes 80 and 81
	m := b.AsWritten(bus.TopicReceipts, kafka.Message{Key: []byte(key), Value: []byte(`{}`)})
	m.Headers = nil // not Herald's
	assert.False(t, b.Authentic(m))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	var line struct{ Msg, Key string }
	require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &line), logs.String())
	require.Equal(t, "ignoring a record not written by Herald", line.Msg)
	assert.Equal(t, strings.Repeat("a", 79)+"…", line.Key)
}
