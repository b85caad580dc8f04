package taxii_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/subscribers"
)

// TestCollectionFollowsWhatItIsMadeFrom: the server keeps a partner's
// collection between requests, and never serves it once what it was made
// from changed: the partner's record (a lower clearance), its pull entries
// (a new alert, a withdrawal), or the time (an alert expired). Each step
// reads the collection first, so that the server keeps it, then changes
// one thing and asks again at once, by TAXII and by the MISP feed.
func TestCollectionFollowsWhatItIsMadeFrom(t *testing.T) {
	e := newEnv(t)
	expires := time.Now().UTC().Add(time.Hour).Truncate(time.Second)
	e.publish(alert("cc-001", nil))
	e.publish(alert("cc-002", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber }))
	e.publish(alert("cc-003", func(a *alerts.Alert) { a.ExpiresAt = &expires }))
	e.publish(alert("cc-004", nil))

	pulled := func(token, subscriber string) []string {
		t.Helper()
		objects, _ := e.all(token, subscriber, "", 3)
		return alertsIn(objects)
	}
	events := func(token string) int {
		t.Helper()
		r := e.feed("manifest.json", token)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var manifest map[string]any
		require.NoError(t, json.Unmarshal(r.body, &manifest))
		return len(manifest)
	}
	all := []string{"cc-001", "cc-002", "cc-003", "cc-004"}
	require.Equal(t, all, pulled(charityToken, "charity"))
	require.Equal(t, all, pulled(charityToken, "charity"), "the same, kept")
	require.Equal(t, 4, events(charityToken))

	// (a) The partner's record: a lower clearance takes the AMBER alert
	// away at once, and a higher one gives it back.
	e.put("charity", func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPGreen })
	require.Equal(t, []string{"cc-001", "cc-003", "cc-004"}, pulled(charityToken, "charity"))
	require.Equal(t, 3, events(charityToken))
	e.put("charity", func(s *subscribers.Subscriber) { s.Clearance = alerts.TLPRed })
	require.Equal(t, all, pulled(charityToken, "charity"))
	require.Equal(t, 4, events(charityToken))

	// (b) A new alert to pull is there at once.
	require.Equal(t, []string{"cc-001", "cc-003", "cc-004"}, pulled(bankToken, "bank"))
	require.Equal(t, 3, events(bankToken))
	e.publish(alert("cc-005", nil))
	require.Equal(t, []string{"cc-001", "cc-003", "cc-004", "cc-005"}, pulled(bankToken, "bank"))
	require.Equal(t, 4, events(bankToken))
	// A withdrawal: an update raised above what the bank may pull
	// withdraws the alert it updates at once (the bank gets a notice on
	// its pull channel).
	e.publish(alert("cc-006", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"cc-005"}, alerts.TLPAmber
	}))
	require.Equal(t, []string{"cc-001", "cc-003", "cc-004"}, pulled(bankToken, "bank"))
	require.Equal(t, 3, events(bankToken))

	// (c) The time: cc-003 leaves every collection the moment it expires.
	// (cc-006 is the charity's latest version of cc-005's objects.)
	require.Equal(t, []string{"cc-001", "cc-002", "cc-003", "cc-004", "cc-006"}, pulled(charityToken, "charity"))
	e.ahead.Store(int64(time.Until(expires) + time.Second))
	require.Equal(t, []string{"cc-001", "cc-004"}, pulled(bankToken, "bank"))
	require.Equal(t, 2, events(bankToken))
	require.Equal(t, []string{"cc-001", "cc-002", "cc-004", "cc-006"}, pulled(charityToken, "charity"))
}

// TestPullsAreRecordedOnceAcrossReplicas: a replica whose kept collection
// was made before another replica served its alerts asks the view, and
// records no pull again.
func TestPullsAreRecordedOnceAcrossReplicas(t *testing.T) {
	e := newEnv(t)
	e.publish(alert("rr-001", nil))
	e.publish(alert("rr-002", nil))
	other := e.replica()
	// The other replica keeps the bank's collection: nothing pulled yet.
	require.Equal(t, http.StatusOK, other.get(collectionPath("bank")+"manifest/", bankToken).status)
	require.Equal(t, http.StatusOK, other.feed("manifest.json", bankToken).status)

	_, _ = e.all(bankToken, "bank", "", 100)
	e.synced()
	want := map[string]int{"rr-001/bank": 1, "rr-002/bank": 1}
	require.Equal(t, want, pulls(t, e))

	_, _ = other.all(bankToken, "bank", "", 100)
	var manifest map[string]any
	require.NoError(t, json.Unmarshal(other.feed("manifest.json", bankToken).body, &manifest))
	for id := range manifest {
		require.Equal(t, http.StatusOK, other.feed(id+".json", bankToken).status)
	}
	e.synced()
	require.Equal(t, want, pulls(t, e), "one receipt per alert, whichever replica serves it")
	require.Len(t, e.audit.all(), 2, "one audit entry per first pull")
}

