package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

func publishResp(t *testing.T, body []byte) api.PublishResponse {
	t.Helper()
	var pr api.PublishResponse
	require.NoError(t, json.Unmarshal(body, &pr), "%s", body)
	return pr
}

// TestAnIDNamesOneAlertForever: the identical alert again answers the same
// id and writes nothing; another alert under the id is 409 naming id.
func TestAnIDNamesOneAlertForever(t *testing.T) {
	e := newEnv(t)
	withID := strings.Replace(validAlert, `"title"`, `"id": "op-reuse-7", "title"`, 1)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: withID})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	first := publishResp(t, body)
	assert.Equal(t, record.StatePublished, first.State)

	// The same alert from another analyst: the same alert, nothing written.
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: secondAnalystToken, body: withID})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	again := publishResp(t, body)
	assert.True(t, again.Unchanged)
	assert.Equal(t, first.ID, again.ID)
	assert.Equal(t, first.Digest, again.Digest)
	require.Len(t, e.published(), 1, "nothing is published twice")

	// Another alert under the id: refused, naming id, for publish and
	// preview alike.
	green := strings.Replace(withID, `"TLP:AMBER"`, `"GREEN"`, 1)
	for _, path := range []string{"/v1/alerts", "/v1/alerts/preview"} {
		resp, body = e.do(request{method: "POST", path: path, token: analystToken, body: green})
		require.Equal(t, http.StatusConflict, resp.StatusCode, "%s: %s", path, body)
		assert.Equal(t, []string{"id"}, fields(decodeError(t, body)))
	}
	require.Len(t, e.published(), 1)
}

// TestReleaseBySecondAnalyst: an AMBER alert waits; its author can never
// approve it; another analyst approves exactly what was published, bound to
// its digest; the audit trail records each step.
func TestReleaseBySecondAnalyst(t *testing.T) {
	e := newEnv(t, withRelease)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	pr := publishResp(t, body)
	assert.Equal(t, record.StatePending, pr.State)
	assert.True(t, pr.ExpiresAt.Equal(testNow.Add(24*time.Hour)))
	assert.Empty(t, e.published(), "nothing goes out before approval")

	// The author may not approve: 403, also via the same name.
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: analystToken})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "%s", body)
	// An admin token is not an analyst's.
	resp, _ = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: adminToken})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	// A digest other than the pending alert's: 409.
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: secondAnalystToken, body: `{"digest": "sha256:00"}`})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", body)
	// Unknown ids: 404.
	resp, _ = e.do(request{method: "POST", path: "/v1/alerts/no-such-alert/approve", token: secondAnalystToken})
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: secondAnalystToken, body: `{"colour": 1}`})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"colour"}, fields(decodeError(t, body)))
	require.Empty(t, e.published())

	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: secondAnalystToken, body: `{"digest": "` + pr.Digest + `"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, record.StatePublished, publishResp(t, body).State)
	got := e.published()
	require.Len(t, got, 1)
	a := got[0]
	assert.Equal(t, pr.ID, a.ID)
	assert.Equal(t, "api:alice", a.IssuedBy)
	assert.Equal(t, "api:bob", a.ApprovedBy)
	a.Normalize()
	assert.Equal(t, pr.Digest, a.Digest(), "the approval released exactly the content that was published")

	// Approved once: a second approval or a rejection is 409.
	resp, _ = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: secondAnalystToken})
	assert.Equal(t, http.StatusConflict, resp.StatusCode)
	resp, _ = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/reject", token: secondAnalystToken, body: `{"reason": "too late"}`})
	assert.Equal(t, http.StatusConflict, resp.StatusCode)

	var actions []string
	for _, au := range e.audited() {
		actions = append(actions, au.Actor+" "+au.Action+" "+au.Outcome)
		assert.NotContains(t, au.Reason+au.Object, analystToken)
	}
	assert.Subset(t, actions, []string{"api:alice alert.submit ok", "api:alice alert.approve refused", "api:bob alert.approve ok"})
	// Every refused approval or rejection is in the audit trail, with
	// why: not only the author's.
	var refusedBob []string
	for _, au := range e.audited() {
		if au.Actor == "api:bob" && au.Outcome == record.OutcomeRefused {
			refusedBob = append(refusedBob, au.Action+" "+au.Object+" "+au.Reason)
		}
	}
	// The audit topic's partitions hold them in no set order.
	require.Len(t, refusedBob, 4, "%q", refusedBob)
	all := strings.Join(refusedBob, "\n")
	assert.Contains(t, all, "alert.approve alert:"+pr.ID+" digest: the alert waiting under "+pr.ID+" is "+pr.Digest+", not sha256:00: approve what you previewed: the alert waiting is not the one you previewed")
	assert.NotContains(t, all, "previewed: the alert is not waiting", "the alert was waiting: the reason says what was wrong")
	assert.Contains(t, all, "alert.approve alert:no-such-alert no such alert waits for approval")
	assert.Contains(t, all, "alert.approve alert:"+pr.ID+" alert "+pr.ID+" is published: the alert is not waiting for approval")
	assert.Contains(t, all, "alert.reject alert:"+pr.ID+" alert "+pr.ID+" is published")
}

func TestRejectWithReason(t *testing.T) {
	e := newEnv(t, withRelease)
	_, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	pr := publishResp(t, body)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/reject", token: secondAnalystToken})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"reason"}, fields(decodeError(t, body)))
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/reject", token: secondAnalystToken, body: `{"reason": "names a victim"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, record.StateRejected, publishResp(t, body).State)
	resp, _ = e.do(request{method: "POST", path: "/v1/alerts/" + pr.ID + "/approve", token: secondAnalystToken})
	assert.Equal(t, http.StatusConflict, resp.StatusCode, "a rejected alert cannot be approved")
	// Publishing the identical alert again does not revive it.
	again := strings.Replace(validAlert, `"title"`, `"id": "`+pr.ID+`", "title"`, 1)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: again})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	assert.Equal(t, record.StateRejected, publishResp(t, body).State)
	assert.Empty(t, e.published())
	// A different alert under its id is refused, and so recorded.
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: strings.Replace(again, "Car wash", "Hand car wash", 1)})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", body)
	// So is an invalid alert, naming its fields (never their values).
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: strings.Replace(validAlert, `"TLP:AMBER"`, `"PURPLE"`, 1)})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	var refused []string
	for _, au := range e.audited() {
		if au.Outcome == record.OutcomeRefused && au.Action == record.ActionPublish {
			refused = append(refused, au.Actor+" "+au.Object+" "+au.Reason)
		}
	}
	require.Len(t, refused, 2, "%q", refused)
	all := strings.Join(refused, "\n")
	assert.Contains(t, all, "api:alice alert:"+pr.ID+" id: ")
	assert.Regexp(t, `(?m)^api:alice alert:\S+ invalid alert: tlp$`, all)
}

