package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
)

func TestEveryQueryAfterAMixedWorkload(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeWorkload(w)
	v := run(t, t.TempDir(), b)

	// The alerts topic: the first authentic record of an id is the alert.
	p, ok := v.Published("a1")
	require.True(t, ok)
	assert.Equal(t, "Phishing wave", p.Title)
	assert.Equal(t, a1(t).Digest(), p.Digest)
	assert.Equal(t, "api:alice", p.IssuedBy)
	assert.Equal(t, at(time.Minute), p.IssuedAt)
	assert.Equal(t, 1, p.Duplicates, "the identical alert again")
	assert.Equal(t, 1, p.Conflicts, "another alert under the same id")
	assert.JSONEq(t, string(mustJSON(t, a1(t))), string(p.Alert), "the bytes as published")
	p, ok = v.Published("a2")
	require.True(t, ok)
	assert.Equal(t, "api:bob", p.ApprovedBy)
	_, ok = v.Published("u1")
	assert.False(t, ok, "written without Herald's key")
	_, ok = v.Published("bad")
	assert.False(t, ok, "not an alert")

	// The release log.
	r, ok := v.Release("p1")
	require.True(t, ok)
	assert.Equal(t, record.StatePending, r.State(now), "a forged rejection changes nothing")
	assert.NotEmpty(t, r.Submitted.Alert)
	r, ok = v.Release("p2")
	require.True(t, ok)
	assert.Equal(t, record.StateExpired, r.State(now))
	r, ok = v.Release("p3")
	require.True(t, ok)
	require.NotNil(t, r.Rejected)
	assert.Equal(t, "api:bob", r.Rejected.By)
	assert.Equal(t, "not sourced", r.Rejected.Reason)
	r, ok = v.Release("p4")
	require.True(t, ok)
	assert.Equal(t, "Submitted twice", titleOf(t, r.Submitted.Alert))
	assert.Equal(t, 1, r.Conflicts)
	assert.Nil(t, r.Approved, "an approval of another digest does not count")
	r, ok = v.Release("a2")
	require.True(t, ok)
	assert.Equal(t, record.StatePublished, r.State(now))
	_, ok = v.Release("a1")
	assert.False(t, ok)

	// Status: the same fold as the ledger's, of authentic receipts only.
	got, err := v.Lookup(t.Context(), []string{"a1", "a2", "a3", "nope", "other", "x9"})
	require.NoError(t, err)
	want := ledgerOf(t, b, "a1", "a2", "a3", "nope", "other", "x9")
	require.Equal(t, want, got)
	require.Equal(t, []string{"a1", "a2"}, sortedKeys(got))
	a := got["a1"]
	assert.Equal(t, map[string]int{"delivered": 1, "dead": 1, "pending": 1, "withheld": 1}, a.Counts())
	assert.Equal(t, "partner:bank-soc", a.Acks["bank"].By)
	assert.NotContains(t, a.Acks, "farm", "a forged acknowledgement")
	assert.True(t, a.Received("bank", "", bankMail))
	assert.False(t, a.Received("farm", "", farmMail))

	// The alert list, newest first.
	all, next, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Empty(t, next)
	assert.Equal(t, []string{"a3", "p3", "p2", "p1", "p4", "a2", "a1"}, ids(all))
	byID := map[string]view.Summary{}
	for _, s := range all {
		byID[s.ID] = s
	}
	assert.Equal(t, view.Summary{ID: "a1", Title: "Phishing wave", Type: "alert", TLP: "GREEN", Marking: "OFFICIAL",
		State: record.StatePublished, Provenance: view.Provenance{IssuedBy: "api:alice", IssuedAt: at(time.Minute)},
		Counts: map[string]int{"delivered": 1, "dead": 1, "pending": 1, "withheld": 1}, Acks: 1,
		FannedOut: at(70 * time.Second), At: at(time.Minute)}, byID["a1"])
	assert.Equal(t, "api:bob", byID["a2"].ApprovedBy)
	assert.Equal(t, map[string]int{"pending": 1, "delivered": 1}, byID["a2"].Counts)
	assert.Equal(t, record.StatePublished, byID["a3"].State)
	assert.Empty(t, byID["a3"].Counts)
	assert.Equal(t, record.StateRejected, byID["p3"].State)
	assert.Equal(t, "api:bob", byID["p3"].RejectedBy)
	assert.Equal(t, "not sourced", byID["p3"].RejectReason)
	assert.Equal(t, record.StateExpired, byID["p2"].State)
	assert.Equal(t, "RED", string(byID["p2"].TLP))
	assert.Equal(t, record.StatePending, byID["p1"].State)
	assert.Equal(t, at(time.Hour), byID["p1"].ExpiresAt)
	assert.Equal(t, "Waiting for a second analyst", byID["p1"].Title)

	// One alert's summary is its row of the list.
	for _, s := range all {
		got, ok, err := v.Summary(s.ID)
		require.NoError(t, err)
		require.True(t, ok, s.ID)
		assert.Equal(t, s, got, s.ID)
	}
	for _, id := range []string{"nope", "", "a1\x00"} {
		_, ok, err := v.Summary(id)
		require.NoError(t, err)
		assert.False(t, ok, "%q is not in the list", id)
	}

	for state, want := range map[string][]string{
		record.StatePending:   {"p1", "p4"},
		record.StateExpired:   {"p2"},
		record.StateRejected:  {"p3"},
		record.StatePublished: {"a3", "a2", "a1"},
	} {
		items, _, err := v.List(view.ListQuery{State: state})
		require.NoError(t, err)
		assert.Equal(t, want, ids(items), state)
	}
	page, next, err := v.List(view.ListQuery{Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, []string{"a3", "p3", "p2"}, ids(page))
	page, next, err = v.List(view.ListQuery{Limit: 3, Before: next})
	require.NoError(t, err)
	assert.Equal(t, []string{"p1", "p4", "a2"}, ids(page))
	page, next, err = v.List(view.ListQuery{Limit: 3, Before: next})
	require.NoError(t, err)
	assert.Equal(t, []string{"a1"}, ids(page))
	assert.Empty(t, next)
	page, _, err = v.List(view.ListQuery{Before: "p1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"p4", "a2", "a1"}, ids(page), "before an alert id")
	page, _, err = v.List(view.ListQuery{State: record.StatePublished, Before: "p1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"a2", "a1"}, ids(page))
	_, _, err = v.List(view.ListQuery{State: "sent"})
	assert.ErrorContains(t, err, `state: "sent" is not one of`)
	_, _, err = v.List(view.ListQuery{Before: "nope"})
	assert.ErrorContains(t, err, `before: alert "nope" is not in the list`)
	_, _, err = v.List(view.ListQuery{Before: "c:!!"})
	assert.ErrorContains(t, err, "before: not a cursor")
	_, _, err = v.List(view.ListQuery{Limit: -1})
	assert.ErrorContains(t, err, "limit: -1 is negative")

	// A partner's own deliveries: never what was withheld from it.
	bank, next, err := v.PartnerDeliveries("bank", view.PartnerQuery{})
	require.NoError(t, err)
	assert.Empty(t, next)
	require.Len(t, bank, 3)
	assert.Equal(t, view.PartnerDelivery{Alert: "a2", Type: "alert", TLP: "AMBER", DeliveryID: delivery.ID("a2", "bank", bankMail),
		Channel: "email", Target: bankMail, Mode: delivery.ModeEncrypted, State: delivery.StatePending,
		UpdatedAt: at(190 * time.Second), FannedOut: at(190 * time.Second)}, bank[0])
	assert.Equal(t, view.PartnerDelivery{Alert: "a1", Type: "alert", TLP: "GREEN", DeliveryID: delivery.ID("a1", "bank", bankMail),
		Channel: "email", Target: bankMail, Mode: delivery.ModeSigned, State: delivery.StateDelivered, Attempts: 2,
		LastError: "smtp 451 try later", UpdatedAt: at(140 * time.Second), FannedOut: at(70 * time.Second),
		Acknowledged: true, AcknowledgedAt: at(200 * time.Second)}, bank[1])
	assert.Equal(t, bankHook, bank[2].Target)
	assert.Equal(t, delivery.StateDead, bank[2].State)
	assert.Equal(t, "http 400", bank[2].LastError)

	farm, _, err := v.PartnerDeliveries("farm", view.PartnerQuery{})
	require.NoError(t, err)
	require.Len(t, farm, 1, "a1 was withheld from the farm")
	assert.Equal(t, "a2", farm[0].Alert)
	farm, _, err = v.PartnerDeliveries("farm", view.PartnerQuery{Alert: "a1"})
	require.NoError(t, err)
	assert.Empty(t, farm)
	hotel, _, err := v.PartnerDeliveries("hotel", view.PartnerQuery{})
	require.NoError(t, err)
	require.Len(t, hotel, 1, "a key notice went to the hotel")
	assert.Equal(t, delivery.ModeKeyNotice, hotel[0].Mode)

	for state, want := range map[string][]string{
		delivery.StateDelivered: {bankMail}, delivery.StateDead: {bankHook}, delivery.StatePending: {bankMail},
		delivery.StateRetrying: nil, delivery.StateAvailable: nil,
	} {
		ds, _, err := v.PartnerDeliveries("bank", view.PartnerQuery{State: state})
		require.NoError(t, err)
		var targets []string
		for _, d := range ds {
			targets = append(targets, d.Target)
			assert.Equal(t, state, d.State)
		}
		assert.Equal(t, want, targets, state)
	}
	ds, _, err := v.PartnerDeliveries("bank", view.PartnerQuery{Alert: "a1"})
	require.NoError(t, err)
	require.Len(t, ds, 2)
	assert.Equal(t, []string{bankMail, bankHook}, []string{ds[0].Target, ds[1].Target}, "in the order of the unfiltered list")
	one, next, err := v.PartnerDeliveries("bank", view.PartnerQuery{Alert: "a1", Limit: 1})
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, bankMail, one[0].Target)
	one, next, err = v.PartnerDeliveries("bank", view.PartnerQuery{Alert: "a1", Limit: 1, Before: next})
	require.NoError(t, err)
	require.Len(t, one, 1)
	assert.Equal(t, bankHook, one[0].Target)
	assert.Empty(t, next)
	paged := allPages(t, func(before string) ([]view.PartnerDelivery, string, error) {
		return v.PartnerDeliveries("bank", view.PartnerQuery{Limit: 1, Before: before})
	})
	assert.Equal(t, bank, paged)
	_, _, err = v.PartnerDeliveries("bank", view.PartnerQuery{State: delivery.StateWithheld})
	assert.ErrorContains(t, err, `state: "withheld" is not a delivery state`)
	_, _, err = v.PartnerDeliveries("", view.PartnerQuery{})
	assert.ErrorContains(t, err, "subscriber:")

	// The audit trail, newest first, authentic entries only.
	trail, next, err := v.Audit(view.AuditQuery{})
	require.NoError(t, err)
	assert.Empty(t, next)
	assert.Equal(t, []string{record.ActionTokenRefused, record.ActionSubscriberPut, record.ActionReject, record.ActionSubmit,
		record.ActionApprove, record.ActionPublish}, actions(trail))
	assert.Equal(t, "unknown token", trail[0].Reason)
	assert.Equal(t, map[string]any{"changed": []any{"clearance"}}, trail[1].Details)
	for name, c := range map[string]struct {
		q    view.AuditQuery
		want []string
	}{
		"actor":        {view.AuditQuery{Actor: "api:bob"}, []string{record.ActionReject, record.ActionApprove}},
		"action":       {view.AuditQuery{Action: record.ActionSubmit}, []string{record.ActionSubmit}},
		"object":       {view.AuditQuery{Object: "alert:"}, []string{record.ActionReject, record.ActionSubmit, record.ActionApprove, record.ActionPublish}},
		"object+actor": {view.AuditQuery{Object: "alert:p", Actor: "api:alice"}, []string{record.ActionSubmit}},
		"window":       {view.AuditQuery{Since: at(3 * time.Minute), Until: at(9 * time.Minute)}, []string{record.ActionReject, record.ActionSubmit, record.ActionApprove}},
		"actor window": {view.AuditQuery{Actor: "api:bob", Until: at(8 * time.Minute)}, []string{record.ActionApprove}},
		"nobody":       {view.AuditQuery{Actor: "api:mallory"}, nil},
	} {
		got, _, err := v.Audit(c.q)
		require.NoError(t, err)
		assert.Equal(t, c.want, actions(got), name)
	}
	page2, next, err := v.Audit(view.AuditQuery{Limit: 4})
	require.NoError(t, err)
	require.Len(t, page2, 4)
	rest, next, err := v.Audit(view.AuditQuery{Limit: 4, Before: next})
	require.NoError(t, err)
	assert.Empty(t, next)
	assert.Equal(t, trail, append(page2, rest...))
	_, _, err = v.Audit(view.AuditQuery{Since: at(time.Hour), Until: at(time.Minute)})
	assert.ErrorContains(t, err, "since:")

	st := v.Stats()
	assert.Equal(t, int64(w.forged[bus.TopicAlerts]+w.forged[bus.TopicPending]+w.forged[bus.TopicReceipts]+w.forged[bus.TopicAudit]), sum(st.Skipped))
	assert.Equal(t, int64(2), sum(st.Malformed), "the undecodable alert and the receipt filed under another key")
	assert.Equal(t, sumInt(w.authentic)-2, sum(st.Applied))
}

func titleOf(t *testing.T, raw []byte) string {
	var a struct{ Title string }
	require.NoError(t, json.Unmarshal(raw, &a))
	return a.Title
}

func actions(as []record.Audit) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Action)
	}
	return out
}

func TestRebuiltViewEqualsLiveView(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	live := run(t, t.TempDir(), b)

	// The live view applies the workload as it is written, in many
	// transactions, interleaving the topics otherwise than a rebuild.
	writeReceipts(w)
	require.NoError(t, live.Sync(t.Context()))
	// The quarantine records before the alerts they refuse: q1 is
	// placed as quarantined when the alerts topic publishes it.
	writeQuarantine(w)
	require.NoError(t, live.Sync(t.Context()))
	w.publish(q1(t))
	writeAudit(w)
	writeAlerts(w)
	require.NoError(t, live.Sync(t.Context()))
	writeBindings(w)
	require.NoError(t, live.Sync(t.Context()))
	// More: an entry changing its decision to withhold, retries.
	w.receipts(false,
		decision("a4", "gym", delivery.ChannelWebhook, "https://gym.example/h", delivery.Deliver, delivery.ModeSigned, at(9*time.Minute)),
		outcome("a4", "gym", "https://gym.example/h", delivery.StateRetrying, 1, "timeout", at(9*time.Minute+time.Second)),
	)
	require.NoError(t, live.Sync(t.Context(), bus.TopicReceipts))
	w.receipts(false,
		decision("a4", "gym", delivery.ChannelWebhook, "https://gym.example/h", delivery.Withhold, "", at(9*time.Minute+2*time.Second)),
		outcome("a4", "gym", "https://gym.example/h", delivery.StateRetrying, 2, "timeout", at(9*time.Minute+3*time.Second)),
	)
	require.NoError(t, live.Sync(t.Context()))
	// The pull channel: made available, pulled, a withdrawal notice, and
	// one withheld, across transactions.
	w.receipts(false,
		decision("a4", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(9*time.Minute)),
		outcome("a4", "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", at(9*time.Minute)),
		decision("a4", "hotel", delivery.ChannelPull, delivery.TargetPull, delivery.Withhold, "", at(9*time.Minute)),
	)
	require.NoError(t, live.Sync(t.Context()))
	w.receipts(false, outcome("a4", "gym", delivery.TargetPull, delivery.StateDelivered, 1, "", at(9*time.Minute+4*time.Second)))
	require.NoError(t, live.Sync(t.Context()))
	w.receipts(false,
		decision("a5", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModeCancelNotice, at(10*time.Minute)),
		outcome("a5", "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", at(10*time.Minute)),
	)
	require.NoError(t, live.Sync(t.Context()))
	require.Greater(t, live.Stats().Transactions, int64(6))

	rebuilt := run(t, t.TempDir(), b)
	want := dump(t, live.View)
	got := dump(t, rebuilt.View)
	require.Equal(t, want, got)
	// The dump is not empty: it holds what the workload wrote.
	require.Len(t, want.Lists[""], 10)
	require.Len(t, want.Lists[record.StateQuarantined], 1)
	require.Equal(t, "q1", want.Lists[record.StateQuarantined][0].ID)
	require.Equal(t, fanout.ReasonUnapproved, want.Lists[record.StateQuarantined][0].QuarantineReason)
	require.NotContains(t, ids(want.Lists[record.StatePublished]), "q1")
	require.Len(t, want.Partner["bank///"], 3)
	require.Len(t, want.Partner["bank///email"], 2)
	require.Len(t, want.Partner["gym///pull"], 2)
	require.Len(t, want.Partner["gym//a4/pull"], 1)
	require.Len(t, want.Partner["gym/available//pull"], 1, "a5: a4 was pulled")
	require.Empty(t, want.Partner["hotel///pull"], "withheld")
	require.Equal(t, uint64(2), want.PullRev["gym"], "two decisions on gym's pull entries")
	require.Equal(t, uint64(1), want.PullRev["hotel"])
	require.Len(t, want.Audit["all"], 6)
	// The first authentic binding of each id; g1, of which nothing else
	// is held, answers Lookup from its binding; a2, whose binding was
	// forged, is fanned out without one.
	require.Equal(t, a1(t).Digest(), want.Bindings["a1"].Digest)
	require.NotContains(t, want.Bindings, "a2")
	wantLedger := ledgerOf(t, b, dumpIDs...)
	wantLedger["g1"] = ledger.Restore(ledger.Meta{ID: "g1", Digest: g1Digest, FannedOut: at(time.Minute)}, nil, nil)
	a := a3(t)
	wantLedger["a3"] = ledger.Restore(ledger.Meta{ID: "a3", Type: a.Type, TLP: a.TLP, Marking: a.Marking, Title: a.Title,
		Digest: a.Digest(), IssuedBy: a.IssuedBy, ApprovedBy: a.ApprovedBy, FannedOut: at(9 * time.Minute)}, nil, nil)
	require.Equal(t, wantLedger, got.Lookup)
	var unbound []string
	for _, u := range want.Unbound {
		unbound = append(unbound, u.ID)
	}
	require.Contains(t, unbound, "a2")
	require.NotContains(t, unbound, "a1")
	// a1's second binding, to another digest, displaces its first.
	require.Len(t, want.Displaced, 1)
	require.Equal(t, "a1", want.Displaced[0].Binding.ID)
	require.Equal(t, record.DisplacedOtherDigest, want.Displaced[0].Why)
}

func TestPartnerNeverSeesWhatWasWithheld(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	v := run(t, t.TempDir(), b)
	const hook = "https://gym.example/h"
	w.receipts(false,
		decision("w1", "gym", delivery.ChannelEmail, "it@gym.example", delivery.Withhold, "", at(time.Minute)),
		// An outcome for a withheld entry (it never should be) shows nothing either.
		outcome("w1", "gym", "it@gym.example", delivery.StateDelivered, 1, "", at(2*time.Minute)),
		// A decision without one: an outcome alone.
		outcome("w2", "gym", hook, delivery.StateDead, 1, "http 400", at(3*time.Minute)),
		decision("w3", "gym", delivery.ChannelWebhook, hook, delivery.Deliver, delivery.ModeSigned, at(4*time.Minute)),
	)
	require.NoError(t, v.Sync(t.Context()))
	got := partnerAlerts(t, v, "gym")
	assert.Equal(t, []string{"w3"}, got)

	// A decision that turns to withhold takes the entry away.
	w.receipts(false, decision("w3", "gym", delivery.ChannelWebhook, hook, delivery.Withhold, "", at(5*time.Minute)))
	require.NoError(t, v.Sync(t.Context()))
	assert.Empty(t, partnerAlerts(t, v, "gym"))
	for _, st := range []string{delivery.StatePending, delivery.StateDelivered, delivery.StateDead} {
		ds, _, err := v.PartnerDeliveries("gym", view.PartnerQuery{State: st})
		require.NoError(t, err)
		assert.Empty(t, ds, st)
	}
	for _, id := range []string{"w1", "w2", "w3"} {
		ds, _, err := v.PartnerDeliveries("gym", view.PartnerQuery{Alert: id})
		require.NoError(t, err)
		assert.Empty(t, ds, id)
	}
	// Analysts still see every entry.
	all, err := v.Lookup(t.Context(), []string{"w1", "w2", "w3"})
	require.NoError(t, err)
	assert.Len(t, all, 3)
	assert.Equal(t, delivery.Withhold, all["w3"].Entries()[0].Decision)
}

func partnerAlerts(t *testing.T, v *running, sub string) []string {
	t.Helper()
	ds, _, err := v.PartnerDeliveries(sub, view.PartnerQuery{})
	require.NoError(t, err)
	var out []string
	for _, d := range ds {
		out = append(out, d.Alert)
	}
	return out
}

func TestRestartResumesFromStoredOffsets(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	dir := t.TempDir()
	writeAlerts(w)
	v := run(t, dir, b)
	first := v.Stats()
	v.stop()
	require.Equal(t, int64(w.authentic[bus.TopicAlerts]+w.authentic[bus.TopicPending]-1), sum(first.Applied), "all but the undecodable alert")

	writeReceipts(w)
	writeAudit(w)

	v = run(t, dir, b)
	require.NoError(t, v.Sync(t.Context()))
	st := v.Stats()
	assert.Zero(t, st.Rebuilds)
	assert.Zero(t, st.Applied[bus.TopicAlerts], "nothing read again")
	assert.Zero(t, st.Applied[bus.TopicPending], "nothing read again")
	assert.Equal(t, int64(w.authentic[bus.TopicReceipts]-1), st.Applied[bus.TopicReceipts], "every receipt but the one filed under another key, once")
	assert.Equal(t, int64(w.authentic[bus.TopicAudit]), st.Applied[bus.TopicAudit])
	assert.Equal(t, int64(w.forged[bus.TopicReceipts]+w.forged[bus.TopicAudit]), sum(st.Skipped))
	items, _, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Len(t, items, 7)
	got, err := v.Lookup(t.Context(), []string{"a1", "a2"})
	require.NoError(t, err)
	require.Equal(t, ledgerOf(t, b, "a1", "a2"), got)
}

// workloadCluster starts a cluster with the workload written.
func workloadCluster(t *testing.T, opts ...kafkatest.Option) (*kafkatest.Cluster, *bus.Bus, *writer) {
	c := kafkatest.Start(t, opts...)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeWorkload(w)
	return c, b, w
}

func TestRebuildsForAnotherCluster(t *testing.T) {
	_, ba, _ := workloadCluster(t, kafkatest.Partitions(1))
	dir := t.TempDir()
	run(t, dir, ba).stop()

	// A cluster holding fewer records: the stored offsets are beyond its
	// high watermarks.
	cb := kafkatest.Start(t, kafkatest.Partitions(1))
	bb := cb.Open(t, cb.Config())
	wb := newWriter(t, cb, bb)
	wb.publish(a3(t))
	v := run(t, dir, bb)
	assert.EqualValues(t, 1, v.Stats().Rebuilds)
	items, _, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"a3"}, ids(items))
	v.stop()

	// A cluster holding more records, other ones: the record at a stored
	// offset is not the one applied.
	_, bc, wc := workloadCluster(t, kafkatest.Partitions(1))
	wc.publish(alert(t, "c1", "Only on the third cluster", alerts.TLPGreen, "api:carol", at(9*time.Minute), "", time.Time{}))
	v = run(t, dir, bc)
	assert.EqualValues(t, 1, v.Stats().Rebuilds)
	items, _, err = v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"c1", "a3", "p3", "p2", "p1", "p4", "a2", "a1"}, ids(items))
	v.stop()

	// The same cluster and records: nothing is rebuilt or read again.
	v = run(t, dir, bc)
	assert.Zero(t, v.Stats().Rebuilds)
	assert.Zero(t, sum(v.Stats().Applied))
	v.stop()

	// Other partition counts.
	_, bd, _ := workloadCluster(t, kafkatest.Partitions(3))
	v = run(t, dir, bd)
	assert.EqualValues(t, 1, v.Stats().Rebuilds)
	got, err := v.Lookup(t.Context(), []string{"a1", "a2"})
	require.NoError(t, err)
	require.Equal(t, ledgerOf(t, bd, "a1", "a2"), got)
	v.stop()

	// Another topic prefix on the same cluster.
	ce := kafkatest.Start(t, kafkatest.Partitions(3), kafkatest.TopicPrefix("other."))
	be := ce.Open(t, ce.Config())
	v = run(t, dir, be)
	assert.EqualValues(t, 1, v.Stats().Rebuilds)
	items, _, err = v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Empty(t, items)
}

