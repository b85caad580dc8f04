package api_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
)

// fanOut returns a function that runs the fan-out, configured with
// release.second_analyst's default, over what the alerts topic holds that
// it has not handled yet, as the fanout role would: it writes receipts and
// jobs, or quarantines; then it waits for the view.
func (e *env) fanOut(t *testing.T) func() {
	w := &fanout.Worker{
		Registry: e.reg, Policy: policy.Options{}, SecondAnalyst: config.Default().Release.SecondAnalyst,
		Deliveries: e.bus.Producer(bus.TopicDeliveries), Receipts: e.bus.Producer(bus.TopicReceipts),
		Quarantine: e.bus.Producer(bus.TopicQuarantine), History: ledger.FromBus(e.bus), Authenticate: e.bus.Authenticate,
		Now: func() time.Time { return testNow }, Log: slog.New(slog.DiscardHandler),
	}
	handled := map[[2]int64]bool{}
	return func() {
		t.Helper()
		var msgs []kafka.Message
		require.NoError(t, e.bus.ReadAll(t.Context(), bus.TopicAlerts, func(m kafka.Message) error {
			if at := [2]int64{int64(m.Partition), m.Offset}; !handled[at] {
				handled[at] = true
				msgs = append(msgs, m)
			}
			return nil
		}))
		require.NoError(t, w.Handle(t.Context(), msgs))
		e.synced()
	}
}

// getJSON calls path as an analyst and decodes the 200 answer.
func (e *env) getJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	resp, body := e.do(request{method: "GET", path: path, token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", path, body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(body, &out), "%s", body)
	return out
}

// TestQuarantinedAlertSaysSo: the api publishes an AMBER alert at once
// (no release.second_analyst on it) while the fan-out wants a second
// analyst's approval, so it quarantines the alert as unapproved. Its
// deliveries, status and row of the alert list say that it was
// quarantined, why, and that it is done (no delivery will ever be made),
// not that it is published and waiting for its fan-out. Another alert
// the fan-out refused under the id of one it fanned out (duplicate-id)
// changes nothing of that one.
func TestQuarantinedAlertSaysSo(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	amber := strings.Replace(validAlert, `"title"`, `"id": "op-skew-1", "title"`, 1)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: amber})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	require.Equal(t, record.StatePublished, publishResp(t, body).State)
	green := strings.Replace(strings.Replace(validAlert, `"TLP:AMBER"`, `"GREEN"`, 1), `"title"`, `"id": "op-green-1", "title"`, 1)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: green})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	fanOut := e.fanOut(t)
	fanOut()
	// Another alert under op-green-1, written as a second publisher
	// racing the first would: the fan-out refuses it as a duplicate-id.
	other := e.published()[1]
	require.Equal(t, "op-green-1", other.ID)
	other.Title = "Another alert under a used id"
	v, err := json.Marshal(other)
	require.NoError(t, err)
	require.NoError(t, e.bus.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(other.ID), Value: v}))
	fanOut()
	var reasons []string
	require.NoError(t, e.bus.ReadAll(t.Context(), bus.TopicQuarantine, func(m kafka.Message) error {
		reasons = append(reasons, string(m.Key)+" "+bus.Header(m, bus.HeaderReason))
		return nil
	}))
	require.ElementsMatch(t, []string{"op-skew-1 " + fanout.ReasonUnapproved, "op-green-1 " + fanout.ReasonDuplicateID}, reasons)

	d := e.getJSON(t, "/v1/alerts/op-skew-1/deliveries")
	assert.Equal(t, record.StateQuarantined, d["state"])
	assert.Equal(t, fanout.ReasonUnapproved, d["quarantine_reason"])
	assert.Contains(t, d["quarantine_error"], "needs a second analyst's approval")
	assert.NotEmpty(t, d["quarantined_at"])
	assert.Equal(t, true, d["done"], "no delivery will ever be made")
	assert.Equal(t, []any{}, d["deliveries"])

	s := e.getJSON(t, "/v1/alerts/op-skew-1")
	assert.Equal(t, record.StateQuarantined, s["state"])
	assert.Equal(t, fanout.ReasonUnapproved, s["quarantine_reason"])
	assert.Contains(t, s["quarantine_error"], "needs a second analyst's approval")
	assert.Equal(t, "api:alice", s["issued_by"])
	assert.Equal(t, true, s["done"])

	l := e.getJSON(t, "/v1/alerts?state=quarantined")
	require.Len(t, l["alerts"], 1)
	row := l["alerts"].([]any)[0].(map[string]any)
	assert.Equal(t, "op-skew-1", row["id"])
	assert.Equal(t, record.StateQuarantined, row["state"])
	assert.Equal(t, fanout.ReasonUnapproved, row["quarantine_reason"])

	d = e.getJSON(t, "/v1/alerts/op-green-1/deliveries")
	assert.Equal(t, record.StatePublished, d["state"], "fanned out: another alert's quarantine does not mark it")
	assert.NotContains(t, d, "quarantine_reason")
	assert.NotEmpty(t, d["deliveries"])
	l = e.getJSON(t, "/v1/alerts?state=published")
	require.Len(t, l["alerts"], 1)
	assert.Equal(t, "op-green-1", l["alerts"].([]any)[0].(map[string]any)["id"])
}
