package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/view"
)

func TestAlertList(t *testing.T) {
	e := newEnv(t, withRelease)
	green := strings.Replace(validAlert, `"TLP:AMBER"`, `"GREEN"`, 1)
	var ids []string
	for i := range 3 {
		body := strings.Replace(green, `"title": "Car wash`, fmt.Sprintf(`"id": "g-%d", "title": "Car wash %d`, i, i), 1)
		resp, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: body})
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
		ids = append(ids, publishResp(t, out).ID)
	}
	resp, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: strings.Replace(validAlert, `"title"`, `"id": "a-pending", "title"`, 1)})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
	e.synced()

	get := func(token, query string) (int, api.AlertList) {
		resp, body := e.do(request{method: "GET", path: "/v1/alerts" + query, token: token})
		var l api.AlertList
		if resp.StatusCode == http.StatusOK {
			require.NoError(t, json.Unmarshal(body, &l), "%s", body)
		}
		return resp.StatusCode, l
	}
	code, all := get(analystToken, "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, all.Alerts, 4)
	states := map[string]string{}
	for _, s := range all.Alerts {
		states[s.ID] = s.State
		assert.Equal(t, "api:alice", s.IssuedBy, s.ID)
	}
	assert.Equal(t, map[string]string{"g-0": "published", "g-1": "published", "g-2": "published", "a-pending": "pending"}, states)
	assert.Equal(t, []string{"g-0", "g-1", "g-2"}, ids, "publishing answered with the ids the list shows")

	code, pending := get(adminToken, "?state=pending")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, pending.Alerts, 1)
	assert.Equal(t, "a-pending", pending.Alerts[0].ID)
	assert.Equal(t, record.StatePending, pending.Alerts[0].State)

	// Paging: two pages of two, newest first, no alert twice.
	code, p1 := get(analystToken, "?limit=2")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, p1.Alerts, 2)
	require.NotEmpty(t, p1.Next)
	code, p2 := get(analystToken, "?limit=2&before="+p1.Next)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, p2.Alerts, 2)
	seen := map[string]bool{}
	for _, s := range append(p1.Alerts, p2.Alerts...) {
		assert.False(t, seen[s.ID], "%s listed twice", s.ID)
		seen[s.ID] = true
	}
	assert.Len(t, seen, 4)

	// The desk's tiles: the whole list's counts by state, in the same
	// answer as a page.
	code, counted := get(analystToken, "?limit=1&counts=true")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, counted.Alerts, 1)
	require.NotNil(t, counted.Counts)
	assert.Equal(t, view.Counts{Pending: 1, Published: 3}, *counted.Counts)
	assert.Nil(t, all.Counts, "only when asked")
	code, counted = get(analystToken, "?limit=1&counts=true&since="+testNow.Add(-time.Hour).Format(time.RFC3339))
	require.Equal(t, http.StatusOK, code)
	require.NotNil(t, counted.Counts.PublishedSince)
	assert.Equal(t, 3, *counted.Counts.PublishedSince)
	code, counted = get(analystToken, "?limit=1&counts=true&since="+testNow.Add(time.Minute).Format(time.RFC3339))
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, 0, *counted.Counts.PublishedSince)

	for query, field := range map[string]string{"?state=lost": "state", "?limit=0": "limit", "?limit=x": "limit", "?limit=501": "limit",
		"?counts=yes": "counts", "?counts=true&since=today": "since", "?since=2026-11-30T00:00:00Z": "since"} {
		resp, body := e.do(request{method: "GET", path: "/v1/alerts" + query, token: analystToken})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s: %s", query, body)
		assert.Equal(t, []string{field}, fields(decodeError(t, body)), query)
	}
	code, _ = get("", "")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = get(partnerToken, "")
	assert.Equal(t, http.StatusForbidden, code, "partners never see the alert list")
}

