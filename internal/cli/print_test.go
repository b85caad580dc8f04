package cli_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// evil is what a record written straight to Kafka (an old record, kcat, a
// webhook's error response) may carry: an ANSI escape sequence that turns
// the terminal red and a right-to-left override that reverses what
// follows.
const evil = "\x1b[31m\u202e"

// requireEscaped checks that out holds neither raw character of evil, and
// that it shows both escaped.
func requireEscaped(t *testing.T, out string) {
	t.Helper()
	require.NotContains(t, out, "\x1b", "a raw ESC reaches the terminal")
	require.NotContains(t, out, "\u202e", "a raw RIGHT-TO-LEFT OVERRIDE reaches the terminal")
	require.Contains(t, out, `\x1b[31`)
	require.Contains(t, out, `\u202e`)
}

// TestTextOutputEscapesData writes records carrying control and bidi
// characters straight to the topics, as a Kafka client other than Herald
// could, and checks that every command prints them escaped: as text
// (\x1b, \u202e) and as JSON (\u001b, \u202e) that decodes to the same
// value.
func TestTextOutputEscapesData(t *testing.T) {
	b := onBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	write := func(topic, key string, v any, headers ...kafka.Header) {
		t.Helper()
		value, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, b.Producer(topic).Write(ctx, kafka.Message{Key: []byte(key), Value: value, Headers: headers}))
	}

	target := "https://hooks.acme.example/" + evil
	write(bus.TopicSubscribers, "acme", &subscribers.Subscriber{
		ID: "acme", Name: "Acme" + evil + " Ltd", Kind: subscribers.KindNGO, Clearance: alerts.TLPGreen, Sectors: []string{"care"},
		Webhooks: []subscribers.Webhook{{URL: target, MaxTLP: alerts.TLP("AMBER" + evil),
			Secrets: []string{"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}},
	})
	now := time.Now().UTC()
	write(bus.TopicReceipts, "a1", &delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a1", At: now,
		Type: alerts.TypeAlert, TLP: alerts.TLPGreen, Marking: alerts.MarkingOfficial, IssuedBy: "analyst" + evil})
	write(bus.TopicReceipts, "a1", &delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", At: now,
		Subscriber: "acme", Channel: delivery.ChannelWebhook, Target: target, Decision: delivery.Deliver,
		Mode: delivery.ModeSigned, Rule: "webhook.signed", Reason: "matched" + evil})
	write(bus.TopicReceipts, "a1", &delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "a1", At: now,
		Subscriber: "acme", Channel: delivery.ChannelWebhook, Target: target, State: delivery.StateDead,
		Attempt: 3, Error: "HTTP 500: " + evil + "boom"})
	job := &delivery.Job{ID: delivery.ID("a1", "acme", target), Alert: &alerts.Alert{ID: "a1", Title: "t"},
		Subscriber: "acme", Channel: delivery.ChannelWebhook, Target: target, Mode: delivery.ModeSigned, Attempt: 3,
		History: []delivery.Attempt{{At: now, Reason: delivery.ReasonHTTP5xx, Error: "HTTP 500: " + evil}}}
	write(bus.TopicDead, job.ID, job,
		kafka.Header{Key: bus.HeaderReason, Value: []byte("http-5xx" + evil)},
		kafka.Header{Key: bus.HeaderError, Value: []byte("HTTP 500: " + evil + "boom")})

	t.Run("subscribers list", func(t *testing.T) {
		code, out, errOut := run(t, "", "subscribers", "list")
		require.Equal(t, 0, code, errOut)
		requireEscaped(t, out)
		assert.Contains(t, out, `Acme\x1b[31m\u202e Ltd`)
	})
	t.Run("publish --dry-run", func(t *testing.T) {
		alert := `{"title":"Workers housed at a car wash","severity":"severe","audience":{"subscribers":["acme"]},` +
			`"marking":"OFFICIAL","tlp":"GREEN","handling":{"code":"P"}}`
		code, out, errOut := run(t, alert, "publish", "--dry-run", "-")
		require.Equal(t, 0, code, errOut)
		requireEscaped(t, out)
		assert.Contains(t, out, `https://hooks.acme.example/\x1b[31m\u202e`, "the target")
		assert.Contains(t, out, `max_tlp TLP:AMBER\x1b[31M\u202e`, "the reason")

		code, out, errOut = run(t, alert, "publish", "--dry-run", "--output", "json", "-")
		require.Equal(t, 0, code, errOut)
		require.NotContains(t, out, "\x1b")
		require.NotContains(t, out, "\u202e")
		var ds []struct{ Target, Reason string }
		require.NoError(t, json.Unmarshal([]byte(out), &ds))
		require.Len(t, ds, 1)
		assert.Equal(t, target, ds[0].Target, "the JSON escapes decode to the same text")
		assert.Contains(t, ds[0].Reason, "AMBER\x1b[31M\u202e")
	})
	t.Run("status", func(t *testing.T) {
		code, out, errOut := run(t, "", "status", "a1")
		require.Equal(t, 0, code, errOut)
		requireEscaped(t, out)
		assert.Contains(t, out, `issued by analyst\x1b[31m\u202e`)
		assert.Contains(t, out, `HTTP 500: \x1b[31m\u202eboom`, "the last error")
	})
	t.Run("dead list", func(t *testing.T) {
		code, out, errOut := run(t, "", "dead", "list")
		require.Equal(t, 0, code, errOut)
		requireEscaped(t, out)
		assert.Contains(t, out, `http-5xx\x1b[31m\u202e`, "the reason")
		assert.Contains(t, out, `HTTP 500: \x1b[31m\u202eboom`, "the error")
	})
	t.Run("JSON output", func(t *testing.T) {
		for _, args := range [][]string{
			{"subscribers", "get", "acme"}, {"subscribers", "list", "-o", "json"},
			{"status", "a1", "-o", "json"}, {"dead", "list", "-o", "json"},
		} {
			code, out, errOut := run(t, "", args...)
			require.Equal(t, 0, code, errOut)
			require.NotContains(t, out, "\x1b", args)
			require.NotContains(t, out, "\u202e", args)
			require.Contains(t, out, `\u001b[31`, args)
			require.Contains(t, out, `\u202e`, args)
			require.True(t, json.Valid([]byte(out)), args)
		}
		_, out, _ := run(t, "", "subscribers", "get", "acme")
		var s subscribers.Subscriber
		require.NoError(t, json.Unmarshal([]byte(out), &s))
		assert.Equal(t, "Acme"+evil+" Ltd", s.Name)
	})
	t.Run("error messages", func(t *testing.T) {
		code, _, errOut := run(t, "", "status", "nope"+evil)
		require.Equal(t, 1, code)
		requireEscaped(t, errOut)
		assert.Contains(t, errOut, `herald: no alert nope\x1b[31m\u202e: `)
	})
}