func TestRebuildsWhenTheStoreCannotBeTrusted(t *testing.T) {
	_, b, w := workloadCluster(t)
	total := sumInt(w.authentic) - 2 // the two records the view cannot read
	dir := t.TempDir()
	v := run(t, dir, b)
	want := dump(t, v.View)
	v.stop()

	// Closed cleanly, then reopened: nothing is read again.
	v = run(t, dir, b)
	assert.Zero(t, sum(v.Stats().Applied))
	v.stop()

	// Another schema version: rebuilt at Open.
	db, err := bbolt.Open(filepath.Join(dir, "view.db"), 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, db.Update(func(tx *bbolt.Tx) error { return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("0")) }))
	require.NoError(t, db.Close())
	v = run(t, dir, b)
	assert.Equal(t, total, sum(v.Stats().Applied))
	assert.Equal(t, want, dump(t, v.View))
	v.stop()

	// Not closed cleanly, same boot: a process crash leaves the file
	// whole, and the view resumes.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "view.state"), []byte(`{"clean":false,"boot":"`+bootID(t)+`"}`), 0o600))
	v = run(t, dir, b)
	assert.Zero(t, sum(v.Stats().Applied))
	v.stop()

	// Not closed cleanly before the machine restarted: rebuilt.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "view.state"), []byte(`{"clean":false,"boot":"another boot"}`), 0o600))
	v = run(t, dir, b)
	assert.Equal(t, total, sum(v.Stats().Applied))
	assert.Equal(t, want, dump(t, v.View))
	v.stop()

	// A file that is not a store: rebuilt.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "view.db"), []byte("garbage, not a bbolt file, long enough to be read as pages"), 0o600))
	v = run(t, dir, b)
	assert.Equal(t, total, sum(v.Stats().Applied))
	assert.Equal(t, want, dump(t, v.View))
}

