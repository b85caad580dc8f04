package taxii_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestAlertGoneBeforeItsReceipts: an alert whose record has left the
// alerts topic (retention) while its receipts are still in receipts is
// left out of the partner's collection; the rest is served, by the view
// kept live and by a view rebuilt from Kafka alike.
func TestAlertGoneBeforeItsReceipts(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	e := newEnvOn(t, c.Open(t, c.Config()))

	// The alert record is older than the alerts topic's retention (400
	// days); its receipts, written at fan-out, are not.
	old := alert("rt-001", nil)
	e.fanOutAged(old)
	e.publish(alert("rt-002", nil))
	require.Equal(t, []string{"rt-001", "rt-002"}, alertsIn(first(t, e)))
	// An update of it: its lineage names the alert whose record goes.
	e.publish(alert("rt-003", func(a *alerts.Alert) {
		a.Type, a.References = alerts.TypeUpdate, []string{"rt-001"}
	}))
	require.Equal(t, []string{"rt-002", "rt-003"}, alertsIn(first(t, e)))

	fresh := e.rebuiltAfterRetention(c)
	r := fresh.objects(bankToken, "bank", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, []string{"rt-002"}, alertsIn(list(r.json(t)["objects"])), "the alert whose record is gone is left out, and the update whose chain reaches it")

	e.synced()
	require.Equal(t, []string{"rt-002"}, alertsIn(first(t, e)), "the live view answers as the rebuilt one")
}

// TestConflictingSurvivorIsNotTheAlert: when retention deletes an alert's
// record while a later record under its id with other content (which the
// fan-out refused as duplicate-id) survives, a view rebuilt from Kafka
// finds the survivor first; the receipts say what was fanned out (the
// alert receipt's digest), so the partner that received the first is
// never served the other content as that alert: the alert is gone.
func TestConflictingSurvivorIsNotTheAlert(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	e := newEnvOn(t, c.Open(t, c.Config()))

	orig := alert("rt-010", nil)
	e.fanOutAged(orig)
	// Another alert under the same id, written later: a conflict, which
	// the fan-out refuses (quarantined as duplicate-id).
	e.publish(alert("rt-010", func(a *alerts.Alert) {
		a.Title = "Other content under a used id"
		a.Indicators = []alerts.Indicator{{Type: "email", Value: "someone-else@innocent.example", Context: "not the alert"}}
	}))
	e.publish(alert("rt-011", nil))
	require.Equal(t, []string{"rt-010", "rt-011"}, alertsIn(first(t, e)))

	fresh := e.rebuiltAfterRetention(c)
	r := fresh.objects(bankToken, "bank", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.NotContains(t, string(r.body), "innocent.example", "the conflicting record is never served as the alert the partner received")
	require.Equal(t, []string{"rt-011"}, alertsIn(list(r.json(t)["objects"])), "the alert whose record is gone is left out")

	e.synced()
	require.Equal(t, []string{"rt-011"}, alertsIn(first(t, e)), "the live view answers as the rebuilt one")
}