// TestValidateNamesInvisibleCharacters checks that validate refuses a
// title with a bidi override and prints the character by name, never raw.
func TestValidateNamesInvisibleCharacters(t *testing.T) {
	alert := `{"title":"Invoice \u202efdp.exe","severity":"severe","audience":{"sectors":["care"]},` +
		`"marking":"OFFICIAL","tlp":"GREEN","handling":{"code":"P"},"body":"ok\u2067x"}`
	code, out, errOut := run(t, alert, "validate", "-")
	require.Equal(t, 2, code, out)
	assert.NotContains(t, errOut, "\u202e")
	assert.Contains(t, errOut, "  title: contains the Unicode format character U+202E (RIGHT-TO-LEFT OVERRIDE) at character 9\n")
	assert.Contains(t, errOut, "  body: contains the Unicode format character U+2067 (RIGHT-TO-LEFT ISOLATE) at character 3;")

	code, out, errOut = run(t, strings.Replace(alert, `\u202efdp`, `pdf`, 1), "validate", "-")
	require.Equal(t, 2, code, out)
	assert.NotContains(t, errOut, "title")
	assert.Contains(t, errOut, "  body: ")

	// A zero-width joiner is allowed in text (emoji, many scripts).
	code, out, errOut = run(t, strings.NewReplacer(`\u202efdp`, `pdf`, `\u2067`, `\u200d`).Replace(alert), "validate", "-")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "valid: alert TLP:GREEN [OFFICIAL] Invoice pdf.exe\n", out)
}

// TestValidateRefusesAKeyTwiceAndBytesNotUTF8 checks that an alert in JSON
// whose key is given twice, or whose text is not UTF-8, is refused naming
// the field, as YAML refuses it: JSON would keep only the last key (here a
// second tlp) and turn the bytes into U+FFFD in what partners receive.
func TestValidateRefusesAKeyTwiceAndBytesNotUTF8(t *testing.T) {
	alert := `{"title":"Car wash","severity":"severe","audience":{"sectors":["care"]},` +
		`"marking":"OFFICIAL","tlp":"RED","handling":{"code":"P"},"tlp":"GREEN"}`
	code, out, errOut := run(t, alert, "validate", "-")
	require.Equal(t, 2, code, out)
	assert.Contains(t, errOut, "  tlp: is given more than once")

	code, out, errOut = run(t, strings.Replace(alert, `,"tlp":"GREEN"`, "", 1), "validate", "-")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "valid: alert TLP:RED [OFFICIAL] Car wash\n", out)
	code, out, errOut = run(t, strings.Replace(strings.Replace(alert, `,"tlp":"GREEN"`, "", 1), "Car wash", "Car \xffwash", 1), "validate", "-")
	require.Equal(t, 2, code, out)
	assert.Contains(t, errOut, "  title: is not UTF-8 text (byte 0xff at offset 14)")
}

// TestValidateNamesABadTime checks that a time that is not RFC 3339 is
// refused naming its field, not only the parser's complaint.
func TestValidateNamesABadTime(t *testing.T) {
	alert := `{"title":"Car wash","severity":"severe","audience":{"sectors":["care"]},` +
		`"marking":"OFFICIAL","tlp":"GREEN","handling":{"code":"P"},"expires_at":"tomorrow"}`
	code, out, errOut := run(t, alert, "validate", "-")
	require.Equal(t, 2, code, out)
	assert.Contains(t, errOut, `  expires_at: must be an RFC 3339 time such as 2026-12-01T09:00:00Z, not "tomorrow"`)
}
