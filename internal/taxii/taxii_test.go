package taxii_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/formats/formatstest"
	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

// objects requests one page of a collection's objects.
func (e *env) objects(token, subscriber, query string) response {
	e.t.Helper()
	return e.get(collectionPath(subscriber)+"objects/?"+query, token)
}

// all follows next from the first page of query, limit objects a page,
// and returns every object and the pages' headers.
func (e *env) all(token, subscriber, query string, limit int) (objects []map[string]any, pages []response) {
	e.t.Helper()
	q, err := url.ParseQuery(query)
	require.NoError(e.t, err)
	q.Set("limit", itoa(limit))
	for {
		r := e.objects(token, subscriber, q.Encode())
		require.Equal(e.t, http.StatusOK, r.status, "%s", r.body)
		pages = append(pages, r)
		env := r.json(e.t)
		objects = append(objects, list(env["objects"])...)
		require.LessOrEqual(e.t, len(list(env["objects"])), limit)
		if env["more"] != true {
			require.NotContains(e.t, env, "next")
			return objects, pages
		}
		q.Del("added_after") // next carries the place, as OpenCTI's connector relies on
		q.Set("next", env["next"].(string))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func list(v any) []map[string]any {
	var out []map[string]any
	for _, o := range asSlice(v) {
		out = append(out, o.(map[string]any))
	}
	return out
}

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// ids returns the ids of objects, with their versions.
func ids(objects []map[string]any) []string {
	var out []string
	for _, o := range objects {
		out = append(out, o["id"].(string)+"@"+version(o))
	}
	return out
}

func version(o map[string]any) string {
	if m, ok := o["modified"].(string); ok {
		return m
	}
	return o["created"].(string)
}

// reportOf returns the report of objects whose external reference names
// the Herald alert id, or nil.
func reportOf(objects []map[string]any, alertID string) map[string]any {
	for _, o := range objects {
		if o["type"] != "report" {
			continue
		}
		for _, ref := range asSlice(o["external_references"]) {
			if ref.(map[string]any)["external_id"] == alertID {
				return o
			}
		}
	}
	return nil
}

// alertsIn returns the Herald alert ids whose reports objects hold.
func alertsIn(objects []map[string]any) []string {
	var out []string
	for _, o := range objects {
		if o["type"] == "report" {
			out = append(out, asSlice(o["external_references"])[0].(map[string]any)["external_id"].(string))
		}
	}
	return out
}

func validate(t *testing.T, objects []map[string]any) {
	t.Helper()
	b, err := json.Marshal(objects)
	require.NoError(t, err)
	require.NoError(t, formatstest.STIX(t).ValidateObjects(b), "objects served validate against the OASIS STIX 2.1 schemas")
}

func TestDiscoveryAndCollections(t *testing.T) {
	e := newEnv(t)
	r := e.get("/taxii2/", bankToken)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, taxii.MediaTAXII, r.header.Get("Content-Type"))
	d := r.json(t)
	root := e.srv.URL + "/taxii2/herald/"
	require.Equal(t, root, d["default"])
	require.Equal(t, []any{root}, d["api_roots"])
	require.NotEmpty(t, d["title"])

	// HTTP Basic with the token as the password, for clients that only do
	// Basic.
	rb := e.do("/taxii2/", func(h http.Header) { h.Set("Authorization", basic(bankToken)) })
	require.Equal(t, http.StatusOK, rb.status)
	require.Equal(t, r.body, rb.body)

	ar := e.get("/taxii2/herald/", bankToken)
	require.Equal(t, http.StatusOK, ar.status)
	require.Equal(t, []any{taxii.MediaTAXII}, ar.json(t)["versions"])
	require.Contains(t, ar.json(t), "max_content_length")

	cs := e.get("/taxii2/herald/collections/", bankToken)
	require.Equal(t, http.StatusOK, cs.status)
	colls := list(cs.json(t)["collections"])
	require.Len(t, colls, 1, "one collection: the partner's own")
	c := colls[0]
	require.Equal(t, taxii.CollectionID("bank"), c["id"])
	require.Equal(t, true, c["can_read"])
	require.Equal(t, false, c["can_write"])
	require.Equal(t, []any{taxii.MediaSTIX}, c["media_types"])
	require.NotEqual(t, taxii.CollectionID("bank"), taxii.CollectionID("charity"))
	require.Equal(t, taxii.CollectionID("bank"), taxii.CollectionID("bank"), "deterministic")

	one := e.get(collectionPath("bank"), bankToken)
	require.Equal(t, http.StatusOK, one.status)
	require.Equal(t, c, one.json(t))

	none := e.get("/taxii2/herald/collections/", hotelToken)
	require.Equal(t, http.StatusOK, none.status)
	require.NotContains(t, none.json(t), "collections", "no pull channel, no collection")
}

// TestErrors: 401 without a known token, 403 for a token that is not a
// partner's or a partner that may not pull, 404 for another partner's
// collection, an unknown API root or object, 406 for an Accept that does
// not allow TAXII 2.1; every error is a TAXII error message.
func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.publish(alert("err-001", nil))
	bank := collectionPath("bank")
	tests := []struct {
		name    string
		path    string
		headers func(http.Header)
		status  int
	}{
		{"no token", "/taxii2/", func(h http.Header) {}, http.StatusUnauthorized},
		{"unknown token", bank + "objects/", func(h http.Header) { h.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		{"unknown Basic password", "/taxii2/", func(h http.Header) { h.Set("Authorization", basic("nope")) }, http.StatusUnauthorized},
		{"analyst token", "/taxii2/", func(h http.Header) { h.Set("Authorization", "Bearer "+analystToken) }, http.StatusForbidden},
		{"no pull channel", collectionPath("hotel") + "objects/", func(h http.Header) { h.Set("Authorization", "Bearer "+hotelToken) }, http.StatusForbidden},
		{"another partner's collection", collectionPath("charity") + "objects/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusNotFound},
		{"a collection that does not exist", "/taxii2/herald/collections/6b0b4c44-3ee5-5d5e-9b8b-000000000000/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusNotFound},
		{"unknown API root", "/taxii2/other/collections/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusNotFound},
		{"unknown object", bank + "objects/indicator--00000000-0000-5000-8000-000000000000/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusNotFound},
		{"unknown path", "/taxii2/herald/status/x/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusNotFound},
		{"JSON only", bank + "objects/", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken); h.Set("Accept", "application/json") }, http.StatusNotAcceptable},
		{"TAXII 2.0", bank + "objects/", func(h http.Header) {
			h.Set("Authorization", "Bearer "+bankToken)
			h.Set("Accept", "application/taxii+json;version=2.0")
		}, http.StatusNotAcceptable},
		{"bad added_after", bank + "objects/?added_after=yesterday", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusBadRequest},
		{"bad limit", bank + "objects/?limit=0", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusBadRequest},
		{"bad next", bank + "objects/?next=xyz", func(h http.Header) { h.Set("Authorization", "Bearer "+bankToken) }, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(tt.path, tt.headers)
			require.Equal(t, tt.status, r.status, "%s", r.body)
			require.Equal(t, taxii.MediaTAXII, r.header.Get("Content-Type"))
			m := r.json(t)
			require.NotEmpty(t, m["title"])
			require.Equal(t, itoa(tt.status), m["http_status"])
			if tt.status == http.StatusUnauthorized {
				require.Len(t, r.header.Values("WWW-Authenticate"), 2, "Bearer and Basic offered")
			}
		})
	}
	require.Contains(t, e.refused, "unknown", "refused tokens are reported for the audit trail")
	require.Contains(t, e.refused, "analyst:alice")

	// Accept headers that allow TAXII 2.1.
	for _, accept := range []string{"", "*/*", "application/taxii+json", "application/taxii+json;version=2.1", "application/json, application/taxii+json;version=2.1;q=0.5"} {
		r := e.do(bank+"objects/", func(h http.Header) {
			h.Set("Authorization", "Bearer "+bankToken)
			if accept != "" {
				h.Set("Accept", accept)
			}
		})
		require.Equal(t, http.StatusOK, r.status, "Accept %q: %s", accept, r.body)
	}
	// Nothing can be written.
	req, err := http.NewRequest(http.MethodPost, e.srv.URL+bank+"objects/", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+bankToken)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

// TestObjectsPagingAndAddedAfter: the collection's objects page by limit
// and next without loss or repetition, in date_added order, with the
// X-TAXII-Date-Added headers; added_after keeps what was added later.
func TestObjectsPagingAndAddedAfter(t *testing.T) {
	e := newEnv(t)
	var added []time.Time
	for _, id := range []string{"pg-001", "pg-002", "pg-003"} {
		added = append(added, e.publish(alert(id, nil)))
	}
	whole, _ := e.all(bankToken, "bank", "", 1000)
	require.Equal(t, []string{"pg-001", "pg-002", "pg-003"}, alertsIn(whole))
	validate(t, whole)
	// Each alert: its two statement markings, report, indicator and note;
	// the first also brings the TLP markings (CLEAR and GREEN) and the
	// agency's identity, which later alerts share.
	require.Len(t, whole, 3+3*5)

	for _, limit := range []int{1, 4, 7} {
		got, pages := e.all(bankToken, "bank", "", limit)
		require.Equal(t, ids(whole), ids(got), "limit %d: same objects, same order", limit)
		for _, p := range pages {
			if len(list(p.json(t)["objects"])) == 0 {
				continue
			}
			first, err := time.Parse(time.RFC3339Nano, p.header.Get("X-TAXII-Date-Added-First"))
			require.NoError(t, err)
			last, err := time.Parse(time.RFC3339Nano, p.header.Get("X-TAXII-Date-Added-Last"))
			require.NoError(t, err)
			require.False(t, last.Before(first))
		}
	}
	first := e.objects(bankToken, "bank", "limit=1")
	at, err := time.Parse(time.RFC3339Nano, first.header.Get("X-TAXII-Date-Added-First"))
	require.NoError(t, err)
	require.True(t, at.Equal(added[0]), "date_added is when the alert was decided for the partner")

	after, _ := e.all(bankToken, "bank", "added_after="+added[0].Format(time.RFC3339Nano), 4)
	require.Equal(t, []string{"pg-002", "pg-003"}, alertsIn(after))
	require.Len(t, after, 2*5, "the shared identity and markings were added with the first alert")
	last, _ := e.all(bankToken, "bank", "added_after="+added[2].Format(time.RFC3339Nano), 4)
	require.Empty(t, last)
	empty := e.objects(bankToken, "bank", "added_after="+added[2].Format(time.RFC3339Nano))
	require.Equal(t, map[string]any{"more": false}, empty.json(t))
	require.Empty(t, empty.header.Get("X-TAXII-Date-Added-First"))

	typed, _ := e.all(bankToken, "bank", "match[type]=indicator,note", 100)
	require.Len(t, typed, 6)
	for _, o := range typed {
		require.Contains(t, []any{"indicator", "note"}, o["type"])
	}
}

// TestObjectVersionsAndManifest: an update renders new versions of its
// original's objects; the latest is served unless match[version] asks
// otherwise; the object, versions and manifest endpoints agree.
func TestObjectVersionsAndManifest(t *testing.T) {
	e := newEnv(t)
	issued := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second)
	e.publish(alert("vr-001", func(a *alerts.Alert) { a.IssuedAt = &issued }))
	up := alert("vr-002", func(a *alerts.Alert) {
		later := issued.Add(10 * time.Minute) // a new version of each object
		a.Type, a.References, a.IssuedAt = alerts.TypeUpdate, []string{"vr-001"}, &later
		a.Indicators = a.Indicators[:1]
	})
	e.publish(up)
	latest, _ := e.all(bankToken, "bank", "", 100)
	validate(t, latest)
	reports := 0
	for _, o := range latest {
		if o["type"] == "report" {
			reports++
		}
	}
	require.Equal(t, 1, reports, "one report: its latest version")
	report := reportOf(latest, "vr-002")
	require.NotNil(t, report)
	var dropped map[string]any
	for _, o := range latest {
		if o["type"] == "note" {
			dropped = o
		}
	}
	require.NotNil(t, dropped)
	require.Equal(t, true, dropped["revoked"], "the indicator the update dropped is revoked")

	everything, _ := e.all(bankToken, "bank", "match[version]=all", 100)
	require.Len(t, alertsIn(everything), 2, "both versions of the report")
	firsts, _ := e.all(bankToken, "bank", "match[version]=first", 100)
	require.NotNil(t, reportOf(firsts, "vr-001"))
	require.Nil(t, reportOf(firsts, "vr-002"))

	id := report["id"].(string)
	obj := e.get(collectionPath("bank")+"objects/"+id+"/", bankToken)
	require.Equal(t, http.StatusOK, obj.status, "%s", obj.body)
	objs := list(obj.json(t)["objects"])
	require.Len(t, objs, 1)
	require.Equal(t, report["modified"], objs[0]["modified"])
	both := e.get(collectionPath("bank")+"objects/"+id+"/?match[version]=all", bankToken)
	require.Len(t, list(both.json(t)["objects"]), 2)
	at := e.get(collectionPath("bank")+"objects/"+id+"/?match[version]="+url.QueryEscape(version(reportOf(firsts, "vr-001"))), bankToken)
	require.Equal(t, []string{"vr-001"}, alertsIn(list(at.json(t)["objects"])))

	vs := e.get(collectionPath("bank")+"objects/"+id+"/versions/", bankToken)
	require.Equal(t, http.StatusOK, vs.status, "%s", vs.body)
	require.Len(t, asSlice(vs.json(t)["versions"]), 2)

	man := e.get(collectionPath("bank")+"manifest/", bankToken)
	require.Equal(t, http.StatusOK, man.status, "%s", man.body)
	records := list(man.json(t)["objects"])
	require.Len(t, records, len(latest))
	for i, rec := range records {
		require.Equal(t, latest[i]["id"], rec["id"])
		require.Equal(t, version(latest[i]), rec["version"])
		require.Equal(t, taxii.MediaSTIX, rec["media_type"])
		_, err := time.Parse(time.RFC3339Nano, rec["date_added"].(string))
		require.NoError(t, err)
	}
}

// TestPolicyDecidesTheCollection: a GREEN pull never sees AMBER; another
// sector sees nothing; RED is never served; a change of the partner's
// record (suspension, a lower max_tlp) removes access at once; an update
// the partner may no longer have withdraws the original.
func TestPolicyDecidesTheCollection(t *testing.T) {
	e := newEnv(t)
	e.publish(alert("po-001", nil))
	e.publish(alert("po-002", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber }))
	e.publish(alert("po-003", func(a *alerts.Alert) {
		a.TLP, a.Audience.Subscribers = alerts.TLPRed, []string{"charity", "bank"}
	}))
	e.publish(alert("po-004", func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive }))

	bank, _ := e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"po-001"}, alertsIn(bank), "a GREEN pull never sees AMBER, RED or what its clearance forbids")
	charity, _ := e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"po-001", "po-002", "po-004"}, alertsIn(charity), "RED never by pull")
	validate(t, charity)
	for _, o := range charity {
		for _, m := range asSlice(o["object_marking_refs"]) {
			require.NotEqual(t, "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1", m, "nothing marked RED")
		}
	}
	ngo, _ := e.all(ngoToken, "ngo", "", 100)
	require.Empty(t, ngo, "another sector sees nothing")

	// Suspension: 403 at once, and nothing.
	e.put("charity", func(s *subscribers.Subscriber) { s.Status = subscribers.StatusSuspended })
	r := e.objects(charityToken, "charity", "")
	require.Equal(t, http.StatusForbidden, r.status)
	require.NotContains(t, string(r.body), "po-00")
	e.put("charity", func(s *subscribers.Subscriber) { s.Status = subscribers.StatusActive })
	charity, _ = e.all(charityToken, "charity", "", 100)
	require.Len(t, alertsIn(charity), 3)

	// A lower clearance, a lower max_tlp, or a partner no longer cleared
	// for OFFICIAL-SENSITIVE loses the alerts above it at once.
	e.put("charity", func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPGreen })
	charity, _ = e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"po-001", "po-004"}, alertsIn(charity))
	e.put("charity", func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPRed })
	e.put("charity", func(s *subscribers.Subscriber) { s.Pull.MaxTLP = alerts.TLPGreen })
	charity, _ = e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"po-001", "po-004"}, alertsIn(charity))
	e.put("charity", func(s *subscribers.Subscriber) { s.Sensitive = false })
	charity, _ = e.all(charityToken, "charity", "", 100)
	require.Equal(t, []string{"po-001"}, alertsIn(charity))
	e.put("charity", func(s *subscribers.Subscriber) { s.Pull = nil })
	require.Equal(t, http.StatusForbidden, e.objects(charityToken, "charity", "").status)

	// An update the bank may pull, then one raised to AMBER: the bank may
	// not pull that, and the whole chain it holds leaves its collection (no
	// older version takes the place of the one withdrawn).
	e.publish(alert("po-005", func(a *alerts.Alert) {
		a.Type, a.References = alerts.TypeUpdate, []string{"po-001"}
	}))
	bank, _ = e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"po-005"}, alertsIn(bank))
	e.publish(alert("po-006", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"po-005"}, alerts.TLPAmber
	}))
	bank, _ = e.all(bankToken, "bank", "", 100)
	require.Empty(t, bank)
	bank, _ = e.all(bankToken, "bank", "match[version]=all", 100)
	require.Empty(t, bank)
}

