package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/subscribers"
)

// TestReRegisteredPartnerSeesNoneOfTheDeletedOnesDeliveries: an
// administrator deletes acme and registers another organisation as acme
// (Herald gives the record a new incarnation): the new acme's
// /v1/partner/deliveries lists nothing decided for the deleted one, nor
// may it acknowledge such an alert; what is decided for it it sees;
// receipts from before Herald recorded incarnations are listed as before.
func TestReRegisteredPartnerSeesNoneOfTheDeletedOnesDeliveries(t *testing.T) {
	e := newEnv(t, withPartners)
	ctx := context.Background()
	old := e.reg.Get("acme")
	require.NotEmpty(t, old.Incarnation, "Herald gives a new record an incarnation")
	require.NoError(t, e.wr.Delete(ctx, "api:ops", "acme"))
	again := &subscribers.Subscriber{ID: "acme", Name: "Another Acme", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: acmeMail}}}
	again.Normalize()
	require.NoError(t, e.wr.Put(ctx, "api:ops", "", []*subscribers.Subscriber{again}, nil))
	cur := e.reg.Get("acme")
	require.NotEmpty(t, cur.Incarnation)
	require.NotEqual(t, old.Incarnation, cur.Incarnation, "a deleted id registered again is a new incarnation")

	decided := func(id, incarnation string) {
		e.publishAs(id)
		e.fannedOut(id, alerts.TLPAmber, alerts.MarkingOfficial)
		did := delivery.ID(id, "acme", acmeMail)
		e.receipts(
			delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, DeliveryID: did, Subscriber: "acme", Incarnation: incarnation,
				Channel: delivery.ChannelEmail, Target: acmeMail, Decision: delivery.Deliver, Mode: delivery.ModeEncrypted,
				Rule: "test", At: testNow.Add(-50 * time.Minute)},
			delivery.Receipt{Kind: delivery.KindOutcome, AlertID: id, DeliveryID: did, Subscriber: "acme", Incarnation: incarnation,
				Channel: delivery.ChannelEmail, Target: acmeMail, State: delivery.StateDelivered, Attempt: 1, At: testNow.Add(-40 * time.Minute)})
	}
	decided("inc-old", old.Incarnation)
	decided("inc-new", cur.Incarnation)
	decided("inc-none", "") // written before receipts named the incarnation
	e.synced()

	resp, body := e.do(request{method: "GET", path: "/v1/partner/deliveries", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var l api.PartnerDeliveryList
	require.NoError(t, json.Unmarshal(body, &l))
	var got []string
	for _, d := range l.Deliveries {
		got = append(got, d.Alert)
	}
	require.ElementsMatch(t, []string{"inc-new", "inc-none"}, got, "nothing decided for the deleted acme")
	resp, body = e.do(request{method: "GET", path: "/v1/partner/deliveries?alert=inc-old", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NotContains(t, string(body), acmeMail)

	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/inc-old/ack", token: partnerToken})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "the new acme cannot acknowledge the old one's alert: %s", body)
	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/inc-new/ack", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
}

// TestPartnerWithoutARecordSeesNoHistory: a partner token whose record is
// gone (deleted, and not yet registered again: the token of the next
// organisation to hold the id, configured early, or the old one's not yet
// revoked) lists no deliveries and acknowledges nothing: no incarnation
// can hold what the id once received.
func TestPartnerWithoutARecordSeesNoHistory(t *testing.T) {
	e := newEnv(t, withPartners)
	ctx := context.Background()
	old := e.reg.Get("acme")
	e.publishAs("gone-1")
	e.fannedOut("gone-1", alerts.TLPAmber, alerts.MarkingOfficial)
	did := delivery.ID("gone-1", "acme", acmeMail)
	e.receipts(
		delivery.Receipt{Kind: delivery.KindDecision, AlertID: "gone-1", DeliveryID: did, Subscriber: "acme", Incarnation: old.Incarnation,
			Channel: delivery.ChannelEmail, Target: acmeMail, Decision: delivery.Deliver, Mode: delivery.ModeEncrypted,
			Rule: "test", At: testNow.Add(-50 * time.Minute)},
		delivery.Receipt{Kind: delivery.KindOutcome, AlertID: "gone-1", DeliveryID: did, Subscriber: "acme", Incarnation: old.Incarnation,
			Channel: delivery.ChannelEmail, Target: acmeMail, State: delivery.StateDelivered, Attempt: 1, At: testNow.Add(-40 * time.Minute)})
	e.synced()
	require.NoError(t, e.wr.Delete(ctx, "api:ops", "acme"))
	require.Eventually(t, func() bool { return e.reg.Get("acme") == nil }, 10*time.Second, 10*time.Millisecond)

	resp, body := e.do(request{method: "GET", path: "/v1/partner/deliveries", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NotContains(t, string(body), "gone-1", "no record, no history")
	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/gone-1/ack", token: partnerToken})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "%s", body)
}

// TestReRegisteredPartnerCannotReplayTheDeletedOnesDeadLetters: the new
// acme's POST /v1/partner/dead/replay requeues none of the deleted acme's
// dead letters (404 naming the id; none with every one asked for): they
// are not its own. Its own, and those written before jobs named the
// incarnation, it replays.
func TestReRegisteredPartnerCannotReplayTheDeletedOnesDeadLetters(t *testing.T) {
	e := newEnv(t, withPartners)
	ctx := context.Background()
	old := e.reg.Get("acme")
	require.NoError(t, e.wr.Delete(ctx, "api:ops", "acme"))
	again := &subscribers.Subscriber{ID: "acme", Name: "Another Acme", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Webhooks: []subscribers.Webhook{{URL: acmeHook}}}
	again.Normalize()
	require.NoError(t, e.wr.Put(ctx, "api:ops", "", []*subscribers.Subscriber{again}, nil))
	require.Eventually(t, func() bool { s := e.reg.Get("acme"); return s != nil && s.Incarnation != old.Incarnation },
		10*time.Second, 10*time.Millisecond)
	cur := e.reg.Get("acme")

	job := func(id, incarnation string) *delivery.Job {
		a := &alerts.Alert{ID: id, Type: alerts.TypeAlert, Title: "t", Severity: alerts.SeveritySevere, TLP: alerts.TLPGreen,
			Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"}}
		return &delivery.Job{ID: delivery.ID(id, "acme", acmeHook), Alert: a, Subscriber: "acme", Incarnation: incarnation,
			Channel: delivery.ChannelWebhook, Target: acmeHook, Mode: delivery.ModeSigned, Attempt: 3}
	}
	theirs, mine, unnamed := job("dl-old", old.Incarnation), job("dl-new", cur.Incarnation), job("dl-none", "")
	for _, j := range []*delivery.Job{theirs, mine, unnamed} {
		e.deadLetter(j)
	}

	resp, body := e.do(request{method: "POST", path: "/v1/partner/dead/replay", token: partnerToken,
		body: `{"ids": ["` + theirs.ID + `"]}`})
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "the deleted acme's dead letter is not the new one's: %s", body)
	resp, body = e.do(request{method: "POST", path: "/v1/partner/dead/replay", token: partnerToken, body: `{}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.JSONEq(t, `{"requeued": 2}`, string(body))
	require.ElementsMatch(t, []string{mine.ID, unnamed.ID}, e.queued(), "never the deleted acme's")
}

// TestReRegisteredPartnerDoesNotSeeTheDeletedOnesAck: acme acknowledges
// an alert whose receipts were written before Herald recorded
// incarnations (so every acme may see it), with a note; acme is deleted
// and another organisation registered as acme. The new acme's deliveries
// show the alert unacknowledged, and its acknowledgement is recorded as
// its own (not "already acknowledged" with the deleted acme's note);
// pressed again, it is its own that it is told of.
func TestReRegisteredPartnerDoesNotSeeTheDeletedOnesAck(t *testing.T) {
	e := newEnv(t, withPartners)
	ctx := context.Background()
	old := e.reg.Get("acme")
	e.decided("ack-none", [4]string{"acme", acmeMail, delivery.Deliver, delivery.StateDelivered}) // no incarnation
	resp, body := e.do(request{method: "POST", path: "/v1/partner/alerts/ack-none/ack", token: partnerToken,
		body: `{"note": "the old acme's note"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	acks := e.ackReceipts()
	require.Len(t, acks, 1)
	require.Equal(t, old.Incarnation, acks[0].Incarnation, "the receipt names the incarnation that acknowledged")

	require.NoError(t, e.wr.Delete(ctx, "api:ops", "acme"))
	again := &subscribers.Subscriber{ID: "acme", Name: "Another Acme", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: acmeMail}}}
	again.Normalize()
	require.NoError(t, e.wr.Put(ctx, "api:ops", "", []*subscribers.Subscriber{again}, nil))
	e.synced()

	resp, body = e.do(request{method: "GET", path: "/v1/partner/deliveries?alert=ack-none", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var l api.PartnerDeliveryList
	require.NoError(t, json.Unmarshal(body, &l))
	require.Len(t, l.Deliveries, 1)
	require.False(t, l.Deliveries[0].Acknowledged, "the deleted acme's acknowledgement is not the new one's")

	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/ack-none/ack", token: partnerToken,
		body: `{"note": "the new acme's note"}`})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var got api.AckResponse
	require.NoError(t, json.Unmarshal(body, &got))
	require.False(t, got.Already, "%s", body)
	require.Equal(t, "the new acme's note", got.Note)
	require.NotContains(t, string(body), "old acme")

	e.synced()
	resp, body = e.do(request{method: "POST", path: "/v1/partner/alerts/ack-none/ack", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NoError(t, json.Unmarshal(body, &got))
	require.True(t, got.Already)
	require.Equal(t, "the new acme's note", got.Note, "its own acknowledgement, not the deleted acme's")
	resp, body = e.do(request{method: "GET", path: "/v1/partner/deliveries?alert=ack-none", token: partnerToken})
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	require.NoError(t, json.Unmarshal(body, &l))
	require.True(t, l.Deliveries[0].Acknowledged)
}
