package view_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
)

const gymHook = "https://gym.example/h"

// writeChannels writes 30 alerts to gym, one a minute: each by email
// (delivered, or retrying for odd ones), every third by webhook, every
// fourth made available to pull (every eighth pulled), and pull withheld
// from the others of every second; bank may pull them all.
func writeChannels(w *writer) {
	for i := range 30 {
		id, when := fmt.Sprintf("c%02d", i), at(time.Duration(i)*time.Minute)
		state := delivery.StateDelivered
		if i%2 == 1 {
			state = delivery.StateRetrying
		}
		w.receipts(false,
			decision(id, "gym", delivery.ChannelEmail, "it@gym.example", delivery.Deliver, delivery.ModeSigned, when),
			outcome(id, "gym", "it@gym.example", state, 1, "", when.Add(time.Second)),
			decision(id, "bank", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, when),
		)
		if i%3 == 0 {
			w.receipts(false, decision(id, "gym", delivery.ChannelWebhook, gymHook, delivery.Deliver, delivery.ModeSigned, when))
		}
		switch {
		case i%4 == 0:
			w.receipts(false,
				decision(id, "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, when),
				outcome(id, "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", when))
			if i%8 == 0 {
				w.receipts(false, outcome(id, "gym", delivery.TargetPull, delivery.StateDelivered, 1, "", when.Add(time.Hour)))
			}
		case i%2 == 0:
			w.receipts(false,
				decision(id, "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Withhold, "", when),
				// An outcome for a withheld entry (it never should be) shows nothing either.
				outcome(id, "gym", delivery.TargetPull, delivery.StateDelivered, 1, "", when))
		}
	}
}

func alertsOf(ds []view.PartnerDelivery) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Alert)
	}
	return out
}

// TestPartnerDeliveriesByChannel: a channel keeps that channel's
// deliveries, newest first, paged by the cursor as without it; with a
// state, the deliveries in both; never one withheld from the partner.
func TestPartnerDeliveriesByChannel(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	writeChannels(w)
	v := run(t, t.TempDir(), b)

	everything := allPages(t, func(before string) ([]view.PartnerDelivery, string, error) {
		return v.PartnerDeliveries("gym", view.PartnerQuery{Limit: 7, Before: before})
	})
	require.Len(t, everything, 30+10+8)
	for _, q := range []view.PartnerQuery{
		{Channel: delivery.ChannelEmail}, {Channel: delivery.ChannelWebhook}, {Channel: delivery.ChannelPull},
		{Channel: delivery.ChannelEmail, State: delivery.StateRetrying}, {Channel: delivery.ChannelEmail, State: delivery.StateDelivered},
		{Channel: delivery.ChannelPull, State: delivery.StateAvailable}, {Channel: delivery.ChannelPull, State: delivery.StateDelivered},
		{Channel: delivery.ChannelWebhook, State: delivery.StatePending}, {Channel: delivery.ChannelWebhook, State: delivery.StateDead},
		{Channel: delivery.ChannelPull, Alert: "c08"}, {Channel: delivery.ChannelEmail, Alert: "c08"},
		{Channel: delivery.ChannelPull, Alert: "c02"}, {Channel: delivery.ChannelPull, Alert: "c08", State: delivery.StateAvailable},
	} {
		name := q.Channel + "/" + q.State + "/" + q.Alert
		want := slices.DeleteFunc(slices.Clone(everything), func(d view.PartnerDelivery) bool {
			return d.Channel != q.Channel || (q.State != "" && d.State != q.State) || (q.Alert != "" && d.Alert != q.Alert)
		})
		if len(want) == 0 {
			want = nil // allPages' answer when there is none
		}
		for _, limit := range []int{1, 3, 500} {
			got := allPages(t, func(before string) ([]view.PartnerDelivery, string, error) {
				q.Limit, q.Before = limit, before
				return v.PartnerDeliveries("gym", q)
			})
			require.Equal(t, want, got, "%s, %d a page", name, limit)
		}
	}

	pull, next, err := v.PartnerDeliveries("gym", view.PartnerQuery{Channel: delivery.ChannelPull, Limit: 3})
	require.NoError(t, err)
	assert.Equal(t, []string{"c28", "c24", "c20"}, alertsOf(pull), "newest first")
	pull, next, err = v.PartnerDeliveries("gym", view.PartnerQuery{Channel: delivery.ChannelPull, Limit: 3, Before: next})
	require.NoError(t, err)
	assert.Equal(t, []string{"c16", "c12", "c08"}, alertsOf(pull), "the next page starts after the cursor")
	require.NotEmpty(t, next)
	both, next, err := v.PartnerDeliveries("gym", view.PartnerQuery{Channel: delivery.ChannelPull, State: delivery.StateDelivered, Limit: 2})
	require.NoError(t, err)
	assert.Equal(t, []string{"c24", "c16"}, alertsOf(both))
	both, next, err = v.PartnerDeliveries("gym", view.PartnerQuery{Channel: delivery.ChannelPull, State: delivery.StateDelivered, Limit: 2, Before: next})
	require.NoError(t, err)
	assert.Equal(t, []string{"c08", "c00"}, alertsOf(both))
	assert.Empty(t, next, "the last page")

	// Withheld from gym: never shown, whatever the filter (their outcome
	// says delivered).
	for _, q := range []view.PartnerQuery{{Channel: delivery.ChannelPull}, {Channel: delivery.ChannelPull, State: delivery.StateDelivered}, {}} {
		ds := allPages(t, func(before string) ([]view.PartnerDelivery, string, error) {
			q.Before = before
			return v.PartnerDeliveries("gym", q)
		})
		for _, d := range ds {
			if d.Channel == delivery.ChannelPull {
				n := 0
				_, _ = fmt.Sscanf(d.Alert, "c%d", &n)
				assert.Zero(t, n%4, "%s was withheld from gym's pull channel", d.Alert)
			}
		}
	}
	for _, id := range []string{"c02", "c06", "c10"} {
		ds, _, err := v.PartnerDeliveries("gym", view.PartnerQuery{Alert: id, Channel: delivery.ChannelPull})
		require.NoError(t, err)
		assert.Empty(t, ds, id)
	}
	// Another partner's pull entries are its own.
	bank, _, err := v.PartnerDeliveries("bank", view.PartnerQuery{Channel: delivery.ChannelPull, Limit: 500})
	require.NoError(t, err)
	assert.Len(t, bank, 30)
	none, _, err := v.PartnerDeliveries("bank", view.PartnerQuery{Channel: delivery.ChannelEmail})
	require.NoError(t, err)
	assert.Empty(t, none)

	_, _, err = v.PartnerDeliveries("gym", view.PartnerQuery{Channel: "fax"})
	require.ErrorContains(t, err, `channel: "fax" is not a channel`)
}