func bootID(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	require.NoError(t, err, "these tests run on Linux")
	return string(trimNL(b))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func TestRebuildsWhenTheClusterIsReplacedWhileRunning(t *testing.T) {
	c, b, _ := workloadCluster(t, kafkatest.Partitions(1), kafkatest.WithProxy())
	v := run(t, t.TempDir(), b)
	require.NoError(t, v.Sync(t.Context()))
	before, err := v.PullRevision("bank")
	require.NoError(t, err)

	// The broker comes back empty at the same address (no data dir): the
	// offsets the view follows from are beyond the new high watermarks.
	c.Restart()
	fresh := c.Open(t, c.Config()) // creates the topics on the new broker
	n1 := decision("n1", "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(time.Hour))
	require.NoError(t, fresh.Producer(bus.TopicReceipts).Write(t.Context(), kafka.Message{Key: []byte("n1"), Value: mustJSON(t, n1)}))

	require.Eventually(t, func() bool { return v.Stats().Rebuilds == 1 }, waitFor, tick)
	require.NoError(t, v.Sync(t.Context()))
	after, err := v.PullRevision("bank")
	require.NoError(t, err)
	assert.Equal(t, before.Epoch+1, after.Epoch, "a revision of the old cluster's view is never one of the new")
	got, err := v.Lookup(t.Context(), []string{"a1", "n1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"n1"}, sortedKeys(got), "what the old cluster held is gone")
	items, _, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Equal(t, []string{"n1"}, ids(items))
}

func TestRecordsDeletedByRetentionAreGone(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	b := c.Open(t, c.Config())
	p := b.Producer(bus.TopicReceipts)
	// Older than the receipts topic's retention (400 days by default).
	old := func(id string) kafka.Message {
		r := decision(id, "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(0))
		return kafka.Message{Key: []byte(id), Value: mustJSON(t, r), Time: time.Now().Add(-500 * 24 * time.Hour)}
	}
	fresh := func(id string) kafka.Message {
		r := decision(id, "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(time.Minute))
		return kafka.Message{Key: []byte(id), Value: mustJSON(t, r)}
	}
	require.NoError(t, p.Write(t.Context(), old("r1"), old("r2")))
	require.NoError(t, p.Write(t.Context(), fresh("r3")))
	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(t.Context(), bus.TopicReceipts)
		return err == nil && offs[bus.TopicReceipts][0].Start == 2
	}, waitFor, tick)

	dir := t.TempDir()
	v := run(t, dir, b)
	assert.EqualValues(t, 1, v.Stats().Applied[bus.TopicReceipts])
	got, err := v.Lookup(t.Context(), []string{"r1", "r2", "r3"})
	require.NoError(t, err)
	assert.Equal(t, []string{"r3"}, sortedKeys(got))
	v.stop()

	// While the view was stopped, retention deleted records beyond its
	// stored offset, and the record it applied last: it moves on to the
	// first record held.
	require.NoError(t, p.Write(t.Context(), old("r4"), old("r5")))
	require.NoError(t, p.Write(t.Context(), fresh("r6")))
	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(t.Context(), bus.TopicReceipts)
		return err == nil && offs[bus.TopicReceipts][0].Start == 5
	}, waitFor, tick)
	v = run(t, dir, b)
	require.NoError(t, v.Sync(t.Context()))
	assert.Zero(t, v.Stats().Rebuilds)
	assert.EqualValues(t, 1, v.Stats().Applied[bus.TopicReceipts])
	got, err = v.Lookup(t.Context(), []string{"r3", "r4", "r5", "r6"})
	require.NoError(t, err)
	assert.Equal(t, []string{"r3", "r6"}, sortedKeys(got), "what the view applied stays; what was deleted unread is gone")
}

func TestSyncWaitsForEverythingWrittenBefore(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	v, err := view.Open(t.TempDir(), view.Options{Now: func() time.Time { return now }})
	require.NoError(t, err)
	t.Cleanup(func() { _ = v.Close() })

	// Sync before Run waits for Run.
	synced := make(chan error, 1)
	go func() { synced <- v.Sync(t.Context()) }()
	w.publish(a1(t))
	select {
	case <-v.Ready():
		t.Fatal("ready before Run")
	case err := <-synced:
		t.Fatalf("Sync returned before Run: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx, b) }()
	select {
	case err := <-synced:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Sync did not return")
	}
	<-v.Ready()

	// Whatever was written before Sync is visible when it returns.
	var waited time.Duration
	for i := range 20 {
		id := "s" + string(rune('a'+i))
		w.receipts(false, decision(id, "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(time.Duration(i)*time.Second)))
		w.write(true, bus.TopicReceipts, id, []byte("forged"))
		start := time.Now()
		require.NoError(t, v.Sync(t.Context(), bus.TopicReceipts))
		waited += time.Since(start)
		got, err := v.Lookup(t.Context(), []string{id})
		require.NoError(t, err)
		require.Contains(t, got, id)
	}
	assert.EqualValues(t, 20, v.Stats().Skipped[bus.TopicReceipts], "forged records are skipped, and Sync still returns")
	t.Logf("Sync right after a write returned after %s on average", waited/20)

	short, cancelShort := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancelShort()
	<-short.Done()
	assert.Error(t, v.Sync(short), "an ended context")

	cancel()
	require.NoError(t, <-done)
	w.publish(a2(t))
	assert.ErrorContains(t, v.Sync(t.Context()), "stopped")
	assert.ErrorContains(t, v.Run(t.Context(), b), "twice")
}

func TestReadyWhenCaughtUpWithWhatWasThere(t *testing.T) {
	// Empty topics: ready at once.
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	v := run(t, t.TempDir(), b)
	items, _, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Empty(t, items)
	v.stop()

	// Ready means everything written before Run began is applied.
	_, b, _ = workloadCluster(t)
	v = run(t, t.TempDir(), b)
	items, _, err = v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Len(t, items, 7)
	trail, _, err := v.Audit(view.AuditQuery{})
	require.NoError(t, err)
	assert.Len(t, trail, 6)
}

func TestOpenRefusesAStoreInUse(t *testing.T) {
	dir := t.TempDir()
	v, err := view.Open(dir, view.Options{})
	require.NoError(t, err)
	defer v.Close()
	_, err = view.Open(dir, view.Options{})
	require.ErrorContains(t, err, "in use by another process")
	require.NoError(t, v.Close())
	_, _, err = v.List(view.ListQuery{})
	require.ErrorIs(t, err, view.ErrClosed)
}

// TestSyncRightAfterARestart: a Sync called as a restarted view starts,
// before it has read its stored positions, returns as soon as they show
// that nothing is missing, not when the next record arrives (or after
// 30 s when none does).
func TestSyncRightAfterARestart(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeWorkload(w)
	dir := t.TempDir()
	run(t, dir, b).stop()
	for i := range 5 {
		v, err := view.Open(dir, view.Options{Log: kafkatest.Logger(t, slog.LevelWarn), Now: func() time.Time { return now }})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx, b) }()
		start := time.Now()
		require.NoError(t, v.Sync(t.Context(), bus.TopicReceipts), "restart %d", i)
		assert.Less(t, time.Since(start), 5*time.Second, "restart %d: Sync waited for a record that never came", i)
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, v.Close())
	}
}

// TestFanOutScopeKeepsWhatTheFanOutAsks: a view of ScopeFanOut answers
// Published as the whole view does, and Lookup as the ledger folded from
// the alert receipts and decisions alone (what rule 7, lineage and the
// identity check read); it answers nothing else, keeps no outcome, and a
// store kept in one scope is rebuilt when opened in the other.
func TestFanOutScopeKeepsWhatTheFanOutAsks(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeWorkload(w)
	all := run(t, t.TempDir(), b)
	dir := t.TempDir()
	lean := runScope(t, dir, b, view.ScopeFanOut)

	want := dump(t, all.View)
	for _, id := range dumpIDs {
		p, ok := lean.Published(id)
		require.Equal(t, want.Published[id] != nil, ok, id)
		if ok {
			require.Equal(t, want.Published[id], p, id)
		}
		_, ok = lean.Release(id)
		require.False(t, ok, "release logs are not kept")
	}
	got := lookupAll(t, lean)
	decided := ledgerOfKinds(t, b, []string{delivery.KindAlert, delivery.KindDecision}, dumpIDs...)
	require.Equal(t, decided, got)
	require.True(t, got["a1"].Received("bank", "", bankMail), "rule 7 reads the decisions")
	require.False(t, got["a1"].Received("farm", "", farmMail))
	require.Equal(t, map[string]int{delivery.StatePending: 3, delivery.StateWithheld: 1}, got["a1"].Counts(), "no outcome is kept")
	require.Empty(t, got["a1"].Acks)
	require.Equal(t, want.Lookup["a2"].Meta, got["a2"].Meta)

	_, _, err := lean.List(view.ListQuery{})
	require.ErrorIs(t, err, view.ErrNotKept)
	_, _, err = lean.PartnerDeliveries("bank", view.PartnerQuery{})
	require.ErrorIs(t, err, view.ErrNotKept)
	_, _, err = lean.Summary("a1")
	require.ErrorIs(t, err, view.ErrNotKept)
	_, _, err = lean.Audit(view.AuditQuery{})
	require.ErrorIs(t, err, view.ErrNotKept)
	require.ErrorIs(t, lean.Sync(t.Context(), bus.TopicPending), view.ErrNotKept, "a topic it does not follow is never caught up with")

	// Live and rebuilt alike.
	w.receipts(false, decision("a3", "gym", delivery.ChannelWebhook, "https://gym.example/h", delivery.Deliver, delivery.ModeSigned, at(9*time.Minute)),
		outcome("a3", "gym", "https://gym.example/h", delivery.StateDelivered, 1, "", at(9*time.Minute+time.Second)),
		alertReceipt(a3(t), at(9*time.Minute+2*time.Second)))
	require.NoError(t, lean.Sync(t.Context()))
	rebuilt := runScope(t, t.TempDir(), b, view.ScopeFanOut)
	live, again := lookupAll(t, lean), lookupAll(t, rebuilt)
	require.Equal(t, live, again)
	require.Equal(t, ledgerOfKinds(t, b, []string{delivery.KindAlert, delivery.KindDecision}, dumpIDs...), again)

	// The store kept for the fan-out is rebuilt for the whole view, and
	// the other way round.
	lean.stop()
	whole := run(t, dir, b)
	require.NoError(t, all.Sync(t.Context()))
	require.Equal(t, dump(t, all.View), dump(t, whole.View))
	whole.stop()
	again2 := runScope(t, dir, b, view.ScopeFanOut)
	require.Equal(t, live, lookupAll(t, again2))
}

// TestPackedReceiptsFoldAsWrittenSingly: a receipts topic holding the
// workload's receipts packed into arrays (a run of one alert's receipts
// in one record, a lone receipt an object, as delivery.PackReceipts
// writes them) gives the view of either scope, and the ledger, that the
// same receipts written one per record give; an array holding one receipt
// of another alert is refused whole.
func TestPackedReceiptsFoldAsWrittenSingly(t *testing.T) {
	more := func(w *writer) {
		w.receipts(false,
			decision("a4", "gym", delivery.ChannelWebhook, "https://gym.example/h", delivery.Deliver, delivery.ModeSigned, at(9*time.Minute)),
			outcome("a4", "gym", "https://gym.example/h", delivery.StateRetrying, 1, "timeout", at(9*time.Minute+time.Second)),
			decision("a4", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(9*time.Minute)),
			outcome("a4", "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", at(9*time.Minute)),
			decision("a4", "hotel", delivery.ChannelPull, delivery.TargetPull, delivery.Withhold, "", at(9*time.Minute)),
		)
		// The deliver role's outcomes alone, and a lone one.
		w.receipts(false,
			outcome("a4", "gym", "https://gym.example/h", delivery.StateDelivered, 2, "", at(9*time.Minute+5*time.Second)),
			outcome("a4", "gym", delivery.TargetPull, delivery.StateDelivered, 1, "", at(9*time.Minute+4*time.Second)),
		)
		w.receipts(false, outcome("a1", "hotel", hotelMail, delivery.StateDelivered, 1, "", at(9*time.Minute)))
	}
	cs := kafkatest.Start(t)
	bs := cs.Open(t, cs.Config())
	single := newWriter(t, cs, bs)
	writeWorkload(single)
	more(single)

	cp := kafkatest.Start(t)
	bp := cp.Open(t, cp.Config())
	packed := newWriter(t, cp, bp)
	packed.pack = true
	writeWorkload(packed)
	more(packed)
	// An array with one receipt of another alert: none of it is applied.
	packed.pack = false
	bad := delivery.PackReceipts([][]byte{
		mustJSON(t, decision("a4", "farm", delivery.ChannelEmail, farmMail, delivery.Deliver, delivery.ModeSigned, at(9*time.Minute))),
		mustJSON(t, ack("a4", "gym", "partner:gym", "never applied", at(9*time.Minute))),
		mustJSON(t, outcome("a2", "bank", bankMail, delivery.StateDelivered, 1, "", at(9*time.Minute))),
	})
	require.Len(t, bad, 1)
	packed.write(false, bus.TopicReceipts, "a4", bad[0])

	records := func(b *bus.Bus) (objects, arrays, receipts int) {
		require.NoError(t, b.ReadAll(t.Context(), bus.TopicReceipts, func(m kafka.Message) error {
			rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
			switch {
			case err != nil:
			case m.Value[0] == '[':
				arrays++
			default:
				objects++
			}
			receipts += len(rs)
			return nil
		}))
		return objects, arrays, receipts
	}
	so, sa, sr := records(bs)
	po, pa, pr := records(bp)
	require.Zero(t, sa)
	require.Greater(t, pa, 2, "packed: arrays")
	require.Positive(t, po, "packed: and objects")
	require.Less(t, po+pa, so, "fewer records")
	require.Equal(t, sr, pr, "the same receipts")

	for _, scope := range []view.Scope{view.ScopeAll, view.ScopeFanOut} {
		vs := runScope(t, t.TempDir(), bs, scope)
		vp := runScope(t, t.TempDir(), bp, scope)
		require.NoError(t, vs.Sync(t.Context()))
		require.NoError(t, vp.Sync(t.Context()))
		assert.EqualValues(t, 1, vp.Stats().Malformed[bus.TopicReceipts]-vs.Stats().Malformed[bus.TopicReceipts], "scope %d: the bad array", scope)
		if scope == view.ScopeAll {
			want, got := dump(t, vs.View), dump(t, vp.View)
			for id, p := range want.Published {
				// Written to two clusters: the alerts' record times differ.
				require.WithinDuration(t, p.Time, got.Published[id].Time, time.Minute)
				p.Time, got.Published[id].Time = time.Time{}, time.Time{}
			}
			require.Equal(t, want, got)
			require.Equal(t, 2, want.Lookup["a4"].Counts()[delivery.StateDelivered])
			require.Empty(t, want.Lookup["a4"].Acks)
			require.False(t, got.Lookup["a4"].Received("farm", "", farmMail), "nothing of the bad array")
			continue
		}
		got := lookupAll(t, vp)
		require.Equal(t, lookupAll(t, vs), got)
		require.Equal(t, ledgerOfKinds(t, bp, []string{delivery.KindAlert, delivery.KindDecision}, dumpIDs...), got)
	}

	// The ledger read from the topic folds alike.
	got := lookupAll(t, ledger.FromBus(bp))
	require.Equal(t, lookupAll(t, ledger.FromBus(bs)), got)
	require.Equal(t, ledgerOf(t, bs, dumpIDs...), got)
}

// TestRebuildsWhenThePublishingKeysChange: what the view holds was
// authenticated with the keyring it was read with, so a view kept under
// another keyring is read again. A key removed (retired, or revoked after
// a compromise) no longer vouches for the records the view took on its
// word: Kafka read now refuses them, and the view must too (rule 7's prior
// recipients, the status, the list). A key added vouches for records the
// view skipped (written, during a rotation, by a process that already
// signs with it): the view must take them.
func TestRebuildsWhenThePublishingKeysChange(t *testing.T) {
	c, b, w := workloadCluster(t, kafkatest.Partitions(1))
	data, err := os.ReadFile(kafkatest.KeyFile(t))
	require.NoError(t, err)
	both, err := busauth.Parse(append(data, busauth.Format(bytes.Repeat([]byte{7}, busauth.KeySize))...))
	require.NoError(t, err)
	withBoth := c.OpenWith(t, c.Config(), bus.Options{Keyring: both, Log: kafkatest.Logger(t, slog.LevelWarn)})
	dir := t.TempDir()

	v := run(t, dir, b)
	require.Equal(t, sumInt(w.forged), sum(v.Stats().Skipped), "the other key's records are not authentic")
	v.stop()

	// The other key added: what it signed is authentic now.
	v = run(t, dir, withBoth)
	require.NoError(t, v.Sync(t.Context()))
	assert.EqualValues(t, 1, v.Stats().Rebuilds, "the keyring gained a key")
	got, err := v.Lookup(t.Context(), []string{"a1", "a2"})
	require.NoError(t, err)
	require.Equal(t, ledgerOf(t, withBoth, "a1", "a2"), got, "the records signed with the added key are taken")
	require.Equal(t, delivery.StateDelivered, entryOf(t, got["a1"], "farm").State)
	v.stop()

	// The same keyring again: nothing is read again.
	v = run(t, dir, withBoth)
	assert.Zero(t, v.Stats().Rebuilds)
	assert.Zero(t, sum(v.Stats().Applied))
	v.stop()

	// The key removed: nothing it signed is vouched for any more.
	v = run(t, dir, b)
	require.NoError(t, v.Sync(t.Context()))
	assert.EqualValues(t, 1, v.Stats().Rebuilds, "the keyring lost a key")
	got, err = v.Lookup(t.Context(), []string{"a1", "a2"})
	require.NoError(t, err)
	require.Equal(t, ledgerOf(t, b, "a1", "a2"), got, "the records signed with the removed key are gone")
	require.NotEqual(t, delivery.StateDelivered, entryOf(t, got["a1"], "farm").State)
}

// entryOf returns a's entry for sub (its only one in the workload).
func entryOf(t *testing.T, a *ledger.Alert, sub string) ledger.Entry {
	t.Helper()
	require.NotNil(t, a)
	for _, e := range a.Entries() {
		if e.Subscriber == sub {
			return e
		}
	}
	t.Fatalf("alert %s has no entry for %s", a.ID, sub)
	return ledger.Entry{}
}

// The desk's tiles: Counts says what List says, state by state, and
// PublishedSince counts the published alerts released at or after Since,
// an approval counted at its own time (a2 was submitted at 2 minutes and
// approved at 3).
func TestCountsAgreeWithTheList(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeWorkload(w)
	v := run(t, t.TempDir(), b)

	got, err := v.Counts(view.CountQuery{})
	require.NoError(t, err)
	assert.Nil(t, got.PublishedSince, "not asked")
	listed := func(state string) []view.Summary {
		items, next, err := v.List(view.ListQuery{State: state, Limit: view.MaxLimit})
		require.NoError(t, err)
		require.Empty(t, next)
		return items
	}
	for state, n := range map[string]int{
		record.StatePending: got.Pending, record.StateExpired: got.Expired, record.StatePublished: got.Published,
		record.StateRejected: got.Rejected, record.StateQuarantined: got.Quarantined,
	} {
		assert.Len(t, listed(state), n, state)
	}
	assert.Equal(t, view.Counts{Pending: 2, Expired: 1, Published: 3, Rejected: 1}, got)

	published := listed(record.StatePublished)
	for _, since := range []time.Duration{0, time.Minute, 2 * time.Minute, 150 * time.Second, 3 * time.Minute, time.Hour} {
		want := 0
		for _, s := range published {
			if !s.Released().Before(at(since)) {
				want++
			}
		}
		got, err := v.Counts(view.CountQuery{Since: at(since)})
		require.NoError(t, err)
		require.NotNil(t, got.PublishedSince)
		assert.Equal(t, want, *got.PublishedSince, "since %s", since)
	}
	got, err = v.Counts(view.CountQuery{Since: at(150 * time.Second)})
	require.NoError(t, err)
	assert.Equal(t, 2, *got.PublishedSince, "a2, approved at 3 minutes though listed at 2, and a3")
}

// A view that rebuilds for a cluster replaced while it runs forgets the
// old cluster's log starts: the new cluster's records, at offsets below
// where the old alerts topic started, are held (Retained), not taken for
// records retention deleted.
func TestRetainedAfterTheClusterIsReplaced(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1), kafkatest.WithProxy())
	b := c.Open(t, c.Config())
	v := run(t, t.TempDir(), b)
	old := func(id string) kafka.Message {
		m, err := json.Marshal(alert(t, id, "Old "+id, alerts.TLPGreen, "api:alice", at(0), "", time.Time{}))
		require.NoError(t, err)
		return kafka.Message{Key: []byte(id), Value: m, Time: time.Now().Add(-500 * 24 * time.Hour)}
	}
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(), old("o1"), old("o2"), old("o3")))
	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(t.Context(), bus.TopicAlerts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 3
	}, waitFor, tick)
	require.NoError(t, v.Sync(t.Context()))

	c.Restart()
	fresh := c.Open(t, c.Config())
	require.NoError(t, fresh.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte("a1"), Value: mustJSON(t, a1(t))}))
	require.Eventually(t, func() bool { return v.Stats().Rebuilds == 1 }, waitFor, tick)
	require.NoError(t, v.Sync(t.Context()))
	_, ok := v.Published("a1")
	require.True(t, ok)
	_, ok = v.Retained("a1")
	assert.True(t, ok, "the new cluster's first record, at offset 0")
}

