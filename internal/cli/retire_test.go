package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestKeysRetire: `keys retire` refuses a file of one key (exit 2);
// after a rotation it rewrites the file (mode 0600, comments kept) so that
// the old key is retired at the topics' ends, and a second run changes
// nothing. `herald status` of an alert whose receipts the old key signed
// still lists its recipients; a receipt the old key signs afterwards is
// refused, and said so; resign's table marks the key retired.
func TestKeysRetire(t *testing.T) {
	b := onBroker(t) // signs with the old key
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	// Written an hour ago, before the rotation began (older than the
	// check's window, --since).
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(t.Context(), dated(at,
		fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert, AlertID: "a1", At: at, Type: alerts.TypeAlert, TLP: alerts.TLPAmber,
			Marking: alerts.MarkingOfficial, Title: "Car wash recruiting", IssuedBy: "api:alice"}),
		fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindDecision, AlertID: "a1", At: at, Subscriber: "acme", Channel: delivery.ChannelEmail,
			Target: "soc@acme.example", Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"}))...))

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
	assert.Contains(t, out, "checked the last 20 records of every partition of alerts, alert-ids, audit, deliveries, pending, receipts: no key to retire signed one after key "+newID+" did, nor in the last 10m0s\n")
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

// dated sets the Kafka timestamp of msgs, as their writer would have.
func dated(at time.Time, msgs ...kafka.Message) []kafka.Message {
	for i := range msgs {
		msgs[i].Time = at
	}
	return msgs
}

// receiptOf is a decision receipt of alert id, a record of the receipts
// topic as the fan-out writes it, with the Kafka timestamp at.
func receiptOf(id string, at time.Time) kafka.Message {
	return dated(at, fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, At: at, Subscriber: "acme",
		Channel: delivery.ChannelEmail, Target: "soc@acme.example", Decision: delivery.Deliver, Mode: delivery.ModeEncrypted, Rule: "email.encrypted"}))[0]
}

// midRotation starts a broker as onBroker does, makes the rotation's key
// file (the new key first) the command line's, and returns clients
// signing with the old key and with the new one (processes restarted at
// step 2 or not), the file's path and the keys' ids.
func midRotation(t *testing.T) (old, fresh *bus.Bus, rotating, oldID, newID string) {
	t.Helper()
	cluster := onCluster(t)
	old = cluster.Open(t, cluster.Config())
	rotating, newOnly, newID := rotatingKeys(t, t.TempDir())
	data, err := os.ReadFile(newOnly)
	require.NoError(t, err)
	keys, err := busauth.Parse(data)
	require.NoError(t, err)
	opt := cluster.Options(t)
	opt.Keyring = keys
	fresh = cluster.OpenWith(t, cluster.Config(), opt)
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", rotating)
	return old, fresh, rotating, kafkatest.Keyring().IDs()[0], newID
}

// TestKeysRetireRefusesWhileAProcessSignsWithTheOldKey: a receipt the old
// key signed after one the new key signed on the same partition (a
// process forgotten at step 2), even long ago, stops `keys retire` (and
// its dry run): exit 1, the record named, the file unchanged. --force
// retires anyway.
func TestKeysRetireRefusesWhileAProcessSignsWithTheOldKey(t *testing.T) {
	old, fresh, rotating, oldID, newID := midRotation(t)
	ctx := t.Context()
	start := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	require.NoError(t, old.Producer(bus.TopicReceipts).WriteToPartition(ctx, 1, receiptOf("a1", start)))
	require.NoError(t, fresh.Producer(bus.TopicReceipts).WriteToPartition(ctx, 1, receiptOf("a2", start.Add(10*time.Minute))))
	require.NoError(t, old.Producer(bus.TopicReceipts).WriteToPartition(ctx, 1, receiptOf("a3", start.Add(20*time.Minute))))
	before, err := os.ReadFile(rotating)
	require.NoError(t, err)

	finding := "key " + oldID + " signed receipts partition 1 offset 2 at " + start.Add(20*time.Minute).Format(time.RFC3339) +
		", after key " + newID + " signed offset 1 at " + start.Add(10*time.Minute).Format(time.RFC3339) + ": a process may still sign with it\n"
	for _, args := range [][]string{{"keys", "retire", "--dry-run"}, {"keys", "retire"}} {
		code, out, errOut := run(t, "", args...)
		assert.Equal(t, 1, code, "%v: %s%s", args, out, errOut)
		assert.Contains(t, out, "key "+newID+" signs and stays in use\n"+finding, args)
		assert.NotRegexp(t, `retired? key`, out, args)
		assert.Contains(t, errOut, "finish step 2 (deploy the file to every process and restart them), then run it again", args)
		assert.Contains(t, errOut, "--force", args)
		after, err := os.ReadFile(rotating)
		require.NoError(t, err)
		assert.Equal(t, string(before), string(after), "%v: nothing written", args)
	}

	code, out, errOut := run(t, "", "keys", "retire", "--force")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, finding, "said, and retired anyway")
	assert.Regexp(t, `retired key `+oldID+` at the end of 16 topics`, out)
	after, err := os.ReadFile(rotating)
	require.NoError(t, err)
	assert.Contains(t, string(after), " retired ")
	code, out, errOut = run(t, "", "audit", "list", "--action", "keys.retire", "--output", "json")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `"forced_past_late_records": 1`, "the audit trail says the check was forced past")
}

