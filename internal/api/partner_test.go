package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// globexToken is the partner token of the second partner.
const globexToken = "hrld_partner_globex_91ab"

// Partner targets.
const (
	acmeMail   = "soc@acme.example"
	acmeHook   = "https://hooks.acme.example/herald?token=s3cret"
	globexMail = "alerts@globex.example"
	globexHook = "https://globex.example/herald"
)

// withPartners wires the partner endpoints to the env's bus and view
// (through the same adapters the api role uses), adds a partner token for
// globex, and stores the records of acme and globex.
func withPartners(e *env) {
	links, err := app.AckLinks(e.bus)
	require.NoError(e.t, err)
	e.server.Partner = api.Partners{
		Deliveries: e.view,
		Receipts:   app.ReceiptWriter{P: e.bus.Producer(bus.TopicReceipts)},
		Dead:       app.DeadLetters{Bus: e.bus, Now: func() time.Time { return testNow }},
		Links:      links,
	}
	e.server.Tokens = append(e.server.Tokens,
		config.Token{Name: "globex-ops", Role: config.RolePartner, Subscriber: "globex", SHA256: config.HashToken(globexToken)})
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: acmeMail}, {Address: "alerts@acme.example"}},
		Webhooks: []subscribers.Webhook{{URL: acmeHook, Secrets: []string{testSecret}}}}
	globex := &subscribers.Subscriber{ID: "globex", Name: "Globex", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: globexMail}},
		Webhooks: []subscribers.Webhook{{URL: globexHook, Secrets: []string{testSecret}}}}
	for _, s := range []*subscribers.Subscriber{acme, globex} {
		s.Normalize()
		require.NoError(e.t, s.Validate(testTaxonomy, nil))
	}
	require.NoError(e.t, e.wr.Put(context.Background(), "api:ops", "", []*subscribers.Subscriber{acme, globex}, nil))
}

// decided records an alert fanned out with a decision and an outcome for
// each (subscriber, target, decision, state).
func (e *env) decided(id string, ds ...[4]string) {
	e.t.Helper()
	e.publishAs(id)
	e.fannedOut(id, alerts.TLPAmber, alerts.MarkingOfficial)
	var rs []delivery.Receipt
	for _, d := range ds {
		sub, target, decision, state := d[0], d[1], d[2], d[3]
		ch := delivery.ChannelEmail
		if strings.HasPrefix(target, "https://") {
			ch = delivery.ChannelWebhook
		}
		mode := delivery.ModeEncrypted
		if decision == delivery.Notice {
			mode = delivery.ModeKeyNotice
		}
		did := delivery.ID(id, sub, target)
		rs = append(rs, delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, DeliveryID: did, Subscriber: sub, Channel: ch,
			Target: target, Decision: decision, Mode: mode, Rule: "test", At: testNow.Add(-50 * time.Minute)})
		if state != "" && state != delivery.StatePending {
			rs = append(rs, delivery.Receipt{Kind: delivery.KindOutcome, AlertID: id, DeliveryID: did, Subscriber: sub, Channel: ch,
				Target: target, State: state, Attempt: 1, At: testNow.Add(-40 * time.Minute)})
		}
	}
	e.receipts(rs...)
}

// scenario records three alerts: op-1 went to both partners, op-2 only to
// globex (withheld from acme), op-3 went to acme as a key notice.
func (e *env) scenario() {
	e.t.Helper()
	e.decided("op-1",
		[4]string{"acme", acmeMail, delivery.Deliver, delivery.StateDelivered},
		[4]string{"acme", acmeHook, delivery.Deliver, delivery.StateRetrying},
		[4]string{"globex", globexMail, delivery.Deliver, delivery.StateDelivered})
	e.decided("op-2",
		[4]string{"acme", acmeMail, delivery.Withhold, ""},
		[4]string{"globex", globexHook, delivery.Deliver, delivery.StateDelivered})
	e.decided("op-3",
		[4]string{"acme", "alerts@acme.example", delivery.Notice, delivery.StateDelivered})
	e.synced()
}

