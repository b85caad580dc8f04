package app_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	"github.com/herald-alerts/herald/internal/cli"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// ageOut deletes every record of the alerts and receipts topics, as
// retention does once they are older than kafka.retention.*: the alert
// records by their timestamps (the test writes them in the past), the
// receipts (which the fan-out writes now) by shortening the topic's
// retention for the moment of ApplyRetention and setting it back, so
// that the roles' start checks find it as configured.
func ageOut(t *testing.T, e *serveEnv, b *bus.Bus) {
	t.Helper()
	ctx := t.Context()
	admin := &kafka.Client{Addr: kafka.TCP(e.cluster.Addrs()...), Timeout: 10 * time.Second}
	retention := func(ms int64) {
		res, err := admin.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: b.Topic(bus.TopicReceipts),
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "retention.ms", Value: strconv.FormatInt(ms, 10), ConfigOperation: kafka.ConfigOperationSet}},
		}}})
		require.NoError(t, err)
		for _, r := range res.Resources {
			require.NoError(t, r.Error)
		}
	}
	retention(1) // every receipt is older than a millisecond by now
	e.cluster.Kfake().ApplyRetention()
	retention(e.cfg.Kafka.Retention.Receipts.Milliseconds())
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicAlerts, bus.TopicReceipts)
		if err != nil {
			return false
		}
		for _, t := range []string{bus.TopicAlerts, bus.TopicReceipts} {
			for _, p := range offs[t] {
				if p.Start != p.End {
					return false
				}
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "the alerts and receipts topics hold nothing")
}

// alertIDRecords returns the records of b's alert-ids topic under id, in
// order, authentic or not.
func alertIDRecords(t *testing.T, b *bus.Bus, id string) []kafka.Message {
	t.Helper()
	var out []kafka.Message
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicAlertIDs, func(m kafka.Message) error {
		if string(m.Key) == id {
			out = append(out, m)
		}
		return nil
	}))
	return out
}

// strangerBus opens a bus on e's cluster whose keyring holds one key no
// Herald process holds: what it writes, Herald did not write.
func strangerBus(t *testing.T, e *serveEnv) *bus.Bus {
	t.Helper()
	secret := make([]byte, busauth.KeySize)
	secret[0] = 7
	keys, err := busauth.New(secret)
	require.NoError(t, err)
	return e.cluster.OpenWith(t, e.cfg.Kafka, bus.Options{Keyring: keys, Log: kafkatest.Logger(t, slog.LevelError)})
}