// When retention deletes an alert's record while a later record under its
// id with other content survives, a view rebuilt from Kafka takes the
// survivor for the id (Published); the alert receipt says which content
// was fanned out, and nothing that answers for it (Retained, Held: the
// pull collection, the fan-out's lineage) answers the survivor: the
// alert is gone. Receipts applied after the survivor (as while a view is
// rebuilt) move the revision, so that nothing made from the survivor is
// kept.
func TestConflictingSurvivorIsNotTheAlert(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	b := c.Open(t, c.Config())
	orig := alert(t, "c1", "The alert fanned out", alerts.TLPGreen, "api:alice", at(0), "", time.Time{})
	other := alert(t, "c1", "Another alert under its id", alerts.TLPGreen, "api:mallory", at(time.Minute), "", time.Time{})
	survivorOf(t, c, b, orig, other)

	v := run(t, t.TempDir(), b)
	p, ok := v.Published("c1")
	require.True(t, ok)
	require.Equal(t, other.Digest(), p.Digest, "the first record the topic still holds")
	_, ok = v.Retained("c1")
	require.True(t, ok, "no receipts yet: nothing says which alert the id names")
	before, err := v.PullRevision("bank")
	require.NoError(t, err)

	w := newWriter(t, c, b)
	w.receipts(false, alertReceipt(orig, at(time.Minute)),
		decision("c1", "bank", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(time.Minute)))
	require.NoError(t, v.Sync(t.Context()))
	_, ok = v.Retained("c1")
	assert.False(t, ok, "the receipts say another alert was fanned out under c1")
	_, err = v.Held(t.Context(), "c1")
	assert.ErrorIs(t, err, ledger.ErrGone)
	after, err := v.PullRevision("bank")
	require.NoError(t, err)
	assert.NotEqual(t, before.Gone, after.Gone, "what was made from the survivor is not kept")

	// A view rebuilt now answers alike.
	fresh := run(t, t.TempDir(), b)
	_, ok = fresh.Retained("c1")
	assert.False(t, ok)
	_, err = fresh.Held(t.Context(), "c1")
	assert.ErrorIs(t, err, ledger.ErrGone)
}

