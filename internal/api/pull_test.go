package api_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/subscribers"
)

// TestPullServedToPartnerTokens: the API serves the TAXII server and the
// MISP feed to a partner token, for the subscriber the token is bound to;
// other roles are refused and audited.
func TestPullServedToPartnerTokens(t *testing.T) {
	e := newEnv(t, func(e *env) {
		e.server.Pull = &taxii.Server{Source: e.view, Registry: e.reg, Agency: "National Crime Agency"}
	})
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: "business", Sectors: []string{"construction"},
		Clearance: "AMBER", Pull: &subscribers.Pull{}}
	acme.Normalize()
	e.reg.Put(acme)

	resp, body := e.do(request{method: http.MethodGet, path: "/taxii2/herald/collections/", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.Equal(t, taxii.MediaTAXII, resp.Header.Get("Content-Type"))
	var cs struct {
		Collections []struct{ ID string } `json:"collections"`
	}
	require.NoError(t, json.Unmarshal(body, &cs))
	require.Len(t, cs.Collections, 1)
	require.Equal(t, taxii.CollectionID("acme"), cs.Collections[0].ID, "the token's own subscriber")

	resp, body = e.do(request{method: http.MethodGet, path: "/misp/feed/manifest.json", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{}`, string(body))

	resp, _ = e.do(request{method: http.MethodGet, path: "/taxii2/", token: analystToken})
	require.Equal(t, http.StatusForbidden, resp.StatusCode)
	resp, _ = e.do(request{method: http.MethodGet, path: "/taxii2/", token: "nope"})
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp, _ = e.do(request{method: http.MethodGet, path: "/v1/alerts", token: partnerToken})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "a partner token reads no analyst endpoint")
}