// TestAnIDNamesOneAlertAfterRetention: once an alert's record and its
// receipts have left the alerts and receipts topics, its id is still
// bound to it (the alert-ids topic). In a fresh process (its view rebuilt
// from Kafka), a different alert under the id is refused by the API (409
// naming id) and by the CLI (exit 2), and, written straight to the alerts
// topic by a Herald producer, is quarantined by the fan-out as
// duplicate-id and reaches no one: its delivery ids would be the old
// alert's, which receivers drop. The identical alert published again is
// a no-op: nothing is delivered twice.
func TestAnIDNamesOneAlertAfterRetention(t *testing.T) {
	e := newServeEnv(t, nil)
	const analyst = "hrld_analyst_ids_7c2e"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
	require.NoError(t, e.cfg.Validate())
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()

	delivered := func(id string) bool { return deliveredToAcme(ctx, b, id) }
	_, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	old := carWashAlert("op-ids-1")
	v, err := json.Marshal(old)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(old.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
	require.Eventually(t, func() bool { return delivered(old.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	require.Equal(t, 1, e.sink.Count())
	stop()
	ageOut(t, e, b)

	// A fresh process: its view is rebuilt from Kafka, which holds
	// nothing of the alert but its binding.
	base := "http://" + e.start(t, app.RoleFanout, app.RoleDeliver, app.RoleAPI).APIAddr()
	body := func(a *alerts.Alert) string {
		c := *a
		c.IssuedBy, c.IssuedAt = "", nil
		v, err := json.Marshal(&c)
		require.NoError(t, err)
		return string(v)
	}
	other := carWashAlert(old.ID)
	other.Title = "Another alert under a used id"

	code, resp := call(t, "POST", base+"/v1/alerts", analyst, body(other))
	if assert.Equal(t, http.StatusConflict, code, "%s", resp) {
		var refused struct {
			Errors []alerts.FieldError `json:"errors"`
		}
		require.NoError(t, json.Unmarshal([]byte(resp), &refused), "%s", resp)
		require.Len(t, refused.Errors, 1, "%s", resp)
		assert.Equal(t, "id", refused.Errors[0].Field)
	}

	code, resp = call(t, "POST", base+"/v1/alerts", analyst, body(old))
	assert.Equal(t, http.StatusAccepted, code, "the identical alert: a no-op answering its id: %s", resp)
	var same struct {
		Unchanged bool `json:"unchanged"`
	}
	require.NoError(t, json.Unmarshal([]byte(resp), &same), "%s", resp)
	assert.True(t, same.Unchanged, "%s", resp)

	t.Setenv("HERALD_KAFKA_BROKERS", strings.Join(e.cluster.Addrs(), ","))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", e.cfg.Publishing.KeyFile)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "other.json")
	require.NoError(t, os.WriteFile(file, []byte(body(other)), 0o600))
	var out, errOut bytes.Buffer
	exit := cli.Execute(ctx, []string{"publish", file}, strings.NewReader(""), &out, &errOut)
	assert.Equal(t, 2, exit, "%s%s", out.String(), errOut.String())
	assert.Contains(t, errOut.String(), "id: ")
	assert.Contains(t, errOut.String(), "an id names one alert forever")
	out.Reset()
	errOut.Reset()
	exit = cli.Execute(ctx, []string{"status", old.ID}, strings.NewReader(""), &out, &errOut)
	assert.Equal(t, 0, exit, "%s%s", out.String(), errOut.String())
	assert.Contains(t, out.String(), "was fanned out at", "status says what the binding knows")
	assert.Contains(t, out.String(), "receipts have left the receipts topic (retention)")

	// Straight to the alerts topic, as Herald's publishers write: the
	// different alert is quarantined, the identical one is a no-op, and
	// the alert after them goes out.
	publish(t, b, other)
	publish(t, b, old)
	publish(t, b, carWashAlert("op-ids-after"))
	require.Eventually(t, func() bool { return delivered("op-ids-after") }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)

	assert.Equal(t, []string{fanout.ReasonDuplicateID}, quarantineReasons(t, b, old.ID), "the different alert, once; the identical one is not refused")
	known, err := ledger.FromBus(b).Lookup(ctx, []string{old.ID})
	require.NoError(t, err)
	assert.Nil(t, known[old.ID], "nothing was fanned out under the id again")
	assert.Equal(t, 2, e.sink.Count(), "the old alert once, and the alert after: nothing under the used id again")
}

// TestBindingsAreBackfilled: alerts fanned out with no binding (before
// Herald kept bindings, or by a fan-out stopped between the alert receipt
// and the binding) get one when a fan-out starts, once its view has
// caught up, with the digest and time of their alert receipt; the count
// is logged. A binding not written by Herald (a forged herald-auth) binds
// nothing: the alert it names is still backfilled with its own digest.
func TestBindingsAreBackfilled(t *testing.T) {
	e := newServeEnv(t, nil)
	b := e.cluster.Open(t, e.cfg.Kafka)
	ctx := t.Context()
	bindings := func() map[string]record.Binding {
		out := map[string]record.Binding{}
		require.NoError(t, b.ReadAll(ctx, bus.TopicAlertIDs, func(m kafka.Message) error {
			if b.Authentic(m) {
				bd, err := record.DecodeBinding(m.Key, m.Value)
				require.NoError(t, err)
				out[bd.ID] = *bd
			}
			return nil
		}))
		return out
	}

	// The receipts a fan-out writes, without the binding.
	a1, a2 := carWashAlert("op-bind-1"), carWashAlert("op-bind-2")
	at := time.Now().UTC().Truncate(time.Millisecond)
	for _, a := range []*alerts.Alert{a1, a2} {
		require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert,
			AlertID: a.ID, At: at, Type: a.Type, TLP: a.TLP, Marking: a.Marking, IssuedBy: a.IssuedBy, Title: a.Title, Digest: a.Digest()})))
	}
	require.NoError(t, strangerBus(t, e).Producer(bus.TopicAlertIDs).Write(ctx,
		fanout.BindingMessage(record.Binding{ID: a1.ID, Digest: "sha256:forged", FannedOut: at, Offset: -1})))
	require.Empty(t, bindings())

	every := *app.BindingsEvery
	t.Cleanup(func() { *app.BindingsEvery = every })
	*app.BindingsEvery = 100 * time.Millisecond
	e.start(t, app.RoleFanout)
	require.Eventually(t, func() bool { return len(bindings()) == 2 }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	got := bindings()
	for _, a := range []*alerts.Alert{a1, a2} {
		assert.Equal(t, a.Digest(), got[a.ID].Digest, a.ID)
		assert.True(t, at.Equal(got[a.ID].FannedOut), a.ID)
		assert.EqualValues(t, -1, got[a.ID].Offset, "the view holds no record of %s", a.ID)
	}
	require.Eventually(t, func() bool { return strings.Contains(e.logs.String(), "alert id bindings backfilled") }, 10*time.Second, 10*time.Millisecond)
	assert.Contains(t, e.logs.String(), "written=2")

	// An alert fanned out without a binding while the process runs (by a
	// fan-out of an older release, during a rolling upgrade) is bound at
	// the next pass, without a restart.
	a3 := carWashAlert("op-bind-3")
	require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert,
		AlertID: a3.ID, At: at, Type: a3.Type, TLP: a3.TLP, Marking: a3.Marking, IssuedBy: a3.IssuedBy, Title: a3.Title, Digest: a3.Digest()})))
	require.Eventually(t, func() bool { return bindings()[a3.ID].Digest == a3.Digest() }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
}

