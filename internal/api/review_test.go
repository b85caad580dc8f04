package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

func decodeReview(t *testing.T, body []byte) api.Review {
	t.Helper()
	var rv api.Review
	require.NoError(t, json.Unmarshal(body, &rv), "%s", body)
	return rv
}

// submittedBytes returns the alert bytes of the first Submitted event of id
// on the pending topic: what an approval releases.
func (e *env) submittedBytes(id string) []byte {
	e.t.Helper()
	var out []byte
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicPending, func(m kafka.Message) error {
		var ev record.Release
		require.NoError(e.t, json.Unmarshal(m.Value, &ev))
		if ev.ID == id && ev.Kind == record.Submitted && out == nil {
			out = ev.Alert
		}
		return nil
	}))
	require.NotNil(e.t, out, "no submitted event for %s", id)
	return out
}

// TestReviewShowsTheSubmittedAlertAndTheAuthorsPreview: the second analyst
// reads exactly the bytes that were submitted, with the decision table the
// author's preview showed, URLs redacted for analysts.
func TestReviewShowsTheSubmittedAlertAndTheAuthorsPreview(t *testing.T) {
	e := newEnv(t, withRelease)
	const hook = "https://acme.example/herald?token=s3cret"
	s := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash Group", Kind: subscribers.KindBusiness,
		Sectors: []string{"car-washes"}, Clearance: alerts.TLPAmber,
		Webhooks: []subscribers.Webhook{{URL: hook, Secrets: []string{testSecret}}}}
	s.Normalize()
	e.reg.Put(s)
	e.addPartner("greenco", alerts.TLPGreen) // withheld: cleared for GREEN only

	body := strings.Replace(validAlert, `"title"`, `"id": "op-review-1", "title"`, 1)
	resp, out := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: body})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	var preview api.PreviewResponse
	require.NoError(t, json.Unmarshal(out, &preview))
	require.True(t, preview.NeedsRelease)

	resp, out = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: body})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
	pr := publishResp(t, out)
	require.Equal(t, record.StatePending, pr.State)

	resp, out = e.do(request{method: "GET", path: "/v1/alerts/op-review-1/review", token: secondAnalystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	rv := decodeReview(t, out)
	assert.JSONEq(t, string(e.submittedBytes("op-review-1")), string(rv.Alert), "exactly the alert submitted")
	assert.Equal(t, pr.Digest, rv.Digest)
	assert.Equal(t, preview.Digest, rv.Digest, "the content the author previewed")
	assert.Equal(t, record.StatePending, rv.State)
	assert.Equal(t, "api:alice", rv.IssuedBy)
	assert.False(t, rv.Own)
	assert.True(t, rv.ExpiresAt.Equal(pr.ExpiresAt))
	assert.True(t, rv.SubmittedAt.Equal(testNow))
	assert.Equal(t, preview.Decisions, rv.Decisions, "the same audience preview the author saw")
	assert.Equal(t, preview.Counts, rv.Counts)
	assert.Equal(t, map[string]int{"deliver": 1, "notice": 0, "withhold": 1}, rv.Counts)
	assert.NotContains(t, string(out), "s3cret", "analysts see webhook URLs redacted")
	assert.Contains(t, string(out), `"https://acme.example/herald"`)

	// The author sees it too, marked as their own.
	resp, out = e.do(request{method: "GET", path: "/v1/alerts/op-review-1/review", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	assert.True(t, decodeReview(t, out).Own)

	// Administrators see whole records, as in a preview.
	resp, out = e.do(request{method: "GET", path: "/v1/alerts/op-review-1/review", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	assert.Contains(t, string(out), "s3cret")

	// What the reviewer read is what the approval binds to.
	resp, out = e.do(request{method: "POST", path: "/v1/alerts/op-review-1/approve", token: secondAnalystToken,
		body: `{"digest": "` + rv.Digest + `"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	resp, out = e.do(request{method: "GET", path: "/v1/alerts/op-review-1/review", token: secondAnalystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	rv = decodeReview(t, out)
	assert.Equal(t, record.StatePublished, rv.State)
	assert.Equal(t, "api:bob", rv.ApprovedBy)
	assert.True(t, rv.ApprovedAt.Equal(testNow))
}

func TestReviewOfARejectedAlert(t *testing.T) {
	e := newEnv(t, withRelease)
	_, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	pr := publishResp(t, out)
	resp, out := e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/reject", token: secondAnalystToken,
		body: `{"reason": "names a victim"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	resp, out = e.do(request{method: "GET", path: "/v1/alerts/" + pr.ID + "/review", token: secondAnalystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	rv := decodeReview(t, out)
	assert.Equal(t, record.StateRejected, rv.State)
	assert.Equal(t, "api:bob", rv.RejectedBy)
	assert.Equal(t, "names a victim", rv.RejectReason)
	assert.Empty(t, rv.ApprovedBy)
}

func TestReviewOfAnExpiredAlert(t *testing.T) {
	e := newEnv(t, withRelease)
	_, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	pr := publishResp(t, out)
	// A server a day later, reading the first server's bus.
	later := newEnv(t, withRelease, func(l *env) { l.pub.Index = e.pub.Index },
		func(s *api.Server) { s.Now = func() time.Time { return testNow.Add(25 * time.Hour) } })
	resp, out := later.do(request{method: "GET", path: "/v1/alerts/" + pr.ID + "/review", token: secondAnalystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
	assert.Equal(t, record.StateExpired, decodeReview(t, out).State)
}

// TestReviewRefusals: roles, unknown ids, and alerts that never waited.
func TestReviewRefusals(t *testing.T) {
	e := newEnv(t, withRelease)
	green := strings.Replace(validAlert, `"TLP:AMBER"`, `"GREEN"`, 1)
	resp, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: green})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
	goneOut := publishResp(t, out)
	require.Equal(t, record.StatePublished, goneOut.State)
	_, out = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	pending := publishResp(t, out)

	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"no token", "/v1/alerts/" + pending.ID + "/review", "", http.StatusUnauthorized},
		{"unknown token", "/v1/alerts/" + pending.ID + "/review", "hrld_guess", http.StatusUnauthorized},
		{"partner", "/v1/alerts/" + pending.ID + "/review", partnerToken, http.StatusForbidden},
		{"unknown id", "/v1/alerts/no-such-alert/review", secondAnalystToken, http.StatusNotFound},
		{"not an id", "/v1/alerts/" + strings.Repeat("x", 65) + "/review", secondAnalystToken, http.StatusNotFound},
		{"published without waiting", "/v1/alerts/" + goneOut.ID + "/review", secondAnalystToken, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, out := e.do(request{method: "GET", path: tc.path, token: tc.token})
			require.Equal(t, tc.want, resp.StatusCode, "%s", out)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.NotContains(t, string(out), `"alert"`, "nothing of the alert is shown")
		})
	}
}

func TestReviewWithKafkaDown(t *testing.T) {
	e := newEnv(t, withRelease, withKafkaDown)
	resp, out := e.do(request{method: "GET", path: "/v1/alerts/op-1/review", token: secondAnalystToken})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", out)
}
