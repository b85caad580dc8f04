package app_test

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
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/subscribers"
)

// seasonal is a sector of no built-in taxonomy.
var seasonal = taxonomy.Sector{Slug: "seasonal-labour", Name: "Seasonal and gang labour", SIC: []string{"01.61"}}

// TestConfiguredTaxonomy runs the api and fanout roles with a sector added
// in taxonomy.sectors: GET /v1/taxonomy lists it, a partner record and an
// alert may name it, and the fan-out delivers that alert rather than
// quarantining it as invalid. A sector of neither list is refused, named
// by its field.
func TestConfiguredTaxonomy(t *testing.T) {
	e := newServeEnv(t, nil)
	const analyst, admin = "hrld_analyst_tax_1c9e", "hrld_admin_tax_7d20"
	e.cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)},
		{Name: "ops", Role: config.RoleAdmin, SHA256: config.HashToken(admin)}}
	e.cfg.Taxonomy.Sectors = append(taxonomy.DefaultSectors(), seasonal)
	require.NoError(t, e.cfg.Validate())
	base := "http://" + e.start(t, app.RoleFanout, app.RoleAPI).APIAddr()

	refused := func(body string) []string {
		var er struct {
			Errors []alerts.FieldError `json:"errors"`
		}
		require.NoError(t, json.Unmarshal([]byte(body), &er), "%s", body)
		var fields []string
		for _, f := range er.Errors {
			fields = append(fields, f.Field)
		}
		return fields
	}

	code, body := call(t, "GET", base+"/v1/taxonomy", analyst, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var tx api.Taxonomy
	require.NoError(t, json.Unmarshal([]byte(body), &tx))
	assert.Equal(t, e.cfg.Taxonomy.Sectors, tx.Sectors, "the configured sectors, in their order")
	assert.Equal(t, taxonomy.DefaultRegions(), tx.Regions)

	code, body = call(t, "PUT", base+"/v1/subscribers/growers", admin, `{"name": "Growers Co-op", "kind": "business",
		"sectors": ["seasonal-labour"], "clearance": "GREEN", "email": [{"address": "soc@growers.example"}]}`)
	require.Equal(t, http.StatusOK, code, "a partner may subscribe to the configured sector: %s", body)
	code, body = call(t, "PUT", base+"/v1/subscribers/miners", admin, `{"name": "Miners", "kind": "business",
		"sectors": ["mining"], "clearance": "GREEN", "email": [{"address": "soc@miners.example"}]}`)
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", body)
	assert.Equal(t, []string{"sectors[0]"}, refused(body))

	alert := `{"id": "tax-1", "title": "Gang labour on farms", "severity": "severe", "tlp": "GREEN", "marking": "OFFICIAL",
		"handling": {"code": "P"}, "audience": {"sectors": ["seasonal-labour"], "regions": ["TLE"]}}`
	code, body = call(t, "POST", base+"/v1/alerts", analyst, strings.Replace(alert, `"seasonal-labour"`, `"mining"`, 1))
	require.Equal(t, http.StatusUnprocessableEntity, code, "%s", body)
	assert.Equal(t, []string{"audience.sectors[0]"}, refused(body))
	code, body = call(t, "POST", base+"/v1/alerts", analyst, alert)
	require.Equal(t, http.StatusAccepted, code, "%s", body)

	// The status is 404 until the fan-out has written the alert's receipts.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := call(c, "GET", base+"/v1/alerts/tax-1", analyst, "")
		require.Equal(c, http.StatusOK, code, body)
		var st api.AlertStatus
		require.NoError(c, json.Unmarshal([]byte(body), &st))
		assert.False(c, st.FannedOut.IsZero(), "fanned out: %s", body)
	}, 30*time.Second, 50*time.Millisecond, "the fan-out takes the alert (not quarantined as invalid)")
	code, body = call(t, "GET", base+"/v1/alerts/tax-1/deliveries", analyst, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var ds api.Deliveries
	require.NoError(t, json.Unmarshal([]byte(body), &ds))
	require.NotEmpty(t, ds.Deliveries)
	for _, d := range ds.Deliveries {
		assert.Equal(t, "growers", d.Subscriber, "only the partner of the configured sector")
	}
}

// build returns cfg's taxonomy.
func build(t *testing.T, cfg *config.Config) *taxonomy.Taxonomy {
	t.Helper()
	tax, err := cfg.Taxonomy.Build()
	require.NoError(t, err)
	return tax
}

// TestCheckSubscriberTaxonomy: a partner record is checked against the
// configured taxonomy.
func TestCheckSubscriberTaxonomy(t *testing.T) {
	s := func() *subscribers.Subscriber {
		return &subscribers.Subscriber{ID: "growers", Name: "Growers", Kind: subscribers.KindBusiness, Clearance: alerts.TLPGreen,
			Sectors: []string{seasonal.Slug}, Regions: []string{"TLE"}, Email: []subscribers.Email{{Address: "soc@growers.example"}}}
	}
	cfg := config.Default()
	err := app.CheckSubscriber(&cfg, build(t, &cfg), s(), time.Now())
	var v *alerts.ValidationError
	require.ErrorAs(t, err, &v)
	require.Equal(t, "sectors[0]", v.Fields[0].Field)
	cfg.Taxonomy.Sectors = []taxonomy.Sector{seasonal}
	require.NoError(t, app.CheckSubscriber(&cfg, build(t, &cfg), s(), time.Now()))
}

// TestFanOutTakesAlertsOfAnotherTaxonomy: an alert that Herald's publisher
// wrote for a sector and region this fan-out's taxonomy lacks (an api
// process whose taxonomy.sectors has one more, during a rolling change of
// the configuration; or an alert approved after its sector was dropped)
// is fanned out to the partners registered for them, not quarantined as
// invalid: the publisher checked the audience against its taxonomy, and a
// quarantined alert would reach nobody, not even the partners of the
// sectors both taxonomies have.
func TestFanOutTakesAlertsOfAnotherTaxonomy(t *testing.T) {
	e := newServeEnv(t, nil)
	require.Empty(t, e.cfg.Taxonomy.Sectors, "the fan-out runs with the built-in taxonomy")
	b := e.cluster.Open(t, e.cfg.Kafka)
	growers := &subscribers.Subscriber{ID: "growers", Name: "Growers Co-op", Kind: subscribers.KindBusiness,
		Sectors: []string{seasonal.Slug}, Regions: []string{"FENS"}, Clearance: alerts.TLPAmber,
		Email: []subscribers.Email{{Address: "soc@growers.example"}}}
	register(t, b, growers)

	e.start(t, app.RoleFanout, app.RoleDeliver)
	issued := time.Now().UTC()
	a := &alerts.Alert{ID: "tax-rolling-1", Type: alerts.TypeAlert, Status: alerts.StatusActual, Title: "Gang labour on farms",
		Severity: alerts.SeveritySevere, TLP: alerts.TLPGreen, Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"},
		Audience: alerts.Audience{Sectors: []string{seasonal.Slug}, Regions: []string{"FENS"}}, IssuedBy: "api:alice", IssuedAt: &issued}
	publish(t, b, a)
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 30*time.Second, 50*time.Millisecond,
		"the alert is delivered to the partner of its sector, not quarantined:\n%s", e.logs)
	assert.NotContains(t, e.logs.String(), "quarantine")
}