// TestWithdrawalAheadOfItsAlert: a withdrawal notice the view holds before
// the alert it names (the receipts topic ahead of the alerts topic) cannot
// say yet what it withdraws; the collection made meanwhile is not kept, so
// the withdrawn alert leaves as soon as the view has the notice's alert.
func TestWithdrawalAheadOfItsAlert(t *testing.T) {
	e := newEnv(t)
	e.publish(alert("wa-001", nil))
	require.Equal(t, []string{"wa-001"}, alertsIn(first(t, e)))

	update := alert("wa-002", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"wa-001"}, alerts.TLPAmber
	})
	notice := delivery.Receipt{Kind: delivery.KindDecision, AlertID: update.ID, Subscriber: "bank", Channel: delivery.ChannelPull,
		Target: delivery.TargetPull, Decision: delivery.Notice, Mode: delivery.ModeCancelNotice, Rule: "followup.withdrawn",
		DeliveryID: delivery.ID(update.ID, "bank", delivery.TargetPull), At: e.clock.tick()}
	require.NoError(t, e.bus.Producer(bus.TopicReceipts).Write(t.Context(), fanout.ReceiptMessage(notice)))
	e.synced()
	require.Equal(t, []string{"wa-001"}, alertsIn(first(t, e)), "what the notice withdraws is not known yet")

	v, err := json.Marshal(update)
	require.NoError(t, err)
	require.NoError(t, e.bus.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(update.ID), Value: v}))
	e.synced()
	require.Empty(t, first(t, e), "withdrawn as soon as the view has the update")
}

// first returns the objects of the first page of the bank's collection.
func first(t *testing.T, e *env) []map[string]any {
	t.Helper()
	r := e.objects(bankToken, "bank", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	return list(r.json(t)["objects"])
}

// TestNotBeforeWaits: rule 8 holds for the pull channel as for email and
// webhooks: an alert whose not_before is ahead is not in the collection
// (by TAXII or the MISP feed) until then, nor is a withdrawal by a
// follow-up whose not_before is ahead; at not_before the alert is there,
// dated then, so that a client polling with added_after since before
// not_before finds it, and the withdrawal takes effect.
func TestNotBeforeWaits(t *testing.T) {
	e := newEnv(t)
	notBefore := time.Now().UTC().Add(30 * time.Minute).Truncate(time.Second)
	e.publish(alert("nb-001", nil))
	e.publish(alert("nb-002", func(a *alerts.Alert) { a.NotBefore = &notBefore }))
	// An update above what the bank may pull withdraws nb-001 from its
	// collection, from its not_before on.
	e.publish(alert("nb-003", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP, a.NotBefore = alerts.TypeUpdate, []string{"nb-001"}, alerts.TLPAmber, &notBefore
	}))
	events := func() []string {
		t.Helper()
		r := e.feed("manifest.json", bankToken)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var manifest map[string]map[string]any
		require.NoError(t, json.Unmarshal(r.body, &manifest))
		var titles []string
		for _, ev := range manifest {
			titles = append(titles, ev["info"].(string))
		}
		slices.Sort(titles)
		return titles
	}

	objects, _ := e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"nb-001"}, alertsIn(objects), "nb-002 waits for its not_before; nb-003's withdrawal too")
	require.Equal(t, []string{"Forced labour indicators nb-001"}, events())
	polled := e.serverNow()

	e.ahead.Store(int64(time.Until(notBefore) + time.Second))
	objects, _ = e.all(bankToken, "bank", "", 100)
	require.Equal(t, []string{"nb-002"}, alertsIn(objects), "at not_before nb-002 is there and nb-001 withdrawn")
	require.Equal(t, []string{"Forced labour indicators nb-002"}, events())
	objects, _ = e.all(bankToken, "bank", "added_after="+polled.Format(time.RFC3339Nano), 100)
	require.Equal(t, []string{"nb-002"}, alertsIn(objects), "dated at its not_before: a client polling since before finds it")
}
