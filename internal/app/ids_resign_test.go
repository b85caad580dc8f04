package app_test

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
)

// TestRotationKeepsAlertIDs: an alert fanned out, and its id bound, under
// publishing key A; the key rotated (B first, A second); the alert-ids
// topic re-signed (`herald keys resign --alert-ids`: app.BindingStore);
// A removed, the topic compacted, the alert's record and receipts aged
// out. A fresh process (its view rebuilt from Kafka under B alone)
// refuses a different alert under the old id (409 naming id). Without the
// re-signing, the binding, signed with A alone, is skipped and the id
// forgotten: the different alert is accepted. The dry run's count goes
// from 1 to 0, a second run copies nothing, and a binding no key of the
// keyring verifies (forged) is never copied.
func TestRotationKeepsAlertIDs(t *testing.T) {
	for _, resign := range []bool{true, false} {
		t.Run(map[bool]string{true: "re-signed", false: "not re-signed"}[resign], func(t *testing.T) {
			e := newServeEnv(t, nil)
			const analyst = "hrld_analyst_rsids_5e1a"
			e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
			require.NoError(t, e.cfg.Validate())
			ctx := t.Context()
			bA := e.cluster.Open(t, e.cfg.Kafka)
			register(t, bA, acmeCarWash())
			records := func(id string) []kafka.Message { return alertIDRecords(t, bA, id) }

			_, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true})
			require.NoError(t, err, "%s", e.logs)
			old := carWashAlert("op-rsids-1")
			v, err := json.Marshal(old)
			require.NoError(t, err)
			require.NoError(t, bA.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(old.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
			require.Eventually(t, func() bool { return len(records(old.ID)) == 1 }, 60*time.Second, 50*time.Millisecond, "bound:\n%s", e.logs)
			stop()

			// A binding forged with a key no Herald process holds.
			require.NoError(t, strangerBus(t, e).Producer(bus.TopicAlertIDs).Write(ctx,
				fanout.BindingMessage(record.Binding{ID: "op-rsids-forged", Digest: "sha256:forged", FannedOut: time.Now(), Offset: -1})))

			// The rotation: B first, A second.
			dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
			require.NoError(t, err)
			dataB, err := busauth.Generate()
			require.NoError(t, err)
			lineA, lineB := keyLine(t, dataA), keyLine(t, dataB)
			bBA := openWithKeys(t, e.cfg, keyFile(t, lineB, lineA))
			ids := bBA.Keyring().IDs()
			store := app.BindingStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
			scan, err := store.ScanBindings(ctx)
			require.NoError(t, err)
			assert.Equal(t, app.BindingUse{Keys: []app.KeyCount{{ID: ids[0]}, {ID: ids[1], Records: 1}}}, scan.Use(), "the binding, under A; the forged one counts nowhere")
			if resign {
				res, err := store.ResignBindings(ctx, "cli:test", scan)
				require.NoError(t, err)
				assert.Equal(t, app.ResignedBindings{Key: ids[0], Records: 1}, res)
				scan, err = store.ScanBindings(ctx)
				require.NoError(t, err)
				assert.Equal(t, app.BindingUse{Keys: []app.KeyCount{{ID: ids[0], Records: 1}, {ID: ids[1]}}}, scan.Use(), "A may go")
				res, err = store.ResignBindings(ctx, "cli:test", scan)
				require.NoError(t, err)
				assert.Equal(t, app.ResignedBindings{Key: ids[0]}, res, "a second run copies nothing")
				rs := records(old.ID)
				require.Len(t, rs, 2, "the binding and one copy")
				assert.Equal(t, rs[0].Value, rs[1].Value, "the same bytes")
				assert.Len(t, records("op-rsids-forged"), 1, "the forged binding is not copied")
			}

			// A removed, the topic compacted (a later binding on each
			// partition first: kfake never compacts a partition's last
			// batch), the alert's record and receipts aged out.
			onlyB := keyFile(t, lineB)
			bB := openWithKeys(t, e.cfg, onlyB)
			for p := range e.cfg.Kafka.Partitions {
				require.NoError(t, bB.Producer(bus.TopicAlertIDs).WriteToPartition(ctx, p,
					fanout.BindingMessage(record.Binding{ID: "op-rsids-later", Digest: "sha256:later", FannedOut: time.Now(), Offset: -1})))
			}
			e.cluster.Kfake().Compact()
			ageOut(t, e, bB)
			if resign {
				rs := records(old.ID)
				require.Len(t, rs, 1, "compaction keeps the copy alone")
				signer, err := bB.SignedBy(rs[0])
				require.NoError(t, err)
				assert.Equal(t, ids[0], signer)
			}

			// A fresh process under B alone: its view is rebuilt from Kafka.
			e.cfg.Publishing.KeyFile = onlyB
			base := "http://" + e.start(t, app.RoleFanout, app.RoleAPI).APIAddr()
			other := carWashAlert(old.ID)
			other.Title = "Another alert under a used id"
			posted := *other
			posted.IssuedBy, posted.IssuedAt = "", nil
			body, err := json.Marshal(&posted)
			require.NoError(t, err)
			code, resp := call(t, "POST", base+"/v1/alerts", analyst, string(body))
			if !resign {
				assert.Equal(t, http.StatusAccepted, code, "without the re-signing the id is forgotten: %s", resp)
				return
			}
			if assert.Equal(t, http.StatusConflict, code, "%s", resp) {
				var refused struct {
					Errors []alerts.FieldError `json:"errors"`
				}
				require.NoError(t, json.Unmarshal([]byte(resp), &refused), "%s", resp)
				require.Len(t, refused.Errors, 1, "%s", resp)
				assert.Equal(t, "id", refused.Errors[0].Field)
			}
			// Written straight to the alerts topic, it is quarantined
			// duplicate-id and fanned out to no one.
			publish(t, bB, other)
			require.Eventually(t, func() bool {
				reasons := quarantineReasons(t, bB, old.ID)
				return len(reasons) == 1 && reasons[0] == fanout.ReasonDuplicateID
			}, 30*time.Second, 50*time.Millisecond, "quarantined duplicate-id:\n%s", e.logs)
			known, err := ledger.FromBus(bB).Lookup(ctx, []string{old.ID})
			require.NoError(t, err)
			assert.Nil(t, known[old.ID], "nothing fanned out under the id again")
			assert.NotContains(t, e.logs.String(), "alert id binding written again", "a copy displaces nothing")
		})
	}
}