// TestPartnerTokensReachOnlyPartnerRoutes: a partner token reaches the
// partner endpoints and nothing analysts or administrators use; analyst
// and admin tokens do not reach the partner endpoints; every refusal is
// audited.
func TestPartnerTokensReachOnlyPartnerRoutes(t *testing.T) {
	e := newEnv(t, withPartners)
	for _, r := range []request{
		{method: "GET", path: "/v1/alerts"},
		{method: "GET", path: "/v1/alerts/op-1"},
		{method: "GET", path: "/v1/alerts/op-1/deliveries"},
		{method: "POST", path: "/v1/alerts", body: validAlert},
		{method: "POST", path: "/v1/alerts/preview", body: validAlert},
		{method: "POST", path: "/v1/alerts/op-1/approve"},
		{method: "GET", path: "/v1/subscribers"},
		{method: "GET", path: "/v1/subscribers/acme"},
		{method: "PUT", path: "/v1/subscribers/acme", body: `{}`},
		{method: "GET", path: "/v1/partners"},
		{method: "GET", path: "/v1/audit"},
		{method: "GET", path: "/v1/whoami"},
	} {
		r.token = partnerToken
		resp, body := e.do(r)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s: %s", r.method, r.path, body)
	}
	for _, tok := range []string{analystToken, adminToken} {
		for _, r := range []request{
			{method: "GET", path: "/v1/partner"},
			{method: "GET", path: "/v1/partner/deliveries"},
			{method: "POST", path: "/v1/partner/alerts/op-1/ack"},
			{method: "POST", path: "/v1/partner/dead/replay", body: `{}`},
			{method: "PUT", path: "/v1/partner/email/" + acmeMail + "/key", contentType: "text/plain", body: "x"},
			{method: "GET", path: "/v1/partner/webhooks"},
			{method: "POST", path: "/v1/partner/webhooks/0/secrets"},
			{method: "DELETE", path: "/v1/partner/webhooks/0/secrets/0"},
		} {
			r.token = tok
			resp, body := e.do(r)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s %s: %s", r.method, r.path, body)
		}
	}
	resp, _ := e.do(request{method: "GET", path: "/v1/partner/deliveries"})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	resp, body := e.do(request{method: "GET", path: "/v1/partner", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var me api.PartnerInfo
	require.NoError(t, json.Unmarshal(body, &me))
	assert.Equal(t, api.PartnerInfo{Subscriber: "acme", Name: "Acme Car Wash", Token: "acme-soc", Status: "active"}, me)

	refused := 0
	for _, a := range e.audited() {
		if a.Action == record.ActionTokenRefused && a.Actor == "partner:acme-soc" {
			refused++
		}
	}
	assert.Equal(t, 12, refused, "every refusal of the partner token is audited")
}

// TestPartnerDeliveries: a partner lists its own deliveries, never another
// partner's and never one the policy withheld from it; errors name the
// field.
func TestPartnerDeliveries(t *testing.T) {
	e := newEnv(t, withPartners)
	e.scenario()
	list := func(tok, query string) api.PartnerDeliveryList {
		t.Helper()
		resp, body := e.do(request{method: "GET", path: "/v1/partner/deliveries" + query, token: tok})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		var l api.PartnerDeliveryList
		require.NoError(t, json.Unmarshal(body, &l))
		if tok == partnerToken {
			require.NotContains(t, string(body), "globex", "acme sees nothing of globex")
		}
		return l
	}
	l := list(partnerToken, "")
	assert.Equal(t, "acme", l.Subscriber)
	got := map[string]string{}
	for _, d := range l.Deliveries {
		got[d.Alert+" "+d.Target] = d.State
	}
	assert.Equal(t, map[string]string{
		"op-1 " + acmeMail:                       delivery.StateDelivered,
		"op-1 https://hooks.acme.example/herald": delivery.StateRetrying, // without its query
		"op-3 alerts@acme.example":               delivery.StateDelivered,
	}, got, "op-2 was withheld from acme: acme never learns of it")

	assert.Empty(t, list(partnerToken, "?alert=op-2").Deliveries, "withheld")
	assert.Len(t, list(partnerToken, "?alert=op-1").Deliveries, 2)
	assert.Len(t, list(partnerToken, "?state=retrying").Deliveries, 1)
	assert.Len(t, list(partnerToken, "?channel=email").Deliveries, 2)
	webhooks := list(partnerToken, "?channel=webhook&state=retrying").Deliveries
	require.Len(t, webhooks, 1)
	assert.Equal(t, "op-1", webhooks[0].Alert)
	assert.Empty(t, list(partnerToken, "?channel=webhook&state=delivered").Deliveries)
	page := list(partnerToken, "?limit=1")
	require.Len(t, page.Deliveries, 1)
	require.NotEmpty(t, page.Next)
	rest := list(partnerToken, "?limit=10&before="+page.Next)
	assert.Len(t, rest.Deliveries, 2)

	g := list(globexToken, "")
	assert.Equal(t, "globex", g.Subscriber)
	for _, d := range g.Deliveries {
		assert.NotContains(t, d.Target, "acme")
	}
	assert.Len(t, g.Deliveries, 2)

	for query, field := range map[string]string{
		"?state=lost": "state", "?limit=0": "limit", "?limit=x": "limit", "?alert=" + strings.Repeat("x", 70): "alert",
		"?alert=a%20b": "alert", "?before=nonsense": "before", "?channel=fax": "channel",
	} {
		resp, body := e.do(request{method: "GET", path: "/v1/partner/deliveries" + query, token: partnerToken})
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s: %s", query, body)
		assert.Equal(t, []string{field}, fields(decodeError(t, body)), query)
	}
}

// TestPartnerAcknowledgement: a partner acknowledges an alert it received
// with content, once (a second time answers the first); analysts see who
// acknowledged and when, in the alert's status and in the alert list; an
// alert withheld from the partner, another partner's alert, or one it only
// had a notice about, is 404.
func TestPartnerAcknowledgement(t *testing.T) {
	e := newEnv(t, withPartners)
	e.scenario()
	ack := func(tok, id, body string) (*http.Response, []byte) {
		return e.do(request{method: "POST", path: "/v1/partner/alerts/" + id + "/ack", token: tok, body: body})
	}
	resp, body := ack(partnerToken, "op-1", `{"note": "Passed to our financial crime team"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var first api.AckResponse
	require.NoError(t, json.Unmarshal(body, &first))
	assert.Equal(t, api.AckResponse{Alert: "op-1", Subscriber: "acme", AcknowledgedAt: testNow, By: "acme-soc",
		Note: "Passed to our financial crime team"}, first)

	resp, body = ack(partnerToken, "op-1", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var again api.AckResponse
	require.NoError(t, json.Unmarshal(body, &again))
	assert.True(t, again.Already)
	assert.Equal(t, first.AcknowledgedAt, again.AcknowledgedAt, "the first acknowledgement's time")
	assert.Equal(t, first.Note, again.Note)

	for _, id := range []string{"op-2", "op-3", "op-404", "bad%20id"} {
		resp, body := ack(partnerToken, id, "")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", id, body)
	}
	resp, body = ack(globexToken, "op-2", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	for note, msg := range map[string]string{
		`"two\nlines"`: "one line",
		`"` + strings.Repeat("x", api.MaxNote+1) + `"`: "the limit is 1000",
	} {
		resp, body := ack(partnerToken, "op-1", `{"note": `+note+`}`)
		require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
		er := decodeError(t, body)
		assert.Equal(t, []string{"note"}, fields(er))
		assert.Contains(t, er.Errors[0].Message, msg)
	}
	resp, body = ack(partnerToken, "op-1", `{"noet": "typo"}`)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"noet"}, fields(decodeError(t, body)))

	// Analysts see it: in the alert's status...
	resp, body = e.do(request{method: "GET", path: "/v1/alerts/op-1", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var st api.AlertStatus
	require.NoError(t, json.Unmarshal(body, &st))
	require.Len(t, st.Acks, 1)
	assert.Equal(t, "acme", st.Acks[0].Subscriber)
	assert.Equal(t, "acme-soc", st.Acks[0].By)
	assert.Equal(t, "Passed to our financial crime team", st.Acks[0].Note)
	assert.True(t, testNow.Equal(st.Acks[0].At))
	// ...and in the alert list.
	e.synced()
	resp, body = e.do(request{method: "GET", path: "/v1/alerts", token: analystToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var al api.AlertList
	require.NoError(t, json.Unmarshal(body, &al))
	acks := map[string]int{}
	for _, a := range al.Alerts {
		acks[a.ID] = a.Acks
	}
	assert.Equal(t, map[string]int{"op-1": 1, "op-2": 1, "op-3": 0}, acks)
	// And the partner's own list says so.
	resp, body = e.do(request{method: "GET", path: "/v1/partner/deliveries?alert=op-1", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var pl api.PartnerDeliveryList
	require.NoError(t, json.Unmarshal(body, &pl))
	require.NotEmpty(t, pl.Deliveries)
	assert.True(t, pl.Deliveries[0].Acknowledged)

	var audited []string
	for _, a := range e.audited() {
		if a.Action == record.ActionPartnerAck {
			audited = append(audited, fmt.Sprintf("%s %s %s", a.Actor, a.Object, a.Outcome))
		}
	}
	// The audit topic is keyed by object: its order holds per object only.
	assert.ElementsMatch(t, []string{
		"partner:acme-soc alert:op-1 ok", "partner:acme-soc alert:op-1 ok",
		"partner:acme-soc alert:op-2 refused", "partner:acme-soc alert:op-3 refused", "partner:acme-soc alert:op-404 refused",
		"partner:acme-soc alert:? refused", "partner:globex-ops alert:op-2 ok",
	}, audited)
}

// deadLetter writes job to the dead topic as the runner does.
func (e *env) deadLetter(job *delivery.Job) {
	e.t.Helper()
	v, err := job.Encode()
	require.NoError(e.t, err)
	require.NoError(e.t, e.bus.Producer(bus.TopicDead).Write(context.Background(), kafka.Message{Key: []byte(job.Subscriber), Value: v,
		Headers: []kafka.Header{{Key: bus.HeaderReason, Value: []byte(delivery.ReasonHTTP4xx)}, {Key: bus.HeaderError, Value: []byte("403")}}}))
}

// queued returns the delivery ids on the deliveries topic.
func (e *env) queued() []string {
	e.t.Helper()
	var ids []string
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		js, bad, err := delivery.DecodeJobs(m.Value, nil)
		require.NoError(e.t, err)
		require.Empty(e.t, bad)
		for _, j := range js {
			ids = append(ids, j.ID)
		}
		return nil
	}))
	return ids
}

// TestPartnerDeadReplay: a partner replays its own dead letters, some or
// all, never another partner's (404 naming the id), and nothing twice.
func TestPartnerDeadReplay(t *testing.T) {
	e := newEnv(t, withPartners)
	job := func(id, sub, target string) *delivery.Job {
		a := &alerts.Alert{ID: id, Type: alerts.TypeAlert, Title: "t", Severity: alerts.SeveritySevere, TLP: alerts.TLPGreen,
			Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"}}
		return &delivery.Job{ID: delivery.ID(id, sub, target), Alert: a, Subscriber: sub, Channel: delivery.ChannelWebhook,
			Target: target, Mode: delivery.ModeSigned, Attempt: 3}
	}
	a1, a2, g1 := job("op-1", "acme", acmeHook), job("op-2", "acme", acmeHook), job("op-1", "globex", globexHook)
	for _, j := range []*delivery.Job{a1, a2, g1} {
		e.deadLetter(j)
	}
	replay := func(tok, body string) (*http.Response, []byte) {
		return e.do(request{method: "POST", path: "/v1/partner/dead/replay", token: tok, body: body})
	}

	resp, body := replay(partnerToken, `{"ids": ["`+a1.ID+`", "`+g1.ID+`", "msg_nope"]}`)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"ids[1]", "ids[2]"}, fields(decodeError(t, body)))
	assert.NotContains(t, string(body), "globex")
	assert.Empty(t, e.queued(), "nothing is replayed when an id is not the partner's")

	resp, body = replay(partnerToken, `{"ids": ["`+a1.ID+`"]}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.JSONEq(t, `{"requeued": 1}`, string(body))
	assert.Equal(t, []string{a1.ID}, e.queued())

	resp, body = replay(partnerToken, `{}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.JSONEq(t, `{"requeued": 1}`, string(body), "a1 was replayed already: only a2")
	resp, body = replay(partnerToken, "")
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.JSONEq(t, `{"requeued": 0}`, string(body), "nothing twice")
	queued := e.queued()
	slices.Sort(queued)
	want := []string{a1.ID, a2.ID}
	slices.Sort(want)
	assert.Equal(t, want, queued, "globex's dead letter stays where it is")

	resp, body = replay(partnerToken, `{"ids": "all"}`)
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{"ids"}, fields(decodeError(t, body)))

	var audited []string
	for _, a := range e.audited() {
		if a.Action == record.ActionPartnerReplay {
			audited = append(audited, fmt.Sprintf("%s %s %s %v", a.Actor, a.Object, a.Outcome, a.Details["requeued"]))
		}
	}
	assert.Equal(t, []string{"partner:acme-soc subscriber:acme refused <nil>", "partner:acme-soc subscriber:acme ok 1",
		"partner:acme-soc subscriber:acme ok 1", "partner:acme-soc subscriber:acme ok 0"}, audited)
}

// TestPartnerKeyUpload: a new key is checked as the policy will use it and
// stored as the partner's own key for the address, beside its record and
// never into it, with the audit trail; a key that cannot be used is 422
// naming pgp_key and why; an address that is not the partner's is 404.
func TestPartnerKeyUpload(t *testing.T) {
	e := newEnv(t, withPartners)
	put := func(tok, addr, ctype, key string) (*http.Response, []byte) {
		return e.do(request{method: "PUT", path: "/v1/partner/email/" + addr + "/key", token: tok, contentType: ctype, body: key})
	}
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	for name, c := range map[string]struct{ key, says string }{
		"garbage":   {"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n-----END PGP PUBLIC KEY BLOCK-----\n", "not an ASCII-armoured OpenPGP key"},
		"expired":   {key(t, pgptest.Expired), "expired on 2020-01-02"},
		"revoked":   {key(t, pgptest.Revoked), "revoked"},
		"sign only": {key(t, pgptest.SignOnly), "no valid encryption subkey"},
		"v6":        {key(t, pgptest.V6), "GnuPG 2.2"},
		"two keys":  {alice + key(t, pgptest.Bob), "2 armoured blocks"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := put(partnerToken, acmeMail, "application/pgp-keys", c.key)
			require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
			er := decodeError(t, body)
			assert.Equal(t, []string{"pgp_key"}, fields(er))
			assert.Contains(t, er.Errors[0].Message, c.says)
		})
	}
	resp, body := put(partnerToken, globexMail, "application/pgp-keys", alice)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "another partner's address: %s", body)
	resp, _ = put(partnerToken, acmeMail, "application/json", alice)
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	require.Len(t, e.wr.stored(), 2, "nothing was stored")

	resp, body = put(partnerToken, strings.ToUpper(acmeMail), "text/plain; charset=utf-8", alice)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var kr api.KeyResponse
	require.NoError(t, json.Unmarshal(body, &kr))
	assert.Equal(t, acmeMail, kr.Address)
	assert.Len(t, kr.Fingerprint, 40)
	assert.True(t, kr.Usable)
	require.Len(t, e.wr.stored(), 2, "the partner's record is never written")
	got := e.reg.Get("acme")
	assert.Equal(t, "acme", got.ID)
	assert.Equal(t, strings.TrimSpace(alice), strings.TrimSpace(got.Email[0].PGPKey), "in force over the record")
	assert.Empty(t, got.Email[1].PGPKey, "the other address is untouched")
	assert.Equal(t, []string{testSecret}, got.Webhooks[0].Secrets, "the rest of the record is as written")
	assert.Empty(t, e.reg.Record("acme").Email[0].PGPKey, "the record as written is not rewritten")
	overlays := e.reg.KeyOverlays("acme")
	require.Len(t, overlays, 1)
	assert.Equal(t, acmeMail, overlays[0].Address, "the record's spelling of the address")
	assert.Equal(t, "partner:acme-soc", overlays[0].By)
	rev := e.reg.Revision()

	resp, body = put(partnerToken, acmeMail, "application/pgp-keys", alice)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `"unchanged": true`)
	assert.Equal(t, rev, e.reg.Revision(), "the same key again writes nothing")

	resp, body = e.do(request{method: "GET", path: "/v1/partner/email", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var el api.PartnerEmailList
	require.NoError(t, json.Unmarshal(body, &el))
	require.Len(t, el.Email, 2)
	require.NotNil(t, el.Email[0].Key)
	assert.Equal(t, kr.Fingerprint, el.Email[0].Key.Fingerprint)
	assert.Nil(t, el.Email[1].Key)
	assert.NotContains(t, string(body), "BEGIN PGP", "the list shows which key, not the key")

	var audited []string
	for _, a := range e.audited() {
		if a.Object == "subscriber:acme" && a.Actor != "api:ops" {
			audited = append(audited, fmt.Sprintf("%s %s %s %s", a.Actor, a.Action, a.Outcome, a.Reason))
		}
	}
	assert.Equal(t, []string{
		"partner:acme-soc partner.key refused the address is not in the partner's record",
		"partner:acme-soc partner.key ok ",
	}, audited)
}

func key(t *testing.T, name string) string {
	pub, _ := pgptest.RecipientKey(t, name)
	return pub
}

// TestPartnerWebhookSecrets: a partner sees its endpoints with secrets
// redacted, adds a secret Herald makes (shown once), retires one, and
// cannot retire the last; no secret reaches the audit trail.
func TestPartnerWebhookSecrets(t *testing.T) {
	e := newEnv(t, withPartners)
	list := func(tok string) []api.PartnerWebhook {
		t.Helper()
		resp, body := e.do(request{method: "GET", path: "/v1/partner/webhooks", token: tok})
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		require.NotContains(t, string(body), "whsec_")
		require.NotContains(t, string(body), "s3cret")
		var l api.PartnerWebhookList
		require.NoError(t, json.Unmarshal(body, &l))
		return l.Webhooks
	}
	hooks := list(partnerToken)
	require.Len(t, hooks, 1)
	assert.Equal(t, "https://hooks.acme.example/herald", hooks[0].URL)
	require.Len(t, hooks[0].Secrets, 1)
	assert.True(t, strings.HasPrefix(hooks[0].Secrets[0], "redacted:"))
	oldRedacted := hooks[0].Secrets[0]
	assert.Equal(t, "https://globex.example/herald", list(globexToken)[0].URL, "each partner sees its own")

	// The last secret stays.
	resp, body := e.do(request{method: "DELETE", path: "/v1/partner/webhooks/0/secrets/0", token: partnerToken})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", body)
	assert.Contains(t, decodeError(t, body).Error, "last secret")

	resp, body = e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", body)
	var added api.SecretResponse
	require.NoError(t, json.Unmarshal(body, &added))
	require.True(t, strings.HasPrefix(added.Secret, "whsec_"), added.Secret)
	require.NoError(t, subscribers.CheckSecret(added.Secret))
	assert.Equal(t, []string{oldRedacted, added.Added}, added.Secrets)
	assert.Equal(t, []string{testSecret, added.Secret}, e.reg.Get("acme").Webhooks[0].Secrets, "in force over the record")
	assert.Equal(t, []string{testSecret}, e.reg.Record("acme").Webhooks[0].Secrets, "the record as written is not rewritten")
	assert.Len(t, e.wr.stored(), 2, "the partner's record is never written")
	hooks = list(partnerToken)
	assert.Equal(t, []string{oldRedacted, added.Added}, hooks[0].Secrets, "never shown again, only its redacted form")

	for _, path := range []string{"/v1/partner/webhooks/1/secrets/0", "/v1/partner/webhooks/x/secrets/0", "/v1/partner/webhooks/0/secrets/2",
		"/v1/partner/webhooks/0/secrets/redacted:0000000000000000", "/v1/partner/webhooks/00/secrets/0"} {
		resp, body := e.do(request{method: "DELETE", path: path, token: partnerToken})
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s: %s", path, body)
	}
	resp, body = e.do(request{method: "POST", path: "/v1/partner/webhooks/1/secrets", token: partnerToken})
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s", body)

	// Retire the old one by its redacted form.
	resp, body = e.do(request{method: "DELETE", path: "/v1/partner/webhooks/0/secrets/" + oldRedacted, token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var retired api.SecretResponse
	require.NoError(t, json.Unmarshal(body, &retired))
	assert.Equal(t, oldRedacted, retired.Retired)
	assert.Equal(t, []string{added.Added}, retired.Secrets)
	assert.Empty(t, retired.Secret)
	assert.Equal(t, []string{added.Secret}, e.reg.Get("acme").Webhooks[0].Secrets)
	assert.Equal(t, []string{testSecret}, e.reg.Record("globex").Webhooks[0].Secrets, "globex is untouched")

	resp, body = e.do(request{method: "DELETE", path: "/v1/partner/webhooks/0/secrets/0", token: partnerToken})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "the new one is now the last: %s", body)

	// At most MaxSecrets.
	for range api.MaxSecrets - 1 {
		resp, body = e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
		require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", body)
	}
	resp, body = e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	require.Equal(t, http.StatusConflict, resp.StatusCode, "%s", body)

	n := 0
	for _, a := range e.audited() {
		raw, err := json.Marshal(a)
		require.NoError(t, err)
		require.NotContains(t, string(raw), "whsec_", "no secret in the audit trail")
		require.NotContains(t, string(raw), "s3cret")
		if a.Action == record.ActionPartnerSecret {
			assert.Equal(t, "partner:acme-soc", a.Actor)
			assert.Equal(t, "subscriber:acme", a.Object)
			n++
		}
	}
	assert.Equal(t, 1+1+api.MaxSecrets-1, n)
	assert.NotContains(t, e.logs.String(), "whsec_", "no secret in the log")
}

// TestAdminPutAndPartnerKey: an administrator's record put back from a
// GET made before the partner's key upload (the same key as written)
// leaves the partner's newer key in force; a record that changes the
// address's key is the administrator's explicit choice and replaces the
// partner's. The partner-managed keys and secrets are listed beside the
// record as written.
func TestAdminPutAndPartnerKey(t *testing.T) {
	e := newEnv(t, withPartners)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	resp, oldGET := e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", oldGET)

	resp, body := e.do(request{method: "PUT", path: "/v1/partner/email/" + acmeMail + "/key", token: partnerToken,
		contentType: "application/pgp-keys", body: alice})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var kr api.KeyResponse
	require.NoError(t, json.Unmarshal(body, &kr))
	resp, body = e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%s", body)
	var added api.SecretResponse
	require.NoError(t, json.Unmarshal(body, &added))

	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme/partner-managed", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.NotContains(t, string(body), "BEGIN PGP")
	assert.NotContains(t, string(body), "whsec_")
	var pm api.PartnerManaged
	require.NoError(t, json.Unmarshal(body, &pm))
	require.Len(t, pm.Keys, 1)
	assert.Equal(t, acmeMail, pm.Keys[0].Address)
	assert.Equal(t, kr.Fingerprint, pm.Keys[0].Fingerprint)
	assert.True(t, pm.Keys[0].InForce)
	assert.Equal(t, "partner:acme-soc", pm.Keys[0].By)
	require.Len(t, pm.Secrets, 1)
	assert.Equal(t, acmeHook, pm.Secrets[0].URL, "as the record has it, as …/endpoints shows it")
	assert.Equal(t, added.Secrets, pm.Secrets[0].Secrets)

	// The old GET, edited and put back: the partner's key and secrets
	// stay in force.
	var rec map[string]any
	require.NoError(t, json.Unmarshal(oldGET, &rec))
	rec["name"] = "Acme Car Wash Ltd"
	edited, err := json.Marshal(rec)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited)})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	got := e.reg.Get("acme")
	assert.Equal(t, "Acme Car Wash Ltd", got.Name)
	assert.Equal(t, strings.TrimSpace(alice), strings.TrimSpace(got.Email[0].PGPKey), "the partner's newer key stands")
	assert.Equal(t, []string{testSecret, added.Secret}, got.Webhooks[0].Secrets, "and its newer secrets")

	// The administrator sets another key: theirs replaces the partner's.
	rec["email"] = []map[string]any{{"address": acmeMail, "pgp_key": bob}, {"address": "alerts@acme.example"}}
	edited, err = json.Marshal(rec)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited)})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	got = e.reg.Get("acme")
	assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(got.Email[0].PGPKey), "the administrator's explicit key")
	assert.Empty(t, e.reg.KeyOverlays("acme"), "the partner's key is cleared")
	assert.Equal(t, []string{testSecret, added.Secret}, got.Webhooks[0].Secrets, "the secrets it did not change stand")

	// Secrets put back as the partner-managed list shows them (redacted)
	// are restored and become the record's own.
	rec["webhooks"] = []map[string]any{{"url": acmeHook, "secrets": added.Secrets}}
	edited, err = json.Marshal(rec)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited)})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, []string{testSecret, added.Secret}, e.reg.Record("acme").Webhooks[0].Secrets)
	assert.Empty(t, e.reg.SecretsOverlays("acme"))
	assert.Equal(t, []string{testSecret, added.Secret}, e.reg.Get("acme").Webhooks[0].Secrets)
}

// TestSubscriberVersions: GET gives the record's ETag; a PUT or DELETE
// with If-Match is refused (412) once the record changed since — here an
// administrator's suspension, which a stale copy written back would undo
// — and goes through with the current one; If-None-Match: * creates only.
func TestSubscriberVersions(t *testing.T) {
	e := newEnv(t, withPartners)
	resp, body := e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	read := resp.Header.Get("ETag")
	require.Regexp(t, `^"[0-9a-f]{32}"$`, read)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(body, &rec))
	rec["name"] = "Acme Car Wash Ltd"
	edited, err := json.Marshal(rec)
	require.NoError(t, err)

	// Another administrator suspends acme meanwhile.
	resp, body = e.do(request{method: "POST", path: "/v1/subscribers/acme/suspend", token: adminToken, body: `{"reason":"investigation"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited),
		header: map[string]string{"If-Match": read}})
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "changed since you read it")
	assert.Equal(t, subscribers.StatusSuspended, e.reg.Get("acme").Status, "the stale copy is not written back")
	resp, _ = e.do(request{method: "DELETE", path: "/v1/subscribers/acme", token: adminToken, header: map[string]string{"If-Match": read}})
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode)
	require.NotNil(t, e.reg.Record("acme"))

	// Read again, change that, send it with the new ETag.
	resp, body = e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	current := resp.Header.Get("ETag")
	require.NotEqual(t, read, current)
	require.NoError(t, json.Unmarshal(body, &rec))
	assert.Equal(t, subscribers.StatusSuspended, rec["status"])
	rec["name"] = "Acme Car Wash Ltd"
	edited, err = json.Marshal(rec)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited),
		header: map[string]string{"If-Match": `W/"x", ` + current}})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	stored := resp.Header.Get("ETag")
	assert.NotEqual(t, current, stored)
	assert.Equal(t, "Acme Car Wash Ltd", e.reg.Get("acme").Name)
	assert.Equal(t, subscribers.StatusSuspended, e.reg.Get("acme").Status)
	resp, _ = e.do(request{method: "GET", path: "/v1/subscribers/acme", token: adminToken})
	assert.Equal(t, stored, resp.Header.Get("ETag"), "the ETag a PUT answers is the one GET gives next")

	// If-None-Match: * creates only; a tag in it compares weakly.
	for _, none := range []string{"*", "W/" + stored} {
		resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/acme", token: adminToken, body: string(edited),
			header: map[string]string{"If-None-Match": none}})
		require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "If-None-Match: %s: %s", none, body)
	}
	// If-Match: * changes only what exists.
	rec["id"] = "initech"
	fresh, err := json.Marshal(rec)
	require.NoError(t, err)
	resp, body = e.do(request{method: "PUT", path: "/v1/subscribers/initech", token: adminToken, body: string(fresh),
		header: map[string]string{"If-Match": "*"}})
	require.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Nil(t, e.reg.Record("initech"))

	resp, _ = e.do(request{method: "DELETE", path: "/v1/subscribers/acme", token: adminToken, header: map[string]string{"If-Match": stored}})
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
}