func TestNamedSubscriberMustExist(t *testing.T) {
	e := newEnv(t)
	e.addPartner("acme", alerts.TLPAmber)
	body := strings.Replace(validAlert, `"sectors": ["car-washes"]`, `"subscribers": ["acme", "acmee"]`, 1)
	for _, path := range []string{"/v1/alerts", "/v1/alerts/preview"} {
		resp, out := e.do(request{method: "POST", path: path, token: analystToken, body: body})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", out)
		assert.Equal(t, []string{"audience.subscribers[1]"}, fields(decodeError(t, out)))
	}
	assert.Empty(t, e.published())
}

// TestAnalystsSeeURLsWithoutSecrets: webhook URLs reach analysts without
// userinfo, query or fragment; admins see them whole.
func TestAnalystsSeeURLsWithoutSecrets(t *testing.T) {
	e := newEnv(t)
	const hook = "https://acme.example/herald?token=s3cret"
	s := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Webhooks: []subscribers.Webhook{{URL: hook, Secrets: []string{testSecret}}}}
	s.Normalize()
	e.reg.Put(s)
	green := strings.Replace(validAlert, `"TLP:AMBER"`, `"GREEN"`, 1)
	resp, body := e.do(request{method: "POST", path: "/v1/alerts/preview", token: analystToken, body: green})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.NotContains(t, string(body), "s3cret")
	assert.Contains(t, string(body), `"https://acme.example/herald"`)
	_, body = e.do(request{method: "POST", path: "/v1/alerts/preview", token: adminToken, body: green})
	assert.Contains(t, string(body), "s3cret", "admins see whole records")

	e.receipts(delivery.Receipt{Kind: delivery.KindAlert, AlertID: "w1", TLP: "GREEN", Marking: "OFFICIAL", At: testNow},
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: "w1", Subscriber: "acme", Channel: delivery.ChannelWebhook,
			Target: hook, Decision: delivery.Deliver, Mode: delivery.ModeSigned, At: testNow})
	_, body = e.do(request{method: "GET", path: "/v1/alerts/w1/deliveries", token: analystToken})
	assert.NotContains(t, string(body), "s3cret")
	_, body = e.do(request{method: "GET", path: "/v1/alerts/w1/deliveries", token: adminToken})
	assert.Contains(t, string(body), "s3cret")
}