// TestWithdrawalsShowOnlyWhatThePartnerHad: an update that drops an
// indicator shows it revoked to a partner that pulled the original, and
// never shows its value to a partner new to the chain.
func TestWithdrawalsShowOnlyWhatThePartnerHad(t *testing.T) {
	e := newEnv(t)
	orig := alert("lw-001", func(a *alerts.Alert) { a.Audience = alerts.Audience{Subscribers: []string{"charity"}} })
	e.publish(orig)
	dropped := orig.Indicators[1].Value
	e.publish(alert("lw-002", func(a *alerts.Alert) {
		a.Type, a.References, a.Indicators = alerts.TypeUpdate, []string{"lw-001"}, orig.Indicators[:1]
	}))

	charity, _ := e.all(charityToken, "charity", "", 100)
	validate(t, charity)
	b, err := json.Marshal(charity)
	require.NoError(t, err)
	require.Contains(t, string(b), dropped, "the partner that had the original sees the phone withdrawn")
	bank, _ := e.all(bankToken, "bank", "match[version]=all", 100)
	require.Equal(t, []string{"lw-002"}, alertsIn(bank))
	validate(t, bank)
	b, err = json.Marshal(bank)
	require.NoError(t, err)
	require.NotContains(t, string(b), dropped, "a partner new to the chain never learns the original's phone")
	for _, who := range []struct {
		token string
		sees  bool
	}{{charityToken, true}, {bankToken, false}} {
		var manifest map[string]any
		require.NoError(t, json.Unmarshal(e.feed("manifest.json", who.token).body, &manifest))
		require.Len(t, manifest, 1, "one event for the chain")
		for id := range manifest {
			ev := e.feed(id+".json", who.token)
			require.Equal(t, http.StatusOK, ev.status, "%s", ev.body)
			require.Equal(t, who.sees, strings.Contains(string(ev.body), dropped), "the MISP feed withdraws what the partner had")
		}
	}
}