// TestPullRevision: the revision of a partner's pull entries moves with
// each decision about them (made available, withheld, a withdrawal
// notice), and with nothing else: not when the partner pulls, not for its
// other channels, not for another partner.
func TestPullRevision(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	v := run(t, t.TempDir(), b)
	rev := func() view.Revision {
		t.Helper()
		require.NoError(t, v.Sync(t.Context()))
		r, err := v.PullRevision("gym")
		require.NoError(t, err)
		return r
	}
	r0 := rev()
	w.receipts(false, decision("r1", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(time.Minute)),
		outcome("r1", "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", at(time.Minute)))
	r1 := rev()
	assert.NotEqual(t, r0, r1, "an alert made available")
	for _, x := range []struct {
		name   string
		forged bool
		r      delivery.Receipt
	}{
		{"pulled", false, outcome("r1", "gym", delivery.TargetPull, delivery.StateDelivered, 1, "", at(2*time.Minute))},
		{"another channel", false, decision("r2", "gym", delivery.ChannelEmail, "it@gym.example", delivery.Deliver, delivery.ModeSigned, at(3*time.Minute))},
		{"another partner", false, decision("r2", "bank", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(3*time.Minute))},
		{"a forged receipt", true, decision("r3", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(4*time.Minute))},
	} {
		w.receipts(x.forged, x.r)
		assert.Equal(t, r1, rev(), x.name)
	}
	w.receipts(false, decision("r4", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModeCancelNotice, at(5*time.Minute)))
	r2 := rev()
	assert.NotEqual(t, r1, r2, "a withdrawal notice")
	w.receipts(false, decision("r1", "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Withhold, "", at(6*time.Minute)))
	assert.NotEqual(t, r2, rev(), "an alert withheld after all")

	lean := runScope(t, t.TempDir(), b, view.ScopeFanOut)
	_, err := lean.PullRevision("gym")
	require.ErrorIs(t, err, view.ErrNotKept)
}

// TestPartnerDeliveriesWaitForNotBefore: with At, a partner's deliveries
// leave out those of alerts whose not_before is after At — every channel,
// with or without a state, channel or alert — and show them from then on.
func TestPartnerDeliveriesWaitForNotBefore(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	notBefore := at(2 * time.Hour)
	embargoed := alert(t, "nb-1", "embargoed", "GREEN", "api:alice", at(0), "", time.Time{})
	embargoed.NotBefore = &notBefore
	w.publish(embargoed)
	w.publish(alert(t, "now-1", "at once", "GREEN", "api:alice", at(0), "", time.Time{}))
	for _, id := range []string{"nb-1", "now-1"} {
		w.receipts(false,
			decision(id, "gym", delivery.ChannelEmail, "it@gym.example", delivery.Deliver, delivery.ModeSigned, at(time.Minute)),
			decision(id, "gym", delivery.ChannelPull, delivery.TargetPull, delivery.Deliver, delivery.ModePull, at(time.Minute)),
			outcome(id, "gym", delivery.TargetPull, delivery.StateAvailable, 0, "", at(time.Minute)))
	}
	// Receipts of an alert the view does not hold yet (the receipts topic
	// ahead of the alerts topic).
	w.receipts(false, decision("ahead-1", "gym", delivery.ChannelEmail, "it@gym.example", delivery.Deliver, delivery.ModeSigned, at(time.Minute)))
	v := run(t, t.TempDir(), b)

	got, _, err := v.PartnerDeliveries("gym", view.PartnerQuery{At: at(time.Hour)})
	require.NoError(t, err)
	assert.NotContains(t, alertsOf(got), "ahead-1", "an alert the view lacks is held: its not_before is not known")
	got, _, err = v.PartnerDeliveries("gym", view.PartnerQuery{})
	require.NoError(t, err)
	assert.Contains(t, alertsOf(got), "ahead-1", "no At, no filter")
	w.publish(alert(t, "ahead-1", "arrives", "GREEN", "api:alice", at(0), "", time.Time{}))
	require.NoError(t, v.Sync(t.Context()))
	got, _, err = v.PartnerDeliveries("gym", view.PartnerQuery{At: at(time.Hour)})
	require.NoError(t, err)
	assert.Contains(t, alertsOf(got), "ahead-1", "shown once the view holds it")

	for _, q := range []view.PartnerQuery{{}, {Channel: delivery.ChannelPull}, {State: delivery.StatePending},
		{Channel: delivery.ChannelPull, State: delivery.StateAvailable}, {Alert: "nb-1"}} {
		q.At = at(time.Hour)
		got, _, err := v.PartnerDeliveries("gym", q)
		require.NoError(t, err)
		assert.NotContains(t, alertsOf(got), "nb-1", "%+v: before its not_before", q)
		if q.Alert == "" {
			assert.Contains(t, alertsOf(got), "now-1", "%+v", q)
		}
		q.At = notBefore
		got, _, err = v.PartnerDeliveries("gym", q)
		require.NoError(t, err)
		assert.Contains(t, alertsOf(got), "nb-1", "%+v: from its not_before on", q)
		q.At = time.Time{}
		got, _, err = v.PartnerDeliveries("gym", q)
		require.NoError(t, err)
		assert.Contains(t, alertsOf(got), "nb-1", "%+v: no At, no filter", q)
	}
}

// TestPartnerDeliveriesShowKeyExpiryNotices: with At, a partner's
// deliveries still show Herald's own key-expiry notices, which are never
// on the alerts topic and have no not_before: only an analyst's alert the
// view does not hold yet is held back.
func TestPartnerDeliveriesShowKeyExpiryNotices(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	k := delivery.KeyExpiry{Subscriber: "gym", Address: "it@gym.example", Fingerprint: strings.Repeat("AB", 20),
		Expires: at(30 * 24 * time.Hour), Threshold: 30 * 24 * time.Hour}
	notice := k.Notice(at(0))
	w.receipts(false, alertReceipt(notice, at(0)),
		decision(notice.ID, "gym", delivery.ChannelEmail, "it@gym.example", delivery.Notice, delivery.ModeKeyExpiryNotice, at(0)),
		outcome(notice.ID, "gym", "it@gym.example", delivery.StateDelivered, 1, "", at(time.Second)))
	v := run(t, t.TempDir(), b)

	for _, q := range []view.PartnerQuery{{}, {Alert: notice.ID}, {Channel: delivery.ChannelEmail}, {State: delivery.StateDelivered}} {
		q.At = at(time.Hour)
		got, _, err := v.PartnerDeliveries("gym", q)
		require.NoError(t, err)
		assert.Equal(t, []string{notice.ID}, alertsOf(got), "%+v", q)
	}
}
