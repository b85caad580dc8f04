package app_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/record"
)

// TestAResignRunThatDiesAfterWritingLeavesATrace: a run of `herald keys
// resign` on each compacted topic dies right after its writes (its
// context cancelled, as a killed process's is), before it can record its
// result. The endorsement and the copy it wrote are on the topics, and
// the audit trail holds the run: who started it, with which key, and how
// many records it was to write. Recorded only at the end, such a run left
// writes and no trace.
func TestAResignRunThatDiesAfterWritingLeavesATrace(t *testing.T) {
	_, bA, bBA, _ := rotationEnv(t) // acme registered under A
	require.NoError(t, bA.Producer(bus.TopicAlertIDs).Write(t.Context(),
		fanout.BindingMessage(record.Binding{ID: "op-trace-1", Digest: "sha256:trace", FannedOut: time.Now(), Offset: 7})))
	signing := bBA.Keyring().IDs()[0]
	t.Cleanup(func() { *app.ResignAfterWrite = nil })

	subs := app.SubscriberStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := subs.ScanSigners(t.Context())
	require.NoError(t, err)
	toVouch := scan.Use().Others()
	require.Positive(t, toVouch)
	ctx, die := context.WithCancel(t.Context())
	*app.ResignAfterWrite = die
	_, err = subs.Resign(ctx, "cli:test", scan)
	require.ErrorIs(t, err, context.Canceled, "the run died after its writes")

	ids := app.BindingStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	idScan, err := ids.ScanBindings(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, idScan.Use().Others())
	ctx, die = context.WithCancel(t.Context())
	*app.ResignAfterWrite = die
	_, err = ids.ResignBindings(ctx, "cli:test", idScan)
	require.ErrorIs(t, err, context.Canceled, "the run died after its writes")

	// What the runs wrote: acme's record is in force by B now, and so is
	// the binding.
	scan, err = subs.ScanSigners(t.Context())
	require.NoError(t, err)
	assert.Zero(t, scan.Use().Others(), "the endorsement was written")
	idScan, err = ids.ScanBindings(t.Context())
	require.NoError(t, err)
	assert.Zero(t, idScan.Use().Others(), "the copy was written")

	type entry struct {
		Actor, Action, Object, Key string
		Records                    any
	}
	var got []entry
	require.NoError(t, bBA.ReadAll(t.Context(), bus.TopicAudit, func(m kafka.Message) error {
		var a record.Audit
		require.NoError(t, json.Unmarshal(m.Value, &a))
		if a.Action == record.ActionKeysResign || a.Action == record.ActionKeysResignStart {
			got = append(got, entry{a.Actor, a.Action, a.Object, a.Details["key"].(string), a.Details["records"]})
		}
		return nil
	}))
	assert.ElementsMatch(t, []entry{
		{"cli:test", record.ActionKeysResignStart, "topic:" + bus.TopicSubscribers, signing, float64(toVouch)},
		{"cli:test", record.ActionKeysResignStart, "topic:" + bus.TopicAlertIDs, signing, 1.0},
	}, got)
}
