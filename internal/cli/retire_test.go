package cli_test

import (
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
)

// TestKeysRetire: `keys retire` refuses a file of one key (exit 2);
// after a rotation it rewrites the file (mode 0600, comments kept) so that
// the old key is retired at the topics' ends, and a second run changes
// nothing. `herald status` of an alert whose receipts the old key signed
// still lists its recipients; a receipt the old key signs afterwards is
// refused, and said so; resign's table marks the key retired.
func TestKeysRetire(t *testing.T) {
	b := onBroker(t) // signs with the old key
	at := time.Now().UTC().Truncate(time.Second)
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(),
		fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a1", At: at, Type: alerts.TypeAlert, TLP: alerts.TLPAmber,
			Marking: alerts.MarkingOfficial, Title: "Car wash recruiting", IssuedBy: "api:alice"}),
		fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "acme", Channel: delivery.ChannelEmail,
			Target: "soc@acme.example", Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"})))

	code, _, errOut := run(t, "", "keys", "retire")
	assert.Equal(t, 2, code, "one key only")
	assert.Contains(t, errOut, "the file holds one key")

	dir := t.TempDir()
	rotating, _, newID := rotatingKeys(t, dir)
	data, err := os.ReadFile(rotating)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(rotating, append([]byte("# rotated by ops\n"), data...), 0o644))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", rotating)

	code, out, errOut := run(t, "", "keys", "retire", "--dry-run")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "key "+newID+" signs and stays in use\n")
	assert.Regexp(t, `would retire key [0-9a-f]{12} at the end of 16 topics \(3 partitions each\): alert-ids, alerts, audit, .*retry.6, subscribers\n`, out)
	assert.Contains(t, out, "dry run: "+rotating+" not written")
	after, err := os.ReadFile(rotating)
	require.NoError(t, err)
	assert.NotContains(t, string(after), "retired", "a dry run writes nothing")

	code, out, errOut = run(t, "", "keys", "retire")
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `retired key [0-9a-f]{12} at the end of 16 topics`, out)
	assert.Contains(t, out, "wrote "+rotating+": deploy this file to every process and command line and restart them")
	st, err := os.Stat(rotating)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	retired, err := os.ReadFile(rotating)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(retired)), "\n")
	require.Len(t, lines, 3)
	assert.Equal(t, "# rotated by ops", lines[0], "comments kept")
	assert.Equal(t, strings.Split(string(data), "\n")[0], lines[1], "the signing key kept as it was")
	assert.Regexp(t, `^hbk1\.\S+ retired alert-ids=0,0,0;alerts=0,0,0;.*receipts=[0-9,]+;`, lines[2])

	code, out, errOut = run(t, "", "audit", "list", "--action", "keys.retire")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "publishing-key:"+newID, "the rewrite is in the audit trail")

	code, out, errOut = run(t, "", "keys", "retire")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "was retired before: its offsets are kept")
	assert.Contains(t, out, "unchanged")
	again, err := os.ReadFile(rotating)
	require.NoError(t, err)
	assert.Equal(t, string(retired), string(again), "a second run moves no offset")

	// The old key's history stays readable; its later records do not.
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(),
		fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "mallory", Channel: delivery.ChannelEmail,
			Target: "x@evil.example", Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"})))
	code, out, errOut = run(t, "", "status", "a1")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "alert a1  alert  TLP:AMBER  OFFICIAL")
	assert.Contains(t, out, "acme")
	assert.NotContains(t, out, "mallory", "written with the old key after its retirement")
	assert.Contains(t, errOut, "signed with a key retired before this record was written")

	code, out, _ = run(t, "", "keys", "resign", "--alert-ids", "--dry-run")
	assert.Equal(t, 0, code)
	assert.Regexp(t, `[0-9a-f]{12} \(retired\) +0\n`, out)

	// A file whose first key is retired is refused.
	bad := filepath.Join(dir, "bad.key")
	require.NoError(t, os.WriteFile(bad, []byte(lines[2]+"\n"+lines[1]+"\n"), 0o600))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", bad)
	code, _, errOut = run(t, "", "keys", "retire")
	assert.NotEqual(t, 0, code)
	assert.Contains(t, errOut, "the first key signs and may not be retired")
}