// TestCLIFollowUpOfAnAlertKnownByItsBinding: the CLI judges references
// against the bindings as the view does (publish.KafkaIndex.Lookup). An
// alert whose alert receipt left the receipts topic is known by its
// binding: an update of it while its record is still on the alerts topic
// is published (it was refused as "not known to Herald", where the api
// accepts it); once its record is gone too, with a later record under its
// id (quarantined duplicate-id) surviving, an update of an update of it
// is refused naming references[0] (the CLI took the survivor for the
// alert, published, and the fan-out quarantined the update), and an
// update of it says its record left the alerts topic.
func TestCLIFollowUpOfAnAlertKnownByItsBinding(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1 // the oldest records of each topic are the ones aged
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()

	// Two alerts fanned out long ago, as their records and alert receipts
	// say; the fan-out's start binds them (the backfill). The record of
	// kept is younger than its receipt: the alerts topic keeps records
	// longer than the receipts topic here.
	old := time.Now().Add(-500 * 24 * time.Hour)
	orig, kept := carWashAlert("op-bound-1"), carWashAlert("op-bound-2")
	for _, a := range []*alerts.Alert{orig, kept} {
		at := old
		if a == kept {
			at = time.Now()
		}
		v, err := json.Marshal(a)
		require.NoError(t, err)
		require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(a.ID), Value: v, Time: at}))
		m := fanout.ReceiptMessage(delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, At: old.UTC(), Type: a.Type, TLP: a.TLP,
			Marking: a.Marking, IssuedBy: a.IssuedBy, Title: a.Title, Digest: a.Digest()})
		m.Time = old
		require.NoError(t, b.Producer(bus.TopicReceipts).Write(ctx, m))
	}
	e.start(t, app.RoleFanout)
	bound := func(id string) bool { return len(alertIDRecords(t, b, id)) > 0 }
	require.Eventually(t, func() bool { return bound(orig.ID) && bound(kept.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)

	upd := carWashAlert("op-bound-upd")
	upd.Type, upd.References = alerts.TypeUpdate, []string{orig.ID}
	publish(t, b, upd)
	require.Eventually(t, func() bool { return bound(upd.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	other := carWashAlert(orig.ID)
	other.Title = "Another alert under its id"
	publish(t, b, other)
	require.Eventually(t, func() bool {
		return slices.Contains(quarantineReasons(t, b, orig.ID), fanout.ReasonDuplicateID)
	}, 60*time.Second, 50*time.Millisecond, "%s", e.logs)

	e.cluster.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicAlerts, bus.TopicReceipts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 1 && offs[bus.TopicReceipts][0].Start == 2
	}, 10*time.Second, 10*time.Millisecond, "the record of orig and the alert receipts of orig and kept are gone")

	t.Setenv("HERALD_KAFKA_BROKERS", strings.Join(e.cluster.Addrs(), ","))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", e.cfg.Publishing.KeyFile)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, tc := range []struct {
		id, ref string
		exit    int
		why     string
	}{
		{"op-bound-upd2", kept.ID, 0, ""},
		{"op-bound-upd3", orig.ID, 2, `alert "op-bound-1"'s record has left the alerts topic (retention)`},
		{"op-bound-upd4", upd.ID, 2, `the chain of alert "op-bound-upd" reaches alert "op-bound-1", whose record has left the alerts topic (retention)`},
	} {
		file := filepath.Join(t.TempDir(), "update.json")
		require.NoError(t, os.WriteFile(file, []byte(`{"id": "`+tc.id+`", "type": "update", "references": ["`+tc.ref+`"], "title": "Car wash moved its workers",
			"severity": "severe", "tlp": "GREEN", "marking": "OFFICIAL", "handling": {"code": "P"}, "audience": {"sectors": ["car-washes"]}}`), 0o600))
		var out, errOut bytes.Buffer
		exit := cli.Execute(ctx, []string{"publish", file}, strings.NewReader(""), &out, &errOut)
		assert.Equal(t, tc.exit, exit, "update of %s: %s%s", tc.ref, out.String(), errOut.String())
		if tc.why != "" {
			assert.Contains(t, errOut.String(), "references[0]")
			assert.Contains(t, errOut.String(), tc.why)
		}
	}
}