// TestPartnerChangesNeedTheRegistry: a server without the registry (the
// effective records, where the partner's own keys and secrets are) refuses
// a partner's change rather than making it from the record as written,
// which would drop the partner's own secrets rotated earlier.
func TestPartnerChangesNeedTheRegistry(t *testing.T) {
	e := newEnv(t, withPartners, func(s *api.Server) { s.Registry = nil })
	resp, body := e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	resp, body = e.do(request{method: "PUT", path: "/v1/partner/email/" + acmeMail + "/key", token: partnerToken,
		contentType: "application/pgp-keys", body: "-----BEGIN PGP PUBLIC KEY BLOCK-----\n"})
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.Empty(t, e.reg.SecretsOverlays("acme"), "nothing written")
}

// recreatedDirectory answers the record as written as another incarnation
// than the registry's effective record holds: the partner's record was
// deleted and created again between lockRecord's two reads.
type recreatedDirectory struct{ *subscribers.Registry }

func (d recreatedDirectory) Record(id string) *subscribers.Subscriber {
	rec := d.Registry.Record(id)
	if rec == nil {
		return nil
	}
	c := *rec
	c.Incarnation = "recreated"
	return &c
}

// TestPartnerChangeRefusedAcrossARecreation: a partner's change that reads
// its record as written and as in force from two incarnations (a deletion
// and re-creation landing between the reads) is refused with 503 and
// writes nothing, rather than carry one incarnation's secrets under the
// other's.
func TestPartnerChangeRefusedAcrossARecreation(t *testing.T) {
	e := newEnv(t, withPartners, func(s *api.Server) { s.Directory = recreatedDirectory{s.Registry.(*subscribers.Registry)} })
	resp, body := e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "changed while it was read")
	assert.Empty(t, e.reg.SecretsOverlays("acme"), "nothing written")
}