// TestResignCountsTheBindingCompactionKeeps: a binding under publishing key
// A, copied under B (first) by `herald keys resign --alert-ids`, then
// copied again under A (a process still signing with A, which reads B's
// copy as a record Herald did not write and writes the binding again).
// Compaction keeps the latest record under the id alone, A's copy, which B
// alone does not verify: the dry run counts the id under A, and a run
// copies it under B again, so that once A is removed and the topic
// compacted B verifies the binding that remains.
func TestResignCountsTheBindingCompactionKeeps(t *testing.T) {
	e := newServeEnv(t, nil)
	ctx := t.Context()
	dataA, err := busauth.Generate()
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	lineA, lineB := keyLine(t, dataA), keyLine(t, dataB)
	bA := openWithKeys(t, e.cfg, keyFile(t, lineA))
	bBA := openWithKeys(t, e.cfg, keyFile(t, lineB, lineA))
	bB := openWithKeys(t, e.cfg, keyFile(t, lineB))
	require.NoError(t, bBA.EnsureTopics(ctx, len(e.cfg.Delivery.RetrySchedule)))
	ids := bBA.Keyring().IDs()
	bd := record.Binding{ID: "op-rsids-late", Digest: "sha256:late", FannedOut: time.Now(), Offset: -1}
	require.NoError(t, bA.Producer(bus.TopicAlertIDs).Write(ctx, fanout.BindingMessage(bd)))

	store := app.BindingStore{Bus: bBA, Audit: app.AuditLog(bBA, time.Now)}
	scan, err := store.ScanBindings(ctx)
	require.NoError(t, err)
	res, err := store.ResignBindings(ctx, "cli:test", scan)
	require.NoError(t, err)
	require.Equal(t, 1, res.Records)
	require.NoError(t, bA.Producer(bus.TopicAlertIDs).Write(ctx, fanout.BindingMessage(bd)))

	scan, err = store.ScanBindings(ctx)
	require.NoError(t, err)
	assert.Equal(t, app.BindingUse{Keys: []app.KeyCount{{ID: ids[0]}, {ID: ids[1], Records: 1}}}, scan.Use(),
		"the latest record under the id, the one compaction keeps, is signed with A")
	res, err = store.ResignBindings(ctx, "cli:test", scan)
	require.NoError(t, err)
	assert.Equal(t, app.ResignedBindings{Key: ids[0], Records: 1}, res)
	scan, err = store.ScanBindings(ctx)
	require.NoError(t, err)
	assert.Equal(t, app.BindingUse{Keys: []app.KeyCount{{ID: ids[0], Records: 1}, {ID: ids[1]}}}, scan.Use(), "A may go")

	// A removed, the topic compacted (a later binding on each partition
	// first: kfake never compacts a partition's last batch).
	for p := range e.cfg.Kafka.Partitions {
		require.NoError(t, bB.Producer(bus.TopicAlertIDs).WriteToPartition(ctx, p,
			fanout.BindingMessage(record.Binding{ID: "op-rsids-later", Digest: "sha256:later", FannedOut: time.Now(), Offset: -1})))
	}
	e.cluster.Kfake().Compact()
	kept := alertIDRecords(t, bB, bd.ID)
	require.Len(t, kept, 1, "compaction keeps the latest record alone")
	signer, err := bB.SignedBy(kept[0])
	require.NoError(t, err, "B alone verifies the binding compaction kept")
	assert.Equal(t, ids[0], signer)
}