// TestPullsAreRecorded: the first pull of each alert is an outcome
// receipt in state delivered on the partner's pull target; polling again
// records nothing more; a pull that cannot be recorded is not served.
func TestPullsAreRecorded(t *testing.T) {
	e := newEnv(t)
	e.publish(alert("rc-001", nil))
	e.publish(alert("rc-002", nil))

	// The manifest is not a pull of content.
	require.Equal(t, http.StatusOK, e.get(collectionPath("bank")+"manifest/", bankToken).status)
	e.synced()
	require.Empty(t, pulls(t, e), "the manifest carries no alert's content")

	page := e.objects(bankToken, "bank", "limit=4") // the first alert's objects only
	require.Equal(t, http.StatusOK, page.status)
	e.synced()
	require.Equal(t, map[string]int{"rc-001/bank": 1}, pulls(t, e))
	for range 3 {
		_, _ = e.all(bankToken, "bank", "", 100)
		e.synced()
	}
	require.Equal(t, map[string]int{"rc-001/bank": 1, "rc-002/bank": 1}, pulls(t, e), "one receipt per alert, however often it is polled")
	var audited []string
	for _, a := range e.audit.all() {
		audited = append(audited, a.Actor+" "+a.Action+" "+a.Object)
	}
	require.Equal(t, []string{"partner:bank-misp partner.pull alert:rc-001", "partner:bank-misp partner.pull alert:rc-002"}, audited,
		"each first pull is in the audit trail, with the token that pulled")

	ds, _, err := e.view.PartnerDeliveries("bank", view.PartnerQuery{})
	require.NoError(t, err)
	for _, d := range ds {
		require.Equal(t, delivery.ChannelPull, d.Channel)
		require.Equal(t, delivery.StateDelivered, d.State, "status shows the alert pulled")
	}
	charityDs, _, err := e.view.PartnerDeliveries("charity", view.PartnerQuery{})
	require.NoError(t, err)
	for _, d := range charityDs {
		require.Equal(t, delivery.StateAvailable, d.State, "not pulled yet")
	}

	e.server.Receipts.(*receiptWriter).fail = errors.New("kafka is down")
	r := e.objects(charityToken, "charity", "")
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.NotContains(t, string(r.body), "indicator--", "nothing is served that cannot be recorded")
}

// pulls counts the pull receipts by alert/subscriber.
func pulls(t *testing.T, e *env) map[string]int {
	t.Helper()
	out := map[string]int{}
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicReceipts, func(m kafka.Message) error {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Kind == delivery.KindOutcome && r.Channel == delivery.ChannelPull && r.State == delivery.StateDelivered {
				assert.Equal(t, delivery.ID(r.AlertID, r.Subscriber, delivery.TargetPull), r.DeliveryID)
				out[r.AlertID+"/"+r.Subscriber]++
			}
		}
		return nil
	}))
	return out
}
