package app_test

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
)

// TestHistorySurvivesARetiredKey: an alert fanned out and delivered under
// publishing key A; the key rotated (B first) and A retired (`herald keys
// retire`), not removed; a fresh process, its view rebuilt for the
// changed keys, still says who got the alert and its title, TLP and
// issuer. An alert A signs after the retirement is quarantined as
// unattributed, naming the retirement. With A removed instead (the
// rotation before retirement existed), the same status loses the
// recipients and the title.
func TestHistorySurvivesARetiredKey(t *testing.T) {
	e := newServeEnv(t, nil)
	e.cfg.View.Dir = t.TempDir() // kept from one process to the next
	const analyst = "hrld_analyst_retire_5e21"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}
	ctx := t.Context()

	bA := e.cluster.Open(t, e.cfg.Kafka) // signs with A, the key of e's file
	register(t, bA, acmeCarWash())
	_, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true})
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	publish(t, bA, carWashAlert("before"))
	require.Eventually(t, func() bool { return deliveredToAcme(ctx, bA, "before") }, 60*time.Second, 50*time.Millisecond, "delivered under A:\n%s", e.logs)
	stop()

	// The rotation: B first, A second; then A retired.
	dataA, err := os.ReadFile(e.cfg.Publishing.KeyFile)
	require.NoError(t, err)
	dataB, err := busauth.Generate()
	require.NoError(t, err)
	keys := keyFile(t, keyLine(t, dataB), keyLine(t, dataA))
	onlyB := keyFile(t, keyLine(t, dataB))
	e.cfg.Publishing.KeyFile = keys
	// Every process stopped: nothing signs with A any more, though it
	// signed moments ago (the check of late records is forced past).
	res, err := app.RetireKeys(ctx, openWithKeys(t, e.cfg, keys), &e.cfg, app.RetireOptions{Force: true, Since: 10 * time.Minute})
	require.NoError(t, err)
	require.True(t, res.Changed)
	assert.NotEmpty(t, res.Late, "A signed moments ago, and B nothing yet")
	require.Len(t, res.Keys, 1)
	assert.False(t, res.Keys[0].Already)
	assert.Len(t, res.Keys[0].Cutoffs[bus.TopicReceipts], e.cfg.Kafka.Partitions, "every partition of every topic")
	st, err := os.Stat(keys)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	// A signs an alert after the retirement.
	publish(t, bA, carWashAlert("forged-after"))

	h, stop, err := e.serve(t, app.Options{Roles: []string{app.RoleFanout, app.RoleAPI}, Explicit: true})
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	base := "http://" + h.APIAddr()
	status := func(t require.TestingT, id string) (api.AlertStatus, api.Deliveries) {
		var st api.AlertStatus
		code, body := call(t, "GET", base+"/v1/alerts/"+id, analyst, "")
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		var ds api.Deliveries
		code, body = call(t, "GET", base+"/v1/alerts/"+id+"/deliveries", analyst, "")
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &ds))
		return st, ds
	}
	st0, ds := status(t, "before")
	assert.Equal(t, carWashAlert("").Title, st0.Title, "the title, from the alert A signed")
	assert.Equal(t, alerts.TLPGreen, st0.TLP)
	assert.Equal(t, "api:alice", st0.IssuedBy)
	require.Len(t, ds.Deliveries, 1, "who got it, from the receipts A signed")
	assert.Equal(t, "acme", ds.Deliveries[0].Subscriber)

	bRetired := openWithKeys(t, e.cfg, keys)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		reason, why := quarantined(t, bRetired, "forged-after")
		assert.Equal(c, "unattributed", reason)
		assert.Contains(c, why, busauth.ErrRetiredKey.Error())
	}, 60*time.Second, 50*time.Millisecond, "the forgery quarantined:\n%s", e.logs)
	assert.Contains(t, e.logs.String(), "signed with a key retired before this record was written")
	assert.Equal(t, 1, e.sink.Count(), "acme got the alert before the rotation, and nothing since")

	// The before: A removed instead of retired. The same process's view,
	// rebuilt for the keys, has lost who got the alert.
	stop()
	e.cfg.Publishing.KeyFile = onlyB
	base = "http://" + e.start(t, app.RoleAPI).APIAddr()
	code, body := call(t, "GET", base+"/v1/alerts/before/deliveries", analyst, "")
	if code == http.StatusOK {
		var ds api.Deliveries
		require.NoError(t, json.Unmarshal([]byte(body), &ds))
		assert.Empty(t, ds.Deliveries, "with A removed, who got the alert is lost")
	} else {
		assert.Equal(t, http.StatusNotFound, code, body)
	}
}