// TestCatchUpFailureLogsNoSecret: when the registry cannot catch up, the
// error is logged by route, never by the request's path, which may hold
// a whole webhook secret (a partner retiring it by value).
func TestCatchUpFailureLogsNoSecret(t *testing.T) {
	e := newEnv(t, withPartners, func(s *api.Server) {
		s.Partner.Sync = func(context.Context) error { return errors.New("broker unreachable") }
	})
	resp, body := e.do(request{method: "DELETE", path: "/v1/partner/webhooks/0/secrets/" + testSecret, token: partnerToken})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	logs := e.logs.String()
	require.Contains(t, logs, "broker unreachable", "the failure is logged")
	assert.NotContains(t, logs, strings.TrimPrefix(testSecret, "whsec_"), "the secret in the path is never logged")
}

// staleFirstDirectory answers the first read of a record as written with
// the record before an administrator's change of its webhook's secrets,
// and every later read as the registry holds it: the change landed
// between lockRecord's reads of the record as written and in force.
type staleFirstDirectory struct {
	*subscribers.Registry
	before *subscribers.Subscriber
	reads  *int
}

func (d staleFirstDirectory) Record(id string) *subscribers.Subscriber {
	*d.reads++
	if *d.reads == 1 {
		return d.before
	}
	return d.Registry.Record(id)
}

// TestPartnerChangeRefusedAcrossAnAdminChange: a partner's secret rotation
// that reads its record as written before an administrator's change of
// the webhook's secrets, and the record in force after it, is refused
// (503, nothing written) rather than answered 201 with a secret that is
// never in force.
func TestPartnerChangeRefusedAcrossAnAdminChange(t *testing.T) {
	const revoked = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"
	var reads int
	e := newEnv(t, withPartners, func(s *api.Server) {
		reg := s.Registry.(*subscribers.Registry)
		before := *reg.Record("acme")
		before.Webhooks = []subscribers.Webhook{{URL: acmeHook, Secrets: []string{revoked}}}
		s.Directory = staleFirstDirectory{Registry: reg, before: &before, reads: &reads}
	})
	resp, body := e.do(request{method: "POST", path: "/v1/partner/webhooks/0/secrets", token: partnerToken})
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "changed while it was read")
	assert.Empty(t, e.reg.SecretsOverlays("acme"), "nothing written")
}
