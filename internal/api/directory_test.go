package api_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/subscribers"
)

func TestPartnerDirectoryAndAdminActions(t *testing.T) {
	e := newEnv(t)
	resp, body := e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken,
		body: `{"name": "Acme Car Wash", "kind": "business", "sectors": ["car-washes"], "clearance": "AMBER",
			"email": [{"address": "a@acme.example"}],
			"webhooks": [{"url": "https://acme.example/h?token=s3cret", "secrets": ["` + testSecret + `"]}]}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	// Analysts see who partners are, never their addresses or secrets.
	resp, body = e.do(request{method: "GET", path: "/v1/partners", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var pl api.PartnerList
	require.NoError(t, json.Unmarshal(body, &pl))
	require.Len(t, pl.Partners, 1)
	assert.Equal(t, api.Partner{ID: "acme", Name: "Acme Car Wash", Kind: "business", Sectors: []string{"car-washes"},
		MinSeverity: "minor", Clearance: "AMBER", Status: "active", Emails: 1, Webhooks: 1}, pl.Partners[0])
	for _, secret := range []string{"a@acme.example", "s3cret", "whsec_"} {
		assert.NotContains(t, string(body), secret)
	}
	resp, _ = e.do(request{method: "GET", path: "/v1/partners", token: partnerToken})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)

	// Suspend needs a reason; the record is written again with the status
	// and the reason goes to the audit trail.
	resp, body = e.do(request{method: "POST", path: "/v1/subscribers/acme/suspend", token: adminToken, body: `{}`})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"reason"}, fields(decodeError(t, body)))
	resp, _ = e.do(request{method: "POST", path: "/v1/subscribers/acme/suspend", token: analystToken, body: `{"reason": "x"}`})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = e.do(request{method: "POST", path: "/v1/subscribers/nobody/suspend", token: adminToken, body: `{"reason": "x"}`})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, body = e.do(request{method: "POST", path: "/v1/subscribers/acme/suspend", token: adminToken, body: `{"reason": "staff vetting lapsed"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, subscribers.StatusSuspended, e.reg.Get("acme").Status)

	// An administrator re-enables an endpoint Herald disabled after a 410:
	// its own record, the partner's record unchanged.
	e.reg.PutEndpoint(subscribers.EndpointState{Subscriber: "acme", URL: "https://acme.example/h?token=s3cret", Disabled: true, By: "herald:deliver"})
	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme/endpoints", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var el api.EndpointList
	require.NoError(t, json.Unmarshal(body, &el))
	require.Len(t, el.Endpoints, 1)
	assert.True(t, el.Endpoints[0].Disabled)
	resp, _ = e.do(request{method: "POST", path: "/v1/subscribers/acme/webhooks/3/enable", token: adminToken, body: `{"reason": "fixed"}`})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	resp, body = e.do(request{method: "POST", path: "/v1/subscribers/acme/webhooks/0/enable", token: adminToken, body: `{"reason": "partner fixed its receiver"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	// GET returns the record as written, never the effective flags.
	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var got subscribers.Subscriber
	require.NoError(t, json.Unmarshal(body, &got))
	assert.False(t, got.Webhooks[0].Disabled)

	var actions []string
	for _, a := range e.audited() {
		if a.Object == "subscriber:acme" {
			actions = append(actions, a.Action+" "+a.Reason)
		}
	}
	assert.Equal(t, []string{record.ActionSubscriberPut + " ", record.ActionSubscriberPut + " staff vetting lapsed",
		record.ActionEndpointEnable + " partner fixed its receiver"}, actions)
}
