package view_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
)

// summary returns the view's row of id, which must be listed.
func summary(t *testing.T, v *running, id string) view.Summary {
	t.Helper()
	s, ok, err := v.Summary(id)
	require.NoError(t, err)
	require.True(t, ok, "%s is listed", id)
	return s
}

// listed returns the ids of the alert list in state, newest first.
func listed(t *testing.T, v *running, state string) []string {
	t.Helper()
	items, _, err := v.List(view.ListQuery{State: state})
	require.NoError(t, err)
	return ids(items)
}

// TestQuarantinedAlertShowsTheReason: an alert Herald published that the
// fan-out quarantined (here unapproved: release.second_analyst set on the
// fan-out and not on the api) is listed as quarantined, with the reason
// and error of the quarantine record, not as published and waiting for
// deliveries that will never come. A copy of its content refused as
// unattributed, read first, does not hide Herald's own record's reason.
func TestQuarantinedAlertShowsTheReason(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	own := w.publishAt(q1(t))
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: no herald-auth header",
		w.writeAt(true, bus.TopicAlerts, "q1", mustJSON(t, q1(t))))
	w.quarantine(false, fanout.ReasonUnapproved, unapprovedError, own)
	w.publish(a3(t))
	v := run(t, t.TempDir(), b)

	s := summary(t, v, "q1")
	assert.Equal(t, record.StateQuarantined, s.State)
	assert.Equal(t, fanout.ReasonUnapproved, s.QuarantineReason, "the refusal of Herald's record, not of the copy")
	assert.Equal(t, unapprovedError, s.QuarantineError)
	assert.False(t, s.QuarantinedAt.IsZero())
	assert.Equal(t, "Refused by the fan-out", s.Title)
	assert.Equal(t, "api:dave", s.IssuedBy)
	assert.Empty(t, s.Counts, "it reaches no one")

	assert.Equal(t, []string{"q1"}, listed(t, v, record.StateQuarantined))
	assert.Equal(t, []string{"a3"}, listed(t, v, record.StatePublished), "a quarantined alert is not published")
	assert.Equal(t, []string{"a3", "q1"}, listed(t, v, ""))
	all, _, err := v.List(view.ListQuery{})
	require.NoError(t, err)
	assert.Equal(t, s, all[1], "the list's row is the summary")
	assert.Empty(t, all[0].QuarantineReason, "a published alert has none")

	st := v.Stats()
	assert.EqualValues(t, 2, st.Applied[bus.TopicQuarantine])
}

