package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/segmentio/kafka-go"
)

// TestStatusShowsAcknowledgements: `herald status` names who acknowledged
// the alert and when (PRODUCT.md §12), in text and, on the rows of the
// partner that acknowledged, in JSON; the JSON rows name who issued and
// approved it too (§10), and stay an array of the ledger's entries.
func TestStatusShowsAcknowledgements(t *testing.T) {
	b := onBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	at := time.Now().UTC().Truncate(time.Second)
	acked := at.Add(90 * time.Second)
	const acmeMail, acmeHook, bankMail = "soc@acme.example", "https://hooks.acme.example/in", "alerts@bank.example"
	rs := []delivery.Receipt{
		{Kind: delivery.KindAlert, AlertID: "a1", At: at, Type: alerts.TypeAlert, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial,
			Title: "Car wash recruiting", IssuedBy: "api:alice", ApprovedBy: "api:bob"},
		{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "acme", Channel: delivery.ChannelEmail, Target: acmeMail,
			Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"},
		{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "acme", Channel: delivery.ChannelWebhook, Target: acmeHook,
			Decision: delivery.Deliver, Mode: delivery.ModeSigned, Rule: "webhook.signed"},
		{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "bank", Channel: delivery.ChannelEmail, Target: bankMail,
			Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"},
		{Kind: delivery.KindOutcome, AlertID: "a1", At: at.Add(time.Second), Subscriber: "acme", Target: acmeMail, State: delivery.StateDelivered, Attempt: 1},
		{Kind: delivery.KindOutcome, AlertID: "a1", At: at.Add(time.Second), Subscriber: "acme", Target: acmeHook, State: delivery.StateDelivered, Attempt: 1},
		{Kind: delivery.KindOutcome, AlertID: "a1", At: at.Add(time.Second), Subscriber: "bank", Target: bankMail, State: delivery.StateDelivered, Attempt: 1},
		{Kind: delivery.KindAck, AlertID: "a1", At: acked, Subscriber: "acme", By: "acme-soc", Note: "Passed to our financial crime team"},
		// A second acknowledgement of the same partner does not count.
		{Kind: delivery.KindAck, AlertID: "a1", At: acked.Add(time.Hour), Subscriber: "acme", By: "email link"},
	}
	msgs := make([]kafka.Message, len(rs))
	for i, r := range rs {
		msgs[i] = fanout.ReceiptMessage(r)
	}
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, msgs...))

	code, out, errOut := run(t, "", "status", "a1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "issued by api:alice, approved by api:bob")
	assert.Contains(t, out, "acme acknowledged at "+acked.Format(time.RFC3339)+" (acme-soc): Passed to our financial crime team\n")
	assert.NotContains(t, out, "bank acknowledged")
	assert.NotContains(t, out, "email link", "the first acknowledgement is the one that counts")

	code, out, errOut = run(t, "", "status", "a1", "-o", "json")
	require.Equal(t, 0, code, errOut)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows), "still an array of entries: %s", out)
	require.Len(t, rows, 3)
	for _, row := range rows {
		for _, k := range []string{"subscriber", "target", "decision", "rule", "state", "attempts", "updated_at"} {
			assert.Contains(t, row, k, "the entry's fields are kept")
		}
		assert.Equal(t, "api:alice", row["issued_by"])
		assert.Equal(t, "api:bob", row["approved_by"])
		if row["subscriber"] == "acme" {
			assert.Equal(t, acked.Format(time.RFC3339Nano), row["acknowledged_at"], row["target"])
			assert.Equal(t, "acme-soc", row["acknowledged_by"], row["target"])
		} else {
			assert.NotContains(t, row, "acknowledged_at")
			assert.NotContains(t, row, "acknowledged_by")
		}
	}
}

// TestStatusOfAPendingAlert: an alert waiting for a second analyst has no
// deliveries yet; status says so, and who issued it, in text and beside
// the (empty) JSON array; likewise once it was rejected.
func TestStatusOfAPendingAlert(t *testing.T) {
	onBroker(t)
	amber := filepath.Join(t.TempDir(), "amber.yaml")
	require.NoError(t, os.WriteFile(amber, []byte(`{id: a-1, title: "Amber warning", severity: severe, marking: OFFICIAL, tlp: AMBER,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))
	code, out, errOut := run(t, "", "publish", amber)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "a-1\tawaiting approval")

	code, out, errOut = run(t, "", "status", "a-1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "alert a-1 waits for a second analyst: issued by cli:")

	code, out, errOut = run(t, "", "status", "a-1", "-o", "json")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "[]\n", out, "the same shape as a fanned-out alert's: no rows yet")
	assert.Contains(t, errOut, "alert a-1 waits for a second analyst: issued by cli:")
	assert.Contains(t, errOut, "no deliveries yet")

	code, _, errOut = run(t, "", "reject", "a-1", "--reason", "withdrawn by its author")
	require.Equal(t, 0, code, errOut)
	code, out, errOut = run(t, "", "status", "a-1")
	require.Equal(t, 0, code, errOut)
	assert.True(t, strings.HasPrefix(out, "alert a-1, issued by cli:"), out)
	assert.Contains(t, out, "was rejected by cli:")
	assert.Contains(t, out, ": withdrawn by its author\n")
	code, out, errOut = run(t, "", "status", "a-1", "-o", "json")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "[]\n", out)
	assert.Contains(t, errOut, "was rejected by cli:")

	// Published, with no fan-out running: who issued it, and that its
	// decisions are not recorded yet.
	green := filepath.Join(t.TempDir(), "green.yaml")
	require.NoError(t, os.WriteFile(green, []byte(`{id: g-2, title: "Green warning", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))
	code, _, errOut = run(t, "", "publish", green)
	require.Equal(t, 0, code, errOut)
	code, out, errOut = run(t, "", "status", "g-2")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `^alert g-2, issued by cli:\S+, is published; the fan-out has not recorded its decisions yet\n$`, out)
}