func TestRefusedTokensAreAudited(t *testing.T) {
	e := newEnv(t)
	e.do(request{method: "GET", path: "/v1/subscribers", token: "hrld_guess"})
	e.do(request{method: "GET", path: "/v1/subscribers", token: analystToken})
	var got []string
	for _, a := range e.audited() {
		if a.Action == record.ActionTokenRefused {
			got = append(got, a.Actor+" "+a.Object)
			assert.NotContains(t, a.Reason, "hrld_guess", "never the token")
		}
	}
	assert.Equal(t, []string{"unknown route:GET /v1/subscribers", "analyst:alice route:GET /v1/subscribers"}, got)
}

// TestStatusOfAnAlertNotFannedOut: GET /v1/alerts/{id} answers an alert
// that has no deliveries yet, or never will, with what the alert list
// says of it: its state, who issued it (and who approved or rejected it),
// and no deliveries.
func TestStatusOfAnAlertNotFannedOut(t *testing.T) {
	e := newEnv(t, withRelease)
	status := func(id string) (api.AlertStatus, map[string]any) {
		t.Helper()
		resp, body := e.do(request{method: "GET", path: "/v1/alerts/" + id, token: analystToken})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var st api.AlertStatus
		require.NoError(t, json.Unmarshal(body, &st))
		var raw map[string]any
		require.NoError(t, json.Unmarshal(body, &raw))
		return st, raw
	}

	// Pending, asked right after it was published.
	_, body := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	pending := publishResp(t, body)
	require.Equal(t, record.StatePending, pending.State)
	st, raw := status(pending.ID)
	assert.Equal(t, api.AlertStatus{
		ID: pending.ID, State: record.StatePending, Type: alerts.TypeAlert, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial,
		Title: "Car wash in Leeds recruiting via social media", Counts: map[string]int{},
		Provenance: view.Provenance{IssuedBy: "api:alice", IssuedAt: testNow, ExpiresAt: testNow.Add(24 * time.Hour)},
	}, st)
	for _, k := range []string{"state", "issued_by", "issued_at", "expires_at", "counts", "done"} {
		assert.Contains(t, raw, k, "named as in the alert list")
	}
	assert.NotContains(t, raw, "acks")
	assert.NotContains(t, raw, "fanned_out")

	// The alert list says the same.
	e.synced()
	resp, body := e.do(request{method: "GET", path: "/v1/alerts?state=pending", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var list struct {
		Alerts []map[string]any `json:"alerts"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list.Alerts, 1)
	for _, k := range []string{"id", "state", "type", "tlp", "marking", "title", "issued_by", "issued_at", "expires_at"} {
		assert.Equal(t, list.Alerts[0][k], raw[k], k)
	}

	// Rejected: who rejected it and why; nothing more will happen.
	second := strings.Replace(validAlert, `"title": "`, `"title": "Another `, 1)
	_, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: second})
	rejected := publishResp(t, body)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + rejected.ID + "/reject", token: secondAnalystToken, body: `{"reason": "names a victim"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	st, _ = status(rejected.ID)
	assert.Equal(t, record.StateRejected, st.State)
	assert.Equal(t, "api:alice", st.IssuedBy)
	assert.Equal(t, "api:bob", st.RejectedBy)
	assert.Equal(t, "names a victim", st.RejectReason)
	assert.Empty(t, st.Counts)
	assert.True(t, st.Done, "a rejected alert goes to nobody, ever")

	// Approved, not fanned out yet: published, no deliveries so far.
	resp, body = e.do(request{method: "POST", path: "/v1/alerts/" + pending.ID + "/approve", token: secondAnalystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	st, _ = status(pending.ID)
	assert.Equal(t, record.StatePublished, st.State)
	assert.Equal(t, "api:alice", st.IssuedBy)
	assert.Equal(t, "api:bob", st.ApprovedBy)
	assert.True(t, st.FannedOut.IsZero())
	assert.False(t, st.Done)

	// No deliveries to list yet, and the state says why; an unknown id
	// is still 404.
	for id, want := range map[string]api.Deliveries{
		rejected.ID: {ID: rejected.ID, State: record.StateRejected, Done: true, Counts: map[string]int{}, Deliveries: []ledger.Entry{}},
		pending.ID:  {ID: pending.ID, State: record.StatePublished, Counts: map[string]int{}, Deliveries: []ledger.Entry{}},
	} {
		resp, body = e.do(request{method: "GET", path: "/v1/alerts/" + id + "/deliveries", token: analystToken})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", id, body)
		var got api.Deliveries
		require.NoError(t, json.Unmarshal(body, &got))
		assert.Equal(t, want, got)
		assert.Contains(t, string(body), `"deliveries": []`, "an empty list, not null")
	}
	for _, path := range []string{"/v1/alerts/no-such-alert/deliveries", "/v1/alerts/no-such-alert"} {
		resp, body = e.do(request{method: "GET", path: path, token: analystToken})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, body)
	}
}
