package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/record"
)

// TestAForgedAlertIDRecordUnbindsNothing: a record written under a bound
// id on alert-ids by a client that is not Herald (a tombstone with no
// herald-auth, from a plain Kafka client; a binding to another alert,
// signed with another publishing key) is ignored by every reader, but
// compaction keeps only the latest record under a key. The fan-out writes
// the binding again after it, byte for byte: while it runs (the first),
// and at its next start, its view rebuilt from the topic (the second,
// written while no fan-out ran). Each is logged once. Once the alert's
// record and receipts are gone and alert-ids is compacted, a fresh process
// still knows both ids: the API refuses another alert under the first
// (409), and the fan-out quarantines another alert under the second as
// duplicate-id, which reaches no one.
func TestAForgedAlertIDRecordUnbindsNothing(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1 // one partition of alert-ids, which a later binding keeps from being its last batch
	const analyst = "hrld_analyst_heal_4b1d"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
	require.NoError(t, e.cfg.Validate())
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()

	delivered := func(id string) bool { return deliveredToAcme(ctx, b, id) }
	records := func(id string) []kafka.Message { return alertIDRecords(t, b, id) }
	// healed reports whether the latest record under id is a copy of its
	// first, authentic, and follows a record that is not.
	healed := func(id string) bool {
		rs := records(id)
		if len(rs) < 3 {
			return false
		}
		last := rs[len(rs)-1]
		return b.Authenticate(rs[0]) == nil && b.Authenticate(last) == nil && bytes.Equal(rs[0].Value, last.Value)
	}

	h, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver, app.RoleAPI}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	first, second := carWashAlert("op-heal-1"), carWashAlert("op-heal-2")
	for _, a := range []*alerts.Alert{first, second} {
		v, err := json.Marshal(a)
		require.NoError(t, err)
		require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(a.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
	}
	require.Eventually(t, func() bool { return delivered(first.ID) && delivered(second.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	require.Eventually(t, func() bool { return len(records(first.ID)) == 1 && len(records(second.ID)) == 1 }, 10*time.Second, 10*time.Millisecond, "%s", e.logs)

	// A tombstone under the first id, from a plain Kafka client, while
	// the fan-out runs.
	rawTombstone(t, e, b, first.ID)
	require.Eventually(t, func() bool { return healed(first.ID) }, 30*time.Second, 20*time.Millisecond, "the binding written again:\n%s", e.logs)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := call(c, "GET", "http://"+h.APIAddr()+"/metrics", "", "")
		require.Equal(c, http.StatusOK, code, body)
		assert.Contains(c, body, "herald_fanout_bindings_rewritten_total 1")
	}, 10*time.Second, 20*time.Millisecond, "counted")
	stop()

	// A binding of the second id to another alert, signed with another
	// publishing key, while no fan-out runs; the next one rebuilds its
	// view from the topic (the binding, then that record).
	other := carWashAlert(second.ID)
	other.Title = "Another alert under a used id"
	require.NoError(t, strangerBus(t, e).Producer(bus.TopicAlertIDs).Write(ctx,
		fanout.BindingMessage(record.Binding{ID: second.ID, Digest: other.Digest(), FannedOut: time.Now(), Offset: -1})))
	_, stop, err = e.serve(t, app.Options{Roles: []string{app.RoleFanout}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	require.Eventually(t, func() bool { return healed(second.ID) }, 30*time.Second, 20*time.Millisecond, "the binding written again:\n%s", e.logs)
	stop()
	for _, id := range []string{first.ID, second.ID} {
		assert.Equal(t, 3, len(records(id)), "%s: the binding, the forged record, one copy", id)
	}
	for _, id := range []string{first.ID, second.ID} {
		n := 0
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, "alert id binding written again") && strings.Contains(line, "alert="+id+" ") {
				assert.Contains(t, line, "level=WARN")
				n++
			}
		}
		assert.Equal(t, 1, n, "%s: logged once", id)
	}

	// The alerts' records and receipts leave their topics; alert-ids is
	// compacted (a later binding on its partition first: kfake never
	// compacts a partition's last batch).
	ageOut(t, e, b)
	require.NoError(t, b.Producer(bus.TopicAlertIDs).Write(ctx,
		fanout.BindingMessage(record.Binding{ID: "op-heal-later", Digest: "sha256:later", FannedOut: time.Now(), Offset: -1})))
	e.cluster.Kfake().Compact()
	require.Eventually(t, func() bool { return len(records(first.ID)) == 1 && len(records(second.ID)) == 1 }, 10*time.Second, 10*time.Millisecond, "compacted")

	// A fresh process, its view rebuilt from what compaction left.
	base := "http://" + e.start(t, app.RoleFanout, app.RoleDeliver, app.RoleAPI).APIAddr()
	again := carWashAlert(first.ID)
	again.Title = "Another alert under a used id"
	again.IssuedBy, again.IssuedAt = "", nil
	body, err := json.Marshal(again)
	require.NoError(t, err)
	code, resp := call(t, "POST", base+"/v1/alerts", analyst, string(body))
	assert.Equal(t, http.StatusConflict, code, "%s", resp)

	publish(t, b, other)
	publish(t, b, carWashAlert("op-heal-after"))
	require.Eventually(t, func() bool { return delivered("op-heal-after") }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	assert.Equal(t, []string{fanout.ReasonDuplicateID}, quarantineReasons(t, b, second.ID))
	assert.Equal(t, 3, e.sink.Count(), "the two alerts once each, and the alert after: nothing under a used id again")
}

// TestAKeptViewHealsAfterCompaction: a fan-out whose view is kept
// (view.dir) reads at its next start a record written under a bound id
// while it was stopped, even once compaction has erased the binding, and
// writes the binding again: the id stays bound for a view rebuilt later.
func TestAKeptViewHealsAfterCompaction(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1 // one partition of alert-ids, which a later binding keeps from being its last batch
	e.cfg.View.Dir = t.TempDir()
	require.NoError(t, e.cfg.Validate())
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()
	records := func(id string) []kafka.Message { return alertIDRecords(t, b, id) }

	_, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	a := carWashAlert("op-heal-kept")
	publish(t, b, a)
	require.Eventually(t, func() bool { return len(records(a.ID)) == 1 }, 30*time.Second, 20*time.Millisecond, "bound:\n%s", e.logs)
	binding := records(a.ID)[0]
	stop()

	// While no fan-out runs: a tombstone from a plain Kafka client, a
	// later binding, and a compaction that keeps the tombstone alone.
	rawTombstone(t, e, b, a.ID)
	require.NoError(t, b.Producer(bus.TopicAlertIDs).Write(ctx,
		fanout.BindingMessage(record.Binding{ID: "op-heal-later", Digest: "sha256:later", FannedOut: time.Now(), Offset: -1})))
	e.cluster.Kfake().Compact()
	require.Eventually(t, func() bool {
		rs := records(a.ID)
		return len(rs) == 1 && b.Authenticate(rs[0]) != nil
	}, 10*time.Second, 10*time.Millisecond, "the binding compacted away")

	// The fan-out starts again with its kept view.
	_, stop, err = e.serve(t, app.Options{Roles: []string{app.RoleFanout}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	defer stop()
	require.Eventually(t, func() bool {
		rs := records(a.ID)
		last := rs[len(rs)-1]
		return b.Authenticate(last) == nil && bytes.Equal(binding.Value, last.Value)
	}, 30*time.Second, 20*time.Millisecond, "the binding written again:\n%s", e.logs)
}

// rawTombstone writes a tombstone under id on b's alert-ids topic from a
// plain Kafka client, with no herald-auth.
func rawTombstone(t *testing.T, e *serveEnv, b *bus.Bus, id string) {
	t.Helper()
	raw := &kafka.Writer{Addr: kafka.TCP(e.cluster.Addrs()...), Topic: b.Topic(bus.TopicAlertIDs), Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	defer func() { _ = raw.Close() }()
	require.NoError(t, raw.WriteMessages(t.Context(), kafka.Message{Key: []byte(id)}))
}