// A partner's rows wait for the not_before of the alert that was fanned
// out, not for a conflicting survivor's: after retention deleted an
// embargoed alert's record, a later record under its id without a
// not_before does not show the partner the alert early, live or rebuilt.
func TestPartnerRowsWaitForTheFannedOutAlert(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	b := c.Open(t, c.Config())
	orig := alert(t, "c2", "The alert fanned out", alerts.TLPGreen, "api:alice", at(0), "", time.Time{})
	notBefore := at(48 * time.Hour)
	orig.NotBefore = &notBefore
	other := alert(t, "c2", "Another alert under its id", alerts.TLPGreen, "api:mallory", at(time.Minute), "", time.Time{})
	survivorOf(t, c, b, orig, other)

	v := run(t, t.TempDir(), b)
	w := newWriter(t, c, b)
	w.receipts(false, alertReceipt(orig, at(time.Minute)),
		decision("c2", "bank", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(time.Minute)))
	require.NoError(t, v.Sync(t.Context()))
	for name, v := range map[string]*running{"live": v, "rebuilt": run(t, t.TempDir(), b)} {
		got, _, err := v.PartnerDeliveries("bank", view.PartnerQuery{At: at(time.Hour)})
		require.NoError(t, err)
		assert.NotContains(t, alertsOf(got), "c2", "%s: the survivor's not_before is not the alert's", name)
		got, _, err = v.PartnerDeliveries("bank", view.PartnerQuery{})
		require.NoError(t, err)
		assert.Contains(t, alertsOf(got), "c2", "%s: no At, no filter", name)
	}
}

