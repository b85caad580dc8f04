package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/cli"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
)

// TestFollowUpOfAnAlertGoneFromTheAlertsTopic: an update of an alert whose
// record retention deleted from the alerts topic, while its receipts are
// still in receipts, reaches the fan-out (it was published in the window,
// or past a topic kept shorter than configured). A fan-out whose view was
// built after the record went can never trace its lineage: the update is
// quarantined as unknown-reference, naming the field and why, and the
// alerts after it on the same partition go out; the partition is not
// stuck waiting for a record that will never come.
func TestFollowUpOfAnAlertGoneFromTheAlertsTopic(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1 // the update and the alert after it share a partition
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()

	// The alert record is older than the alerts topic's retention (400
	// days); its receipts, written at fan-out, are not.
	_, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true})
	require.NoError(t, err, "%s", e.logs)
	old := carWashAlert("op-gone-1")
	v, err := json.Marshal(old)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(old.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
	delivered := func(id string) bool { return deliveredToAcme(ctx, b, id) }
	require.Eventually(t, func() bool { return delivered(old.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	stop()

	e.cluster.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicAlerts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 1
	}, 10*time.Second, 10*time.Millisecond)

	// A new process: its view is rebuilt from Kafka, without the record.
	e.start(t, app.RoleFanout, app.RoleDeliver)
	upd := carWashAlert("op-gone-upd")
	upd.Type, upd.References = alerts.TypeUpdate, []string{old.ID}
	publish(t, b, upd)
	publish(t, b, carWashAlert("op-after-1"))
	require.Eventually(t, func() bool { return delivered("op-after-1") }, 60*time.Second, 50*time.Millisecond,
		"the alert after the update goes out:\n%s", e.logs)

	reason, why := quarantined(t, b, upd.ID)
	assert.Equal(t, fanout.ReasonUnknownRef, reason)
	assert.Contains(t, why, "references[0]")
	assert.Contains(t, why, `alert "op-gone-1"'s record has left the alerts topic (retention)`)
	known, err := ledger.FromBus(b).Lookup(ctx, []string{upd.ID})
	require.NoError(t, err)
	assert.Nil(t, known[upd.ID], "the update was not fanned out")
}

// TestFollowUpOfAGoneAlertIsRefusedAtPublish: an update of an alert whose
// record retention deleted from the alerts topic is refused when the
// analyst publishes it, naming references[i] and why: the API answers 422
// (its view applied the record before it went, and answers as the topic
// does now), the CLI, which reads Kafka, exits 2. An update of an alert
// whose record is still there is accepted.
func TestFollowUpOfAGoneAlertIsRefusedAtPublish(t *testing.T) {
	e := newServeEnv(t, nil)
	const analyst = "hrld_analyst_gone_4f1a"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
	require.NoError(t, e.cfg.Validate())
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()
	base := "http://" + e.start(t, app.RoleFanout, app.RoleAPI).APIAddr()

	old := carWashAlert("op-gone-2")
	v, err := json.Marshal(old)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(old.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
	kept := carWashAlert("op-kept-2")
	publish(t, b, kept)
	require.Eventually(t, func() bool { return fannedOutOn(ctx, b, old.ID) && fannedOutOn(ctx, b, kept.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)

	e.cluster.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicAlerts)
		if err != nil {
			return false
		}
		for _, p := range offs[bus.TopicAlerts] {
			if p.Start > 0 {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)

	update := func(id, ref string) string {
		return `{"id": "` + id + `", "type": "update", "references": ["` + ref + `"], "title": "Car wash moved its workers",
			"severity": "severe", "tlp": "GREEN", "marking": "OFFICIAL", "handling": {"code": "P"}, "audience": {"sectors": ["car-washes"]}}`
	}
	const why = `alert "op-gone-2"'s record has left the alerts topic (retention); publish a new alert instead of an update`
	code, body := call(t, "POST", base+"/v1/alerts", analyst, update("op-upd-2", old.ID))
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", body)
	var refused struct {
		Errors []alerts.FieldError `json:"errors"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &refused), "%s", body)
	require.Len(t, refused.Errors, 1, "%s", body)
	assert.Equal(t, "references[0]", refused.Errors[0].Field)
	assert.Contains(t, refused.Errors[0].Message, why)

	code, body = call(t, "POST", base+"/v1/alerts", analyst, update("op-upd-3", kept.ID))
	require.Equal(t, http.StatusAccepted, code, "an update of an alert still held goes: %s", body)

	t.Setenv("HERALD_KAFKA_BROKERS", strings.Join(e.cluster.Addrs(), ","))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", e.cfg.Publishing.KeyFile)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	file := filepath.Join(t.TempDir(), "update.json")
	require.NoError(t, os.WriteFile(file, []byte(update("op-upd-4", old.ID)), 0o600))
	var out, errOut bytes.Buffer
	exit := cli.Execute(ctx, []string{"publish", file}, strings.NewReader(""), &out, &errOut)
	require.Equal(t, 2, exit, "%s%s", out.String(), errOut.String())
	assert.Contains(t, errOut.String(), "references[0]")
	assert.Contains(t, errOut.String(), why)
}

// TestFollowUpOfAnUntraceableChain: an update whose chain has more than
// the thousand alerts the fan-out traces (here: it updates an update of a
// thousand alerts) can never be traced, however often it is fetched: the
// fan-out quarantines it as unknown-reference, naming references[0] and
// why, and the alert after it on the same partition goes out. It used to
// fail the batch as if the view could not be read, for ever.
func TestFollowUpOfAnUntraceableChain(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1 // the update and the alert after it share a partition
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()
	e.start(t, app.RoleFanout, app.RoleDeliver)

	// A thousand alerts for a sector no partner is in, and an update of
	// them all: its chain is the thousand, as many as is traced.
	var msgs []kafka.Message
	wide := carWashAlert("op-wide-upd")
	wide.Type = alerts.TypeUpdate
	for i := range 1000 {
		a := carWashAlert(fmt.Sprintf("op-many-%04d", i))
		a.Audience.Sectors = []string{"care"}
		v, err := json.Marshal(a)
		require.NoError(t, err)
		msgs = append(msgs, kafka.Message{Key: []byte(a.ID), Value: v})
		wide.References = append(wide.References, a.ID)
	}
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, msgs...))
	publish(t, b, wide)
	require.Eventually(t, func() bool { return fannedOutOn(ctx, b, wide.ID) }, 120*time.Second, 50*time.Millisecond, "%s", e.logs)

	upd := carWashAlert("op-long-upd")
	upd.Type, upd.References = alerts.TypeUpdate, []string{wide.ID}
	publish(t, b, upd)
	publish(t, b, carWashAlert("op-after-2"))
	require.Eventually(t, func() bool { return deliveredToAcme(ctx, b, "op-after-2") }, 60*time.Second, 50*time.Millisecond, "the alert after the update goes out:\n%s", e.logs)

	reason, why := quarantined(t, b, upd.ID)
	assert.Equal(t, fanout.ReasonUnknownRef, reason)
	assert.Contains(t, why, "references[0]")
	assert.Contains(t, why, `the chain of alert "op-wide-upd" cannot be traced: it has more than 1000 alerts`)
	assert.False(t, fannedOutOn(ctx, b, upd.ID), "the update was not fanned out")
}

// TestCLIFollowUpOfAConflictingSurvivor: retention deleted an alert's
// record while a later record under its id with other content (the
// fan-out quarantined it duplicate-id) survived. The CLI, which reads
// Kafka, judges an update of the alert, or of an update of it, against
// the alert that was fanned out, as the view does: its record is gone,
// exit 2 naming references[0]; it used to take the survivor for the
// alert and publish.
func TestCLIFollowUpOfAConflictingSurvivor(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.Kafka.Partitions = 1
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	ctx := t.Context()
	e.start(t, app.RoleFanout)

	orig := carWashAlert("op-twice-1")
	v, err := json.Marshal(orig)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(ctx, kafka.Message{Key: []byte(orig.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}))
	require.Eventually(t, func() bool { return fannedOutOn(ctx, b, orig.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	upd := carWashAlert("op-twice-upd")
	upd.Type, upd.References = alerts.TypeUpdate, []string{orig.ID}
	publish(t, b, upd)
	require.Eventually(t, func() bool { return fannedOutOn(ctx, b, upd.ID) }, 60*time.Second, 50*time.Millisecond, "%s", e.logs)
	other := carWashAlert(orig.ID)
	other.Title = "Another alert under its id"
	publish(t, b, other)
	require.Eventually(t, func() bool {
		return slices.Contains(quarantineReasons(t, b, orig.ID), fanout.ReasonDuplicateID)
	}, 60*time.Second, 50*time.Millisecond, "%s", e.logs)

	e.cluster.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(ctx, bus.TopicAlerts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 1
	}, 10*time.Second, 10*time.Millisecond)

	t.Setenv("HERALD_KAFKA_BROKERS", strings.Join(e.cluster.Addrs(), ","))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", e.cfg.Publishing.KeyFile)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for _, tc := range []struct{ id, ref, why string }{
		{"op-twice-upd2", orig.ID, `alert "op-twice-1"'s record has left the alerts topic (retention)`},
		{"op-twice-upd3", upd.ID, `the chain of alert "op-twice-upd" reaches alert "op-twice-1", whose record has left the alerts topic (retention)`},
	} {
		file := filepath.Join(t.TempDir(), "update.json")
		require.NoError(t, os.WriteFile(file, []byte(`{"id": "`+tc.id+`", "type": "update", "references": ["`+tc.ref+`"], "title": "Car wash moved its workers",
			"severity": "severe", "tlp": "GREEN", "marking": "OFFICIAL", "handling": {"code": "P"}, "audience": {"sectors": ["car-washes"]}}`), 0o600))
		var out, errOut bytes.Buffer
		exit := cli.Execute(ctx, []string{"publish", file}, strings.NewReader(""), &out, &errOut)
		assert.Equal(t, 2, exit, "update of %s: %s%s", tc.ref, out.String(), errOut.String())
		assert.Contains(t, errOut.String(), "references[0]")
		assert.Contains(t, errOut.String(), tc.why)
	}
}

// deliveredToAcme reports whether the ledger on b shows the alert id
// delivered to acme's one address (acmeCarWash).
func deliveredToAcme(ctx context.Context, b *bus.Bus, id string) bool {
	known, err := ledger.FromBus(b).Lookup(ctx, []string{id})
	if err != nil || known[id] == nil {
		return false
	}
	e, ok := known[id].Entry("acme", "soc@acme.example")
	return ok && e.State == delivery.StateDelivered
}

// fannedOutOn reports whether the ledger on b shows the alert id fanned
// out.
func fannedOutOn(ctx context.Context, b *bus.Bus, id string) bool {
	known, err := ledger.FromBus(b).Lookup(ctx, []string{id})
	return err == nil && known[id] != nil && !known[id].FannedOut.IsZero()
}

// quarantined returns the reason and error headers of the last record
// under id on b's quarantine topic, or empty strings if there is none.
func quarantined(t *testing.T, b *bus.Bus, id string) (reason, why string) {
	t.Helper()
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicQuarantine, func(m kafka.Message) error {
		if string(m.Key) == id {
			reason, why = bus.Header(m, "reason"), bus.Header(m, "error")
		}
		return nil
	}))
	return reason, why
}

// quarantineReasons returns the reason headers of the records under id
// on b's quarantine topic, in order.
func quarantineReasons(t *testing.T, b *bus.Bus, id string) []string {
	t.Helper()
	var reasons []string
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicQuarantine, func(m kafka.Message) error {
		if string(m.Key) == id {
			reasons = append(reasons, bus.Header(m, "reason"))
		}
		return nil
	}))
	return reasons
}
