package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
)

// TestStatusOfAQuarantinedAlert: the command line publishes a GREEN alert
// at once, while the fan-out (configured otherwise: release.second_analyst
// lists GREEN there) wants a second analyst's approval and quarantines it
// as unapproved. `herald status` says that it was quarantined, why, and
// that it reached no one, where it said it was published and waiting for
// its fan-out; `herald alerts list` shows it quarantined. A quarantine
// record Herald did not write, or the quarantine of a copy of another
// alert that someone else wrote, changes nothing of that alert; nor does
// a copy of that authentic quarantine record with a forged source header.
func TestStatusOfAQuarantinedAlert(t *testing.T) {
	b := onBroker(t)
	for _, id := range []string{"g-q1", "g-ok"} {
		f := filepath.Join(t.TempDir(), id+".yaml")
		require.NoError(t, os.WriteFile(f, []byte(`{id: `+id+`, title: "Green warning", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))
		code, _, errOut := run(t, "", "publish", f)
		require.Equal(t, 0, code, errOut)
	}
	// The fan-out takes g-q1 only: g-ok waits for it.
	w := &fanout.Worker{
		Registry: subscribers.NewRegistry(), Policy: policy.Options{}, SecondAnalyst: []string{"GREEN"},
		Deliveries: b.Producer(bus.TopicDeliveries), Receipts: b.Producer(bus.TopicReceipts),
		Quarantine: b.Producer(bus.TopicQuarantine), History: ledger.FromBus(b), Authenticate: b.Authenticate,
		Now: time.Now, Log: slog.New(slog.DiscardHandler),
	}
	var msgs []kafka.Message
	var okValue []byte
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicAlerts, func(m kafka.Message) error {
		if string(m.Key) == "g-q1" {
			msgs = append(msgs, m)
		} else {
			okValue = m.Value
		}
		return nil
	}))
	require.Len(t, msgs, 1)
	require.NoError(t, w.Handle(t.Context(), msgs))
	// Someone with write access to the quarantine topic, without
	// Herald's key, claims g-ok's very content was quarantined.
	k := config.Default().Kafka
	k.Brokers = b.Brokers()
	other, err := busauth.New(bytes.Repeat([]byte{7}, busauth.KeySize))
	require.NoError(t, err)
	forger, err := bus.Open(t.Context(), k, bus.Options{Keyring: other})
	require.NoError(t, err)
	t.Cleanup(func() { forger.Close() })
	require.NoError(t, forger.Producer(bus.TopicQuarantine).Write(t.Context(),
		bus.Rejection(kafka.Message{Topic: "herald.alerts", Key: []byte("g-ok"), Value: okValue}, fanout.ReasonInvalid, errors.New("forged"))))
	// Someone with write access to the alerts topic writes a copy of
	// g-ok, which the fan-out quarantines as unattributed: that copy's
	// refusal says nothing of Herald's g-ok.
	require.NoError(t, forger.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte("g-ok"), Value: okValue}))
	var copies []kafka.Message
	require.NoError(t, b.ReadKeys(t.Context(), bus.TopicAlerts, []string{"g-ok"}, func(m kafka.Message) error {
		if !b.Authentic(m) {
			copies = append(copies, m)
		}
		return nil
	}))
	require.Len(t, copies, 1)
	require.NoError(t, w.Handle(t.Context(), copies))
	// Someone with write access to the quarantine topic copies the
	// fan-out's authentic refusal of that copy, authenticators and all,
	// with its source header naming Herald's g-ok record instead.
	var own, refusal *kafka.Message
	require.NoError(t, b.ReadKeys(t.Context(), bus.TopicAlerts, []string{"g-ok"}, func(m kafka.Message) error {
		if b.Authentic(m) {
			own = &m
		}
		return nil
	}))
	require.NoError(t, b.ReadKeys(t.Context(), bus.TopicQuarantine, []string{"g-ok"}, func(m kafka.Message) error {
		if b.Authentic(m) {
			refusal = &m
		}
		return nil
	}))
	require.NotNil(t, own)
	require.NotNil(t, refusal)
	forged := kafka.Message{Key: refusal.Key, Value: refusal.Value}
	for _, h := range refusal.Headers {
		if h.Key == bus.HeaderSource {
			h.Value = fmt.Appendf(nil, "%s/%d/%d", own.Topic, own.Partition, own.Offset)
		}
		forged.Headers = append(forged.Headers, h)
	}
	raw := &kafka.Writer{Addr: kafka.TCP(b.Brokers()...), Topic: b.Topic(bus.TopicQuarantine), Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { _ = raw.Close() })
	require.NoError(t, raw.WriteMessages(t.Context(), forged))

	code, out, errOut := run(t, "", "status", "g-q1")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^alert g-q1, issued by cli:\S+, was quarantined by the fan-out at \S+ \(unapproved: a TLP:GREEN OFFICIAL alert needs a second analyst's approval \(release\.second_analyst\)\); it reached no one\n$`, out)
	code, out, errOut = run(t, "", "status", "g-q1", "-o", "json")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "[]\n", out, "no rows, as for any alert with no deliveries")
	assert.Contains(t, errOut, "was quarantined by the fan-out")
	assert.Contains(t, errOut, "it reached no one\n")
	assert.NotContains(t, errOut, "no deliveries yet")

	code, out, errOut = run(t, "", "status", "g-ok")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^alert g-ok, issued by cli:\S+, is published; the fan-out has not recorded its decisions yet\n$`, out,
		"a quarantine record Herald did not write, or of a copy, counts for nothing")

	code, out, errOut = run(t, "", "alerts", "list")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, regexp.MustCompile(`(?m)^g-q1 +quarantined +TLP:GREEN .* none: quarantined \(unapproved\) +Green warning$`), out)
	assert.Regexp(t, regexp.MustCompile(`(?m)^g-ok +published `), out)
	code, out, errOut = run(t, "", "alerts", "list", "--state", "quarantined")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "g-q1")
	assert.NotContains(t, out, "g-ok")
}