// An acknowledgement by the partner's record the alert was decided for is
// never replaced by a late one of the partner's old record (a process
// still holding it): the view, applying them one at a time or rebuilt in
// one go, keeps the same one as the ledger.
func TestAckOfTheDecidedRecordStays(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.Partitions(1))
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	a := alert(t, "k1", "Acknowledged", alerts.TLPGreen, "api:alice", at(0), "", time.Time{})
	w.publish(a)
	v := run(t, t.TempDir(), b)
	ack := func(inc, by string, d time.Duration) delivery.Receipt {
		return delivery.Receipt{Kind: delivery.KindAck, AlertID: "k1", Subscriber: "bank", Incarnation: inc, By: by, At: at(d)}
	}
	dec := decision("k1", "bank", delivery.ChannelEmail, "fc@bank.example", delivery.Deliver, delivery.ModeSigned, at(time.Minute))
	dec.Incarnation = "inc-2"
	for _, r := range []delivery.Receipt{alertReceipt(a, at(time.Minute)), dec, ack("inc-2", "new", 2*time.Minute), ack("inc-1", "old", 3*time.Minute)} {
		w.receipts(false, r)
		require.NoError(t, v.Sync(t.Context()))
	}
	for name, v := range map[string]*running{"live": v, "rebuilt": run(t, t.TempDir(), b)} {
		known, err := v.Lookup(t.Context(), []string{"k1"})
		require.NoError(t, err)
		k, ok := known["k1"].Ack("bank", "inc-2")
		assert.True(t, ok, name)
		assert.Equal(t, "new", k.By, "%s: the decided record's acknowledgement stays", name)
	}
}