// TestKeysRetireQuietOnQuietPartitions: partitions whose last records the
// old key signed before the rotation (older than --since, none of the
// new key's before them), and one where the old key signed moments ago
// before the new key took over, raise no alarm: the key is retired.
func TestKeysRetireQuietOnQuietPartitions(t *testing.T) {
	old, fresh, rotating, oldID, newID := midRotation(t)
	ctx := t.Context()
	long := time.Now().Add(-3 * time.Hour)
	receipts, audit := old.Producer(bus.TopicReceipts), old.Producer(bus.TopicAudit)
	for p := range 3 {
		require.NoError(t, receipts.WriteToPartition(ctx, p, receiptOf(fmt.Sprintf("q%d", p), long), receiptOf(fmt.Sprintf("r%d", p), long.Add(time.Minute))))
		require.NoError(t, audit.WriteToPartition(ctx, p, dated(long, kafka.Message{Key: []byte("subscriber:acme"), Value: []byte(`{}`)})...))
	}
	// A busy partition: the old key signed a minute ago, then the new
	// key, after the restarts.
	require.NoError(t, old.Producer(bus.TopicDeliveries).WriteToPartition(ctx, 0, dated(time.Now().Add(-time.Minute), kafka.Message{Key: []byte("acme"), Value: []byte(`{}`)})...))
	require.NoError(t, fresh.Producer(bus.TopicDeliveries).WriteToPartition(ctx, 0, kafka.Message{Key: []byte("acme"), Value: []byte(`{}`)}))

	code, out, errOut := run(t, "", "keys", "retire")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	assert.Contains(t, out, "no key to retire signed one after key "+newID+" did")
	assert.NotContains(t, out, "may still sign")
	assert.Contains(t, out, "retired key "+oldID)
	after, err := os.ReadFile(rotating)
	require.NoError(t, err)
	assert.Contains(t, string(after), " retired ")
}

// TestKeysRetireRefusesARecentOldKeyRecord: an audit entry the old key
// signed just now, with no record of the new key on its partition, stops
// `keys retire`; with --since 0 (the order of records only) it retires.
func TestKeysRetireRefusesARecentOldKeyRecord(t *testing.T) {
	old, _, rotating, oldID, _ := midRotation(t)
	ctx := t.Context()
	require.NoError(t, app.AuditLog(old, time.Now).Record(ctx, record.Audit{Actor: "cli:bob", Action: record.ActionSubscriberPut, Object: "subscriber:acme"}))
	before, err := os.ReadFile(rotating)
	require.NoError(t, err)

	code, out, errOut := run(t, "", "keys", "retire")
	assert.Equal(t, 1, code, "%s%s", out, errOut)
	assert.Regexp(t, `key `+oldID+` signed audit partition \d offset 0 at \S+, within --since 10m0s, and key [0-9a-f]{12} signed nothing after it: a process may still sign with it\n`, out)
	assert.Contains(t, errOut, "finish step 2 (deploy the file to every process and restart them), then run it again")
	after, err := os.ReadFile(rotating)
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "nothing written")

	code, out, errOut = run(t, "", "keys", "retire", "--since", "0")
	require.Equal(t, 0, code, "%s%s", out, errOut)
	assert.Contains(t, out, "retired key "+oldID)
}