func TestAuditTrail(t *testing.T) {
	e := newEnv(t, withRelease)
	_, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: validAlert})
	id := publishResp(t, out).ID
	e.do(request{method: "POST", path: "/v1/alerts/" + id + "/approve", token: secondAnalystToken})
	e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken,
		body: `{"name": "Acme", "kind": "business", "sectors": ["car-washes"], "clearance": "GREEN", "email": [{"address": "a@acme.example"}]}`})
	e.do(request{method: "GET", path: "/v1/subscribers", token: "hrld_wrong"})
	e.synced()

	resp, body := e.do(request{method: "GET", path: "/v1/audit", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var l api.AuditList
	require.NoError(t, json.Unmarshal(body, &l))
	var got []string
	for _, a := range l.Entries {
		got = append(got, a.Actor+" "+a.Action+" "+a.Object)
		assert.NotContains(t, string(body), "hrld_", "never a token")
	}
	assert.Subset(t, got, []string{
		"api:alice alert.submit alert:" + id,
		"api:bob alert.approve alert:" + id,
		"api:ops subscriber.put subscriber:acme",
		"unknown token.refused route:GET /v1/subscribers",
	})

	resp, body = e.do(request{method: "GET", path: "/v1/audit?actor=api:bob", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal(body, &l))
	require.Len(t, l.Entries, 1)
	assert.Equal(t, record.ActionApprove, l.Entries[0].Action)

	resp, body = e.do(request{method: "GET", path: "/v1/audit?object=subscriber:", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NoError(t, json.Unmarshal(body, &l))
	require.Len(t, l.Entries, 1)
	assert.Equal(t, true, l.Entries[0].Details["created"])
	assert.Contains(t, l.Entries[0].Details["changed"], "clearance", "the fields that changed, by name")
	resp, body = e.do(request{method: "GET", path: "/v1/audit?since=yesterday", token: adminToken})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"since"}, fields(decodeError(t, body)))
	// What only the view can judge is the caller's mistake too, by field:
	// since not before until, an action that is none, a cursor no page
	// gave (before, they were 503 or an empty page).
	for _, bad := range []struct{ query, field string }{
		{"since=2026-11-02T00:00:00Z&until=2026-11-01T00:00:00Z", "since"},
		{"action=alert.publsh", "action"},
		{"before=c:AAAA", "before"},
	} {
		resp, body = e.do(request{method: "GET", path: "/v1/audit?" + bad.query, token: adminToken})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s: %s", bad.query, body)
		assert.Equal(t, []string{bad.field}, fields(decodeError(t, body)), bad.query)
	}
	resp, _ = e.do(request{method: "GET", path: "/v1/audit", token: analystToken})
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "the audit trail is for administrators")
}

func TestTaxonomyForEveryRole(t *testing.T) {
	e := newEnv(t)
	for _, tok := range []string{analystToken, adminToken, partnerToken} {
		resp, body := e.do(request{method: "GET", path: "/v1/taxonomy", token: tok})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var tx api.Taxonomy
		require.NoError(t, json.Unmarshal(body, &tx))
		assert.Equal(t, api.Taxonomy{Sectors: testTaxonomy.Sectors(), Regions: testTaxonomy.Regions()}, tx,
			"the taxonomy the server was given, which alerts and partners are checked against")
	}
	resp, _ := e.do(request{method: "GET", path: "/v1/taxonomy"})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// TestTaxonomyListsTheConfiguredOne: GET /v1/taxonomy lists the sectors
// and regions of the configuration (a sector it adds, and UK, which it
// need not name), which publishing and partner records are checked
// against; without one it lists the built-in taxonomy.
func TestTaxonomyListsTheConfiguredOne(t *testing.T) {
	seasonal := taxonomy.Sector{Slug: "seasonal-labour", Name: "Seasonal and gang labour", SIC: []string{"01.61"}}
	tax, err := config.Taxonomy{Sectors: append(taxonomy.DefaultSectors(), seasonal),
		Regions: []taxonomy.Region{{Code: "TLE", Name: "Yorkshire and The Humber"}}}.Build()
	require.NoError(t, err)
	e := newEnv(t, func(e *env) { e.pub.Taxonomy, e.server.Taxonomy = tax, tax })
	resp, body := e.do(request{method: "GET", path: "/v1/taxonomy", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var tx api.Taxonomy
	require.NoError(t, json.Unmarshal(body, &tx))
	assert.Contains(t, tx.Sectors, seasonal)
	assert.Len(t, tx.Sectors, len(taxonomy.DefaultSectors())+1)
	assert.Equal(t, []string{"TLE", "UK"}, []string{tx.Regions[0].Code, tx.Regions[1].Code})

	alert := strings.Replace(validAlert, `"sectors": ["car-washes"]`, `"sectors": ["seasonal-labour"]`, 1)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: alert})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", body)
	resp, body = e.do(request{method: "POST", path: "/v1/alerts", token: analystToken,
		body: strings.Replace(alert, `"regions": ["TLE"]`, `"regions": ["TLC"]`, 1)})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"audience.regions[0]"}, fields(decodeError(t, body)), "TLC is not in the configured list")
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/growers", token: adminToken,
		body: `{"name": "Growers", "kind": "business", "sectors": ["seasonal-labour", "mining"], "clearance": "GREEN",
			"email": [{"address": "soc@growers.example"}]}`})
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"sectors[1]"}, fields(decodeError(t, body)))

	e = newEnv(t, func(s *api.Server) { s.Taxonomy = nil })
	resp, body = e.do(request{method: "GET", path: "/v1/taxonomy", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NoError(t, json.Unmarshal(body, &tx))
	assert.Equal(t, api.Taxonomy{Sectors: taxonomy.DefaultSectors(), Regions: taxonomy.DefaultRegions()}, tx)
}

// TestAlertListShowsAnAlertJustPublished: the list catches its view up
// before it answers, so the analyst who has just published (or submitted)
// an alert finds it there, without waiting.
func TestAlertListShowsAnAlertJustPublished(t *testing.T) {
	e := newEnv(t, withRelease)
	for i := range 5 {
		body := strings.Replace(validAlert, `"title"`, fmt.Sprintf(`"id": "just-%d", "title"`, i), 1)
		resp, out := e.do(request{method: "POST", path: "/v1/alerts", token: analystToken, body: body})
		require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", out)
		resp, out = e.do(request{method: "GET", path: "/v1/alerts?limit=1", token: analystToken})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
		var l api.AlertList
		require.NoError(t, json.Unmarshal(out, &l), "%s", out)
		require.Len(t, l.Alerts, 1, "after publishing just-%d", i)
		require.Equal(t, fmt.Sprintf("just-%d", i), l.Alerts[0].ID, "the newest is the one just published")
	}
	// So is the second analyst's decision, once answered.
	for i, how := range []string{"approve", "reject"} {
		id := fmt.Sprintf("just-%d", i)
		resp, out := e.do(request{method: "POST", path: "/v1/alerts/" + id + "/" + how, token: secondAnalystToken, body: `{"reason": "no"}`})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
		resp, out = e.do(request{method: "GET", path: "/v1/alerts?limit=1&before=" + fmt.Sprintf("just-%d", i+1), token: analystToken})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", out)
		var l api.AlertList
		require.NoError(t, json.Unmarshal(out, &l), "%s", out)
		require.Len(t, l.Alerts, 1)
		require.Equal(t, id, l.Alerts[0].ID)
		require.Equal(t, map[string]string{"approve": record.StatePublished, "reject": record.StateRejected}[how], l.Alerts[0].State, "after %s", how)
	}
}

// stalledDesk is the view of a server whose Kafka has stopped answering:
// it still reads what it holds, but catching it up waits until the caller
// gives up.
type stalledDesk struct{ api.Desk }

func (stalledDesk) Sync(ctx context.Context, _ ...string) error {
	<-ctx.Done()
	return context.Cause(ctx)
}

// TestAlertListAnswersWhileKafkaStalls: the alert list, which every open
// console reads several times every few seconds, answers from the view it
// holds; it does not wait on Kafka first (the server catches its view up
// once, after its own writes: TestAlertListShowsAnAlertJustPublished).
func TestAlertListAnswersWhileKafkaStalls(t *testing.T) {
	e := newEnv(t, func(s *api.Server) { s.Desk = stalledDesk{s.Desk} })
	e.publishAs("held-1")
	e.synced()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	r, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/v1/alerts", nil)
	require.NoError(t, err)
	r.Header.Set("Authorization", "Bearer "+analystToken)
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err, "the list answers without waiting for Kafka")
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var l api.AlertList
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&l))
	require.Len(t, l.Alerts, 1)
	assert.Equal(t, "held-1", l.Alerts[0].ID)
}

// TestStatusOfAListedAlertAnswersWhileKafkaStalls: the status of an alert
// the view already lists (here published and not yet fanned out) answers
// from the view, as the alert list does, without catching the view up with
// Kafka first: the console's status page asks for it every few seconds for
// as long as an alert waits for a second analyst (up to a day), and each
// ask waited up to 30 s when Kafka stalled.
func TestStatusOfAListedAlertAnswersWhileKafkaStalls(t *testing.T) {
	e := newEnv(t, func(s *api.Server) { s.Desk = stalledDesk{s.Desk} })
	e.publishAs("held-1")
	e.synced()
	for _, path := range []string{"/v1/alerts/held-1", "/v1/alerts/held-1/deliveries"} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		r, err := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
		require.NoError(t, err)
		r.Header.Set("Authorization", "Bearer "+analystToken)
		resp, err := http.DefaultClient.Do(r)
		cancel()
		require.NoError(t, err, "%s answers from the view it holds, without waiting for Kafka", path)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
	}
}