// TestDuplicateIDQuarantineMarksNotTheListedAlert: a quarantine record
// marks an alert only when it refused the very record the view lists under
// the id. Another alert refused under a3's id (duplicate-id) leaves a3,
// published and not yet fanned out, published; a1's own record
// quarantined after a1 was fanned out (as by a fan-out configured
// otherwise) leaves a1 fanned out, with its deliveries.
func TestDuplicateIDQuarantineMarksNotTheListedAlert(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	a1own := w.publishAt(a1(t))
	w.publish(a3(t))
	w.receipts(false, alertReceipt(a1(t), at(70*time.Second)),
		decision("a1", "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(70*time.Second)))
	other := a3(t)
	other.Title = "Another alert under a3's id"
	w.quarantine(false, fanout.ReasonDuplicateID, "alert a3 was already fanned out with other content",
		w.writeAt(false, bus.TopicAlerts, "a3", mustJSON(t, other)))
	w.quarantine(false, fanout.ReasonUnapproved, unapprovedError, a1own)
	v := run(t, t.TempDir(), b)

	a3s := summary(t, v, "a3")
	assert.Equal(t, record.StatePublished, a3s.State, "another alert's quarantine does not mark a3")
	assert.Empty(t, a3s.QuarantineReason)
	a1s := summary(t, v, "a1")
	assert.Equal(t, record.StatePublished, a1s.State, "fanned out: it stays so")
	assert.Empty(t, a1s.QuarantineReason)
	assert.Equal(t, map[string]int{delivery.StatePending: 1}, a1s.Counts)
	assert.Empty(t, listed(t, v, record.StateQuarantined))
	assert.Equal(t, []string{"a3", "a1"}, listed(t, v, record.StatePublished))
}

// TestQuarantineNotWrittenByHeraldIsIgnored: a quarantine record without
// Herald's authenticator counts for nothing, even one that holds a3's very
// content; it is counted as skipped. An authentic quarantine of an alert
// the view does not list (u1, forged on the alerts topic) lists nothing.
func TestQuarantineNotWrittenByHeraldIsIgnored(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	w.quarantine(true, fanout.ReasonInvalid, "forged", w.publishAt(a3(t)))
	u1 := alert(t, "u1", "Forged", alerts.TLPClear, "api:mallory", at(time.Minute), "", time.Time{})
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: no herald-auth header",
		w.writeAt(true, bus.TopicAlerts, "u1", mustJSON(t, u1)))
	v := run(t, t.TempDir(), b)

	s := summary(t, v, "a3")
	assert.Equal(t, record.StatePublished, s.State)
	assert.Empty(t, s.QuarantineReason)
	_, ok, err := v.Summary("u1")
	require.NoError(t, err)
	assert.False(t, ok, "a forged alert is not listed for being quarantined")
	assert.Equal(t, []string{"a3"}, listed(t, v, ""))
	assert.Empty(t, listed(t, v, record.StateQuarantined))

	st := v.Stats()
	assert.EqualValues(t, 1, st.Skipped[bus.TopicQuarantine], "the forged quarantine record")
}

// TestQuarantineKeepsABoundedError: the error header is kept as valid
// UTF-8 of at most view.MaxQuarantineError bytes, and an authentic record
// without a reason is malformed, marking nothing.
func TestQuarantineKeepsABoundedError(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	q1own := w.publishAt(q1(t))
	w.quarantine(false, "", "no reason", w.publishAt(a3(t)))
	long := strings.Repeat("é", view.MaxQuarantineError) + "\xff"
	w.quarantine(false, fanout.ReasonInvalid, long, q1own)
	v := run(t, t.TempDir(), b)

	s := summary(t, v, "q1")
	require.Equal(t, record.StateQuarantined, s.State)
	assert.Len(t, s.QuarantineError, view.MaxQuarantineError)
	assert.True(t, strings.HasPrefix(long, s.QuarantineError))
	assert.Equal(t, record.StatePublished, summary(t, v, "a3").State)
	assert.EqualValues(t, 1, v.Stats().Malformed[bus.TopicQuarantine])
}

// TestQuarantinedCopyMarksNotHeraldsAlert: anyone who may write to the
// alerts topic can write a copy of an alert Herald published, which the
// fan-out quarantines as unattributed. That refusal of the copy says
// nothing of Herald's record: the alert, not fanned out yet (the fan-out
// is behind), stays published, and its status page keeps waiting for its
// deliveries. Herald's own record refused as unattributed (a fan-out
// without the publishing key that wrote it) does mark its alert.
//
// Nor does a copy of that authentic quarantine record, written by someone
// who may write to the quarantine topic, whose source header names
// Herald's record instead: its headers do not authenticate, and it is
// skipped as a record Herald did not write.
func TestQuarantinedCopyMarksNotHeraldsAlert(t *testing.T) {
	c := kafkatest.Start(t)
	b := c.Open(t, c.Config())
	w := newWriter(t, c, b)
	own := w.publishAt(a3(t))
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: no herald-auth header",
		w.writeAt(true, bus.TopicAlerts, "a3", mustJSON(t, a3(t))))
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: unknown key", w.publishAt(q1(t)))
	forgeSource(t, b, "a3", own)
	v := run(t, t.TempDir(), b)

	s := summary(t, v, "a3")
	assert.Equal(t, record.StatePublished, s.State, "a copy's quarantine does not mark Herald's alert")
	assert.Empty(t, s.QuarantineReason)
	q := summary(t, v, "q1")
	assert.Equal(t, record.StateQuarantined, q.State)
	assert.Equal(t, fanout.ReasonUnissued, q.QuarantineReason)
	assert.Equal(t, []string{"q1"}, listed(t, v, record.StateQuarantined))
	assert.EqualValues(t, 1, v.Stats().Skipped[bus.TopicQuarantine], "the copy with a forged source")
}

// forgeSource copies the authentic quarantine record of id, as it is
// (its authenticators kept), with its source header naming src instead,
// as anyone who may write to the quarantine topic can.
func forgeSource(t *testing.T, b *bus.Bus, id string, src kafka.Message) {
	t.Helper()
	var orig *kafka.Message
	require.NoError(t, b.ReadKeys(t.Context(), bus.TopicQuarantine, []string{id}, func(m kafka.Message) error {
		if b.Authenticate(m) == nil {
			orig = &m
		}
		return nil
	}))
	require.NotNil(t, orig, "an authentic quarantine record of %s", id)
	forged := kafka.Message{Key: orig.Key, Value: orig.Value}
	for _, h := range orig.Headers {
		if h.Key == bus.HeaderSource {
			h.Value = []byte(src.Topic + "/" + strconv.Itoa(src.Partition) + "/" + strconv.FormatInt(src.Offset, 10))
		}
		forged.Headers = append(forged.Headers, h)
	}
	wr := &kafka.Writer{Addr: kafka.TCP(b.Brokers()...), Topic: b.Topic(bus.TopicQuarantine), Balancer: &kafka.Murmur2Balancer{},
		BatchTimeout: time.Millisecond, RequiredAcks: kafka.RequireAll}
	t.Cleanup(func() { _ = wr.Close() })
	require.NoError(t, wr.WriteMessages(t.Context(), forged))
	copied := kafka.Message{Topic: orig.Topic, Key: forged.Key, Value: forged.Value, Headers: forged.Headers}
	require.NoError(t, b.Authenticate(copied), "the copy is as authentic as the record")
}