// TestRebuildsWhenAKeyIsRetired: a key retired keeps its id, yet what it
// vouches for changes: a view built while it was in use is read again, and
// keeps what it signed below its cutoffs and nothing above. A key retired
// before anything was written vouches for nothing; retired at the topics'
// ends, for all it signed; a second retirement with other cutoffs is
// another keyring again.
func TestRebuildsWhenAKeyIsRetired(t *testing.T) {
	c, b, _ := workloadCluster(t, kafkatest.Partitions(1))
	data, err := os.ReadFile(kafkatest.KeyFile(t))
	require.NoError(t, err)
	file := append(data, busauth.Format(bytes.Repeat([]byte{7}, busauth.KeySize))...)
	both, err := busauth.Parse(file)
	require.NoError(t, err)
	opened := func(data []byte) *bus.Bus {
		k, err := busauth.Parse(data)
		require.NoError(t, err)
		return c.OpenWith(t, c.Config(), bus.Options{Keyring: k, Log: kafkatest.Logger(t, slog.LevelError)})
	}
	withBoth := c.OpenWith(t, c.Config(), bus.Options{Keyring: both, Log: kafkatest.Logger(t, slog.LevelWarn)})
	dir := t.TempDir()
	v := run(t, dir, withBoth)
	require.NoError(t, v.Sync(t.Context()))
	require.Equal(t, delivery.StateDelivered, lookupOne(t, v, "a1", "farm"), "the other key's receipts, taken")
	v.stop()

	var topics []string
	for _, tp := range bus.Topics(c.Config(), 0) {
		topics = append(topics, tp.Name)
	}
	offs, err := b.Offsets(t.Context(), topics...)
	require.NoError(t, err)
	ends := busauth.Cutoffs{}
	for topic, ps := range offs {
		for _, p := range ps {
			ends[topic] = append(ends[topic], p.End)
		}
	}
	for _, tc := range []struct {
		name      string
		cutoffs   busauth.Cutoffs
		delivered bool
	}{
		{"retired at the ends", ends, true},
		{"retired before anything was written", busauth.Cutoffs{}, false},
	} {
		retired, _, err := busauth.Retire(file, tc.cutoffs)
		require.NoError(t, err)
		v = run(t, dir, opened(retired))
		require.NoError(t, v.Sync(t.Context()))
		assert.EqualValues(t, 1, v.Stats().Rebuilds, "%s: the keyring changed", tc.name)
		assert.Equal(t, tc.delivered, lookupOne(t, v, "a1", "farm") == delivery.StateDelivered, tc.name)
		v.stop()
	}
}

// lookupOne returns the state of alert id's entry for sub in v.
func lookupOne(t *testing.T, v interface {
	Lookup(context.Context, []string) (map[string]*ledger.Alert, error)
}, id, sub string) string {
	t.Helper()
	got, err := v.Lookup(t.Context(), []string{id})
	require.NoError(t, err)
	return entryOf(t, got[id], sub).State
}
