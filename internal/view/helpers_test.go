package view_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/viewtest"
	"github.com/herald-alerts/herald/internal/view"
)

const (
	waitFor = 20 * time.Second
	tick    = 5 * time.Millisecond
)

// t0 is when the workloads begin; now is the clock of the views.
var (
	t0  = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	now = t0.Add(10 * time.Minute)
)

func at(d time.Duration) time.Time { return t0.Add(d) }

// running is a view being kept by Run.
type running struct {
	*view.View
	stop func()
}

// run opens the view in dir and runs it on b until stop (or the end of
// the test), then closes it; it returns once the view is ready.
func run(t *testing.T, dir string, b *bus.Bus) *running {
	t.Helper()
	return runScope(t, dir, b, view.ScopeAll)
}

// runScope is run for a view of scope.
func runScope(t *testing.T, dir string, b *bus.Bus, scope view.Scope) *running {
	t.Helper()
	v, stop := viewtest.Run(t, dir, view.Options{Log: kafkatest.Logger(t, slog.LevelWarn), Now: func() time.Time { return now }, Scope: scope}, b, waitFor)
	return &running{View: v, stop: stop}
}

// otherKeyring is a publishing key Herald does not hold: what a bus opened
// with it writes is not authentic.
func otherKeyring(t testing.TB) *busauth.Keyring {
	k, err := busauth.New(bytes.Repeat([]byte{7}, busauth.KeySize))
	require.NoError(t, err)
	return k
}

// writer writes records to the topics, authentic through good and not
// through bad, and counts them per topic.
type writer struct {
	t         *testing.T
	good, bad *bus.Bus
	authentic map[string]int
	forged    map[string]int
	// pack writes the receipts of one call, alert by alert, as arrays.
	pack bool
}

func newWriter(t *testing.T, c *kafkatest.Cluster, good *bus.Bus) *writer {
	bad := c.OpenWith(t, c.Config(), bus.Options{Keyring: otherKeyring(t), Log: kafkatest.Logger(t, slog.LevelError)})
	return &writer{t: t, good: good, bad: bad, authentic: map[string]int{}, forged: map[string]int{}}
}

func (w *writer) write(forged bool, topic, key string, value []byte) {
	w.t.Helper()
	b := w.good
	if forged {
		b = w.bad
		w.forged[topic]++
	} else {
		w.authentic[topic]++
	}
	require.NoError(w.t, b.Producer(topic).Write(w.t.Context(), kafka.Message{Key: []byte(key), Value: value}))
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// alert returns a published alert's JSON.
func alert(t testing.TB, id, title string, tlp alerts.TLP, by string, issued time.Time, approvedBy string, approved time.Time) *alerts.Alert {
	a := &alerts.Alert{ID: id, Title: title, TLP: tlp, Marking: alerts.MarkingOfficial, Severity: alerts.SeverityModerate,
		Summary: "summary of " + title, Handling: alerts.Handling{Code: "P"}, IssuedBy: by, IssuedAt: &issued,
		Audience: alerts.Audience{Sectors: []string{"finance"}}}
	if approvedBy != "" {
		a.ApprovedBy, a.ApprovedAt = approvedBy, &approved
	}
	a.Normalize()
	return a
}

func (w *writer) publish(a *alerts.Alert) { w.write(false, bus.TopicAlerts, a.ID, mustJSON(w.t, a)) }

func (w *writer) release(forged bool, ev record.Release) {
	w.write(forged, bus.TopicPending, ev.ID, mustJSON(w.t, ev))
}

func (w *writer) submit(a *alerts.Alert, expires time.Time) {
	w.release(false, record.Release{Kind: record.Submitted, ID: a.ID, Digest: a.Digest(), Alert: mustJSON(w.t, a),
		By: a.IssuedBy, At: *a.IssuedAt, ExpiresAt: expires})
}

// receipts writes rs, one receipt a record, or, when w packs, each run of
// receipts of one alert as the fan-out and the deliver role write them
// (delivery.PackReceipts: an array, or an object for a run of one).
func (w *writer) receipts(forged bool, rs ...delivery.Receipt) {
	for i := 0; i < len(rs); {
		j := i + 1
		for w.pack && j < len(rs) && rs[j].AlertID == rs[i].AlertID {
			j++
		}
		var encs [][]byte
		for _, r := range rs[i:j] {
			encs = append(encs, mustJSON(w.t, r))
		}
		for _, v := range delivery.PackReceipts(encs) {
			w.write(forged, bus.TopicReceipts, rs[i].AlertID, v)
		}
		i = j
	}
}

func (w *writer) audit(forged bool, a record.Audit) {
	w.write(forged, bus.TopicAudit, a.Object, mustJSON(w.t, a))
}

// place returns where the next record of key on topic goes: the
// message with its topic, partition and offset (and key), as a reader of
// the topic will see it once written.
func (w *writer) place(topic, key string) kafka.Message {
	w.t.Helper()
	pl, err := w.good.Producer(topic).Placement(w.t.Context())
	require.NoError(w.t, err)
	m := kafka.Message{Topic: w.good.Topic(topic), Partition: pl.Partition([]byte(key)), Key: []byte(key)}
	require.NoError(w.t, w.good.ReadAll(w.t.Context(), topic, func(r kafka.Message) error {
		if r.Partition == m.Partition {
			m.Offset = r.Offset + 1
		}
		return nil
	}))
	return m
}

// writeAt is write, returning the record written with its place.
func (w *writer) writeAt(forged bool, topic, key string, value []byte) kafka.Message {
	w.t.Helper()
	m := w.place(topic, key)
	w.write(forged, topic, key, value)
	m.Value = value
	return m
}

// publishAt is publish, returning the record written with its place.
func (w *writer) publishAt(a *alerts.Alert) kafka.Message {
	return w.writeAt(false, bus.TopicAlerts, a.ID, mustJSON(w.t, a))
}

// quarantine writes what the fan-out writes when it refuses src, a record
// of the alerts topic (bus.Rejection: its key and value, with the reason,
// error and source headers, the source naming src's place).
func (w *writer) quarantine(forged bool, reason, errText string, src kafka.Message) {
	w.t.Helper()
	b := w.good
	if forged {
		b = w.bad
		w.forged[bus.TopicQuarantine]++
	} else {
		w.authentic[bus.TopicQuarantine]++
	}
	require.NoError(w.t, b.Producer(bus.TopicQuarantine).Write(w.t.Context(), bus.Rejection(src, reason, errors.New(errText))))
}

// The quarantine workload's alerts: q1 was published and quarantined as
// unapproved; a3's id also names another alert the fan-out refused as a
// duplicate-id; a1 was fanned out and a copy of it quarantined.
var q1 = func(t testing.TB) *alerts.Alert {
	return alert(t, "q1", "Refused by the fan-out", alerts.TLPAmber, "api:dave", at(6*time.Minute+30*time.Second), "", time.Time{})
}

// unapprovedError is the error the fan-out gives q1.
const unapprovedError = "a TLP:AMBER OFFICIAL alert needs a second analyst's approval (release.second_analyst)"

// writeQuarantine writes the quarantine records of the quarantine
// workload: q1 quarantined (first a copy without Herald's authenticator as
// unattributed, then Herald's own record as unapproved, as when
// release.second_analyst is set on the fan-out and not on the api);
// another alert under a3's id refused as a duplicate-id; a copy of a1
// quarantined; u1 (forged: never listed) quarantined as unattributed;
// something that is no alert quarantined as malformed; and a record
// Herald did not write that claims a3 was quarantined. The copies are on
// the alerts topic; Herald's q1 is not yet: the caller publishes it next,
// at the place its quarantine record names.
func writeQuarantine(w *writer) {
	t := w.t
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: no herald-auth header",
		w.writeAt(true, bus.TopicAlerts, "q1", mustJSON(t, q1(t))))
	other := a3(t)
	other.Title = "Another alert under a3's id"
	w.quarantine(false, fanout.ReasonDuplicateID, "alert a3 was already fanned out with other content",
		w.writeAt(true, bus.TopicAlerts, "a3", mustJSON(t, other)))
	w.quarantine(false, fanout.ReasonDuplicateID, "a copy", w.writeAt(true, bus.TopicAlerts, "a1", mustJSON(t, a1(t))))
	w.quarantine(false, fanout.ReasonUnissued, "not published by Herald: no herald-auth header",
		w.writeAt(true, bus.TopicAlerts, "u1", mustJSON(t, alert(t, "u1", "Forged", alerts.TLPClear, "api:mallory", at(time.Minute), "", time.Time{}))))
	w.quarantine(false, fanout.ReasonMalformed, "invalid character 'n'", w.writeAt(true, bus.TopicAlerts, "bad", []byte("{not json")))
	a3src := w.place(bus.TopicAlerts, "a3")
	a3src.Value = mustJSON(t, a3(t))
	w.quarantine(true, fanout.ReasonInvalid, "forged", a3src)
	own := w.place(bus.TopicAlerts, "q1")
	own.Value = mustJSON(t, q1(t))
	w.quarantine(false, fanout.ReasonUnapproved, unapprovedError, own)
}

func decision(id, sub, channel, target, dec, mode string, when time.Time) delivery.Receipt {
	r := delivery.Receipt{Kind: delivery.KindDecision, AlertID: id, Subscriber: sub, Channel: channel, Target: target,
		Decision: dec, Mode: mode, Rule: channel + "." + dec, At: when}
	if dec != delivery.Withhold {
		r.DeliveryID = delivery.ID(id, sub, target)
	}
	return r
}

func outcome(id, sub, target, state string, attempt int, errText string, when time.Time) delivery.Receipt {
	return delivery.Receipt{Kind: delivery.KindOutcome, AlertID: id, Subscriber: sub, Target: target, State: state,
		Attempt: attempt, Error: errText, At: when}
}

func alertReceipt(a *alerts.Alert, when time.Time) delivery.Receipt {
	return delivery.Receipt{Kind: delivery.KindAlert, AlertID: a.ID, Type: a.Type, TLP: a.TLP, Marking: a.Marking,
		Title: a.Title, Digest: a.Digest(), IssuedBy: a.IssuedBy, ApprovedBy: a.ApprovedBy, At: when}
}

func ack(id, sub, by, note string, when time.Time) delivery.Receipt {
	return delivery.Receipt{Kind: delivery.KindAck, AlertID: id, Subscriber: sub, By: by, Note: note, At: when}
}

// Targets of the workload.
const (
	bankMail  = "soc@bank.example"
	bankHook  = "https://hooks.bank.example/herald"
	hotelMail = "sec@hotel.example"
	farmMail  = "it@farm.example"
)

// The workload's alerts.
var (
	a1 = func(t testing.TB) *alerts.Alert {
		return alert(t, "a1", "Phishing wave", alerts.TLPGreen, "api:alice", at(time.Minute), "", time.Time{})
	}
	a2 = func(t testing.TB) *alerts.Alert {
		return alert(t, "a2", "Ransomware at a supplier", alerts.TLPAmber, "api:alice", at(2*time.Minute), "api:bob", at(3*time.Minute))
	}
	a3 = func(t testing.TB) *alerts.Alert {
		return alert(t, "a3", "Not fanned out yet", alerts.TLPGreen, "api:carol", at(7*time.Minute), "", time.Time{})
	}
)

// writeAlerts writes the alerts and release log of the workload: a1
// published (then a duplicate, then a conflict), a2 submitted, approved and
// published, a3 published, p1 pending, p2 expired, p3 rejected, p4 pending
// with a conflicting submission and an approval of the other digest, and
// records Herald did not write.
func writeAlerts(w *writer) {
	t := w.t
	w.publish(a1(t))
	w.publish(a1(t)) // the identical alert again
	conflict := a1(t)
	conflict.Title = "Another alert under a used id"
	w.publish(conflict)
	w.write(false, bus.TopicAlerts, "bad", []byte("{not json"))
	w.write(true, bus.TopicAlerts, "u1", mustJSON(t, alert(t, "u1", "Forged", alerts.TLPClear, "api:mallory", at(time.Minute), "", time.Time{})))

	sub2 := a2(t)
	sub2.ApprovedBy, sub2.ApprovedAt = "", nil
	w.submit(sub2, at(time.Hour))
	w.publish(a2(t))
	w.release(false, record.Release{Kind: record.Approved, ID: "a2", Digest: sub2.Digest(), By: "api:bob", At: at(3 * time.Minute)})

	p1 := alert(t, "p1", "Waiting for a second analyst", alerts.TLPAmber, "api:alice", at(4*time.Minute), "", time.Time{})
	w.submit(p1, at(time.Hour))
	w.release(true, record.Release{Kind: record.Rejected, ID: "p1", Digest: p1.Digest(), By: "api:mallory", At: at(5 * time.Minute), Reason: "forged"})

	p2 := alert(t, "p2", "Nobody approved it", alerts.TLPRed, "api:carol", at(5*time.Minute), "", time.Time{})
	w.submit(p2, at(6*time.Minute))

	p3 := alert(t, "p3", "Refused", alerts.TLPAmber, "api:alice", at(6*time.Minute), "", time.Time{})
	w.submit(p3, at(time.Hour))
	w.release(false, record.Release{Kind: record.Rejected, ID: "p3", Digest: p3.Digest(), By: "api:bob", At: at(8 * time.Minute), Reason: "not sourced"})

	p4 := alert(t, "p4", "Submitted twice", alerts.TLPAmber, "api:alice", at(3*time.Minute+30*time.Second), "", time.Time{})
	w.submit(p4, at(time.Hour))
	other := alert(t, "p4", "Another p4", alerts.TLPAmber, "api:alice", at(3*time.Minute+40*time.Second), "", time.Time{})
	w.submit(other, at(time.Hour))
	w.release(false, record.Release{Kind: record.Approved, ID: "p4", Digest: other.Digest(), By: "api:bob", At: at(9 * time.Minute)})

	w.publish(a3(t))
}

// writeReceipts writes the fan-out and delivery receipts of a1 and a2,
// with retries, a dead letter, acknowledgements and forged receipts.
func writeReceipts(w *writer) {
	t := w.t
	w.receipts(false,
		alertReceipt(a1(t), at(70*time.Second)),
		decision("a1", "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeSigned, at(70*time.Second)),
		decision("a1", "bank", delivery.ChannelWebhook, bankHook, delivery.Deliver, delivery.ModeSigned, at(70*time.Second)),
		decision("a1", "hotel", delivery.ChannelEmail, hotelMail, delivery.Notice, delivery.ModeKeyNotice, at(70*time.Second)),
		decision("a1", "farm", delivery.ChannelEmail, farmMail, delivery.Withhold, "", at(70*time.Second)),
		outcome("a1", "bank", bankMail, delivery.StateRetrying, 1, "smtp 451 try later", at(80*time.Second)),
		outcome("a1", "bank", bankHook, delivery.StateDead, 1, "http 400", at(81*time.Second)),
		outcome("a1", "bank", bankMail, delivery.StateDelivered, 2, "", at(140*time.Second)),
		ack("a1", "bank", "partner:bank-soc", "acting on it", at(200*time.Second)),
		ack("a1", "bank", "email link", "", at(210*time.Second)), // the first one stands
	)
	w.receipts(true,
		ack("a1", "farm", "partner:farm", "forged", at(220*time.Second)),
		outcome("a1", "farm", farmMail, delivery.StateDelivered, 1, "", at(221*time.Second)),
	)
	w.write(false, bus.TopicReceipts, "x9", mustJSON(t, ack("other", "bank", "x", "", at(230*time.Second)))) // filed under another key
	w.receipts(false,
		alertReceipt(a2(t), at(190*time.Second)),
		decision("a2", "bank", delivery.ChannelEmail, bankMail, delivery.Deliver, delivery.ModeEncrypted, at(190*time.Second)),
		decision("a2", "farm", delivery.ChannelEmail, farmMail, delivery.Deliver, delivery.ModeEncrypted, at(190*time.Second)),
		outcome("a2", "farm", farmMail, delivery.StateDelivered, 1, "", at(195*time.Second)),
	)
}

// writeAudit writes the audit trail of the workload.
func writeAudit(w *writer) {
	for _, a := range []record.Audit{
		{At: at(time.Minute), Actor: "api:alice", Action: record.ActionPublish, Object: "alert:a1", Outcome: record.OutcomeOK},
		{At: at(3 * time.Minute), Actor: "api:bob", Action: record.ActionApprove, Object: "alert:a2", Outcome: record.OutcomeOK},
		{At: at(4 * time.Minute), Actor: "api:alice", Action: record.ActionSubmit, Object: "alert:p1", Outcome: record.OutcomeOK},
		{At: at(8 * time.Minute), Actor: "api:bob", Action: record.ActionReject, Object: "alert:p3", Outcome: record.OutcomeOK,
			Details: map[string]any{"reason": "not sourced"}},
		{At: at(9 * time.Minute), Actor: "api:admin", Action: record.ActionSubscriberPut, Object: "subscriber:bank", Outcome: record.OutcomeOK,
			Details: map[string]any{"changed": []any{"clearance"}}},
		{At: at(9*time.Minute + 30*time.Second), Actor: "unknown", Action: record.ActionTokenRefused, Object: "token:x", Outcome: record.OutcomeRefused,
			Reason: "unknown token"},
	} {
		w.audit(false, a)
	}
	w.audit(true, record.Audit{At: at(9 * time.Minute), Actor: "api:mallory", Action: record.ActionSubscriberDelete, Object: "subscriber:bank", Outcome: record.OutcomeOK})
}

// bind writes a binding of the alert-ids topic.
func (w *writer) bind(forged bool, b record.Binding) {
	w.write(forged, bus.TopicAlertIDs, b.ID, b.Encode())
}

// g1Digest is the digest bound to g1, an alert whose record and receipts
// are gone: only its binding is held.
const g1Digest = "sha256:g1"

// writeBindings writes the bindings of the workload: a1's, then another
// binding of a1 (which the view never takes: the first binding stands),
// a forged binding of a2, g1's, an alert of which nothing else is held,
// and a3's, whose receipts are not held (as once retention deleted them)
// while its record is.
func writeBindings(w *writer) {
	t := w.t
	w.bind(false, record.Binding{ID: "a1", Digest: a1(t).Digest(), FannedOut: at(70 * time.Second), Partition: 0, Offset: 0})
	w.bind(false, record.Binding{ID: "a1", Digest: "sha256:other", FannedOut: at(8 * time.Minute), Offset: -1})
	w.bind(true, record.Binding{ID: "a2", Digest: "sha256:forged", FannedOut: at(time.Minute), Offset: -1})
	w.bind(false, record.Binding{ID: "g1", Digest: g1Digest, FannedOut: at(time.Minute), Offset: -1})
	w.bind(false, record.Binding{ID: "a3", Digest: a3(t).Digest(), FannedOut: at(9 * time.Minute), Offset: -1})
}

func writeWorkload(w *writer) {
	writeAlerts(w)
	writeReceipts(w)
	writeAudit(w)
}

// ledgerOf folds the authentic receipts of ids as ledger.FromBus does: the
// answer the view must give.
func ledgerOf(t *testing.T, b *bus.Bus, ids ...string) map[string]*ledger.Alert {
	t.Helper()
	return ledgerOfKinds(t, b, nil, ids...)
}

// ledgerOfKinds is ledgerOf folding only the receipts of the given kinds
// (all when nil).
func ledgerOfKinds(t *testing.T, b *bus.Bus, kinds []string, ids ...string) map[string]*ledger.Alert {
	t.Helper()
	l := ledger.New()
	require.NoError(t, b.ReadAll(t.Context(), bus.TopicReceipts, func(m kafka.Message) error {
		if b.Authenticate(m) != nil {
			return nil
		}
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		if err != nil {
			return nil
		}
		for _, r := range rs {
			if kinds == nil || slices.Contains(kinds, r.Kind) {
				l.Add(r)
			}
		}
		return nil
	}))
	out := map[string]*ledger.Alert{}
	for _, id := range ids {
		if a := l.Alert(id); a != nil {
			out[id] = a
		}
	}
	return out
}

func ids(items []view.Summary) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = s.ID
	}
	return out
}

// dump asks the view every question the workload can answer, paging with
// small pages, for comparing views.
type dumped struct {
	Published map[string]*view.Published
	Release   map[string]*record.ReleaseState
	Lookup    map[string]*ledger.Alert
	Lists     map[string][]view.Summary
	Partner   map[string][]view.PartnerDelivery
	// PullRev is each partner's PullRevision without its epoch (a view
	// rebuilt while open starts another).
	PullRev map[string]uint64
	Audit   map[string][]record.Audit
	// Bindings are the bindings held of dumpIDs; Unbound, the alerts
	// fanned out without one (View.Unbound).
	Bindings map[string]*record.Binding
	Unbound  []record.Binding
	// Displaced are the bindings a record the view does not accept
	// follows (View.Displaced).
	Displaced []record.Displaced
}

var (
	dumpIDs      = []string{"a1", "a2", "a3", "a4", "p1", "p2", "p3", "p4", "q1", "u1", "g1", "bad", "nope"}
	dumpPartners = []string{"bank", "farm", "hotel", "gym", "nobody"}
)

func dump(t *testing.T, v *view.View) dumped {
	t.Helper()
	d := dumped{Published: map[string]*view.Published{}, Release: map[string]*record.ReleaseState{},
		Lists: map[string][]view.Summary{}, Partner: map[string][]view.PartnerDelivery{}, PullRev: map[string]uint64{},
		Audit: map[string][]record.Audit{}, Bindings: map[string]*record.Binding{}}
	for _, id := range dumpIDs {
		if b, ok := v.Binding(id); ok {
			d.Bindings[id] = b
		}
		if p, ok := v.Published(id); ok {
			d.Published[id] = p
		}
		if r, ok := v.Release(id); ok {
			d.Release[id] = r
		}
	}
	var err error
	d.Lookup, err = v.Lookup(t.Context(), dumpIDs)
	require.NoError(t, err)
	d.Unbound, err = v.Unbound(t.Context())
	require.NoError(t, err)
	d.Displaced, err = v.Displaced(t.Context())
	require.NoError(t, err)
	for _, st := range []string{"", record.StatePending, record.StatePublished, record.StateRejected, record.StateExpired, record.StateQuarantined} {
		d.Lists[st] = allPages(t, func(before string) ([]view.Summary, string, error) {
			return v.List(view.ListQuery{State: st, Limit: 2, Before: before})
		})
	}
	for _, p := range dumpPartners {
		for _, q := range []view.PartnerQuery{{}, {State: delivery.StateDelivered}, {State: delivery.StatePending}, {Alert: "a1"},
			{Channel: delivery.ChannelEmail}, {Channel: delivery.ChannelWebhook}, {Channel: delivery.ChannelPull},
			{State: delivery.StateDelivered, Channel: delivery.ChannelEmail}, {State: delivery.StateAvailable, Channel: delivery.ChannelPull},
			{Alert: "a4", Channel: delivery.ChannelPull}} {
			key := p + "/" + q.State + "/" + q.Alert + "/" + q.Channel
			d.Partner[key] = allPages(t, func(before string) ([]view.PartnerDelivery, string, error) {
				q.Limit, q.Before = 1, before
				return v.PartnerDeliveries(p, q)
			})
		}
		rev, err := v.PullRevision(p)
		require.NoError(t, err)
		d.PullRev[p] = rev.Seq
	}
	for name, q := range map[string]view.AuditQuery{
		"all": {}, "bob": {Actor: "api:bob"}, "put": {Action: record.ActionSubscriberPut},
		"alerts": {Object: "alert:"}, "window": {Since: at(3 * time.Minute), Until: at(9 * time.Minute)},
	} {
		d.Audit[name] = allPages(t, func(before string) ([]record.Audit, string, error) {
			q.Limit, q.Before = 2, before
			return v.Audit(q)
		})
	}
	return d
}

// allPages follows next cursors to the end.
func allPages[T any](t *testing.T, page func(before string) ([]T, string, error)) []T {
	t.Helper()
	var out []T
	before := ""
	for range 1000 {
		items, next, err := page(before)
		require.NoError(t, err)
		out = append(out, items...)
		if next == "" {
			return out
		}
		require.NotEmpty(t, items, "a page with a next cursor holds items")
		before = next
	}
	t.Fatal("paging does not end")
	return nil
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

func sumInt(m map[string]int) int64 {
	var n int64
	for _, v := range m {
		n += int64(v)
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// lookupAll is l's answer to the status question for every alert the
// workload writes (dumpIDs): a view's or the ledger read from the topic.
func lookupAll(t *testing.T, l interface {
	Lookup(context.Context, []string) (map[string]*ledger.Alert, error)
}) map[string]*ledger.Alert {
	t.Helper()
	got, err := l.Lookup(t.Context(), dumpIDs)
	require.NoError(t, err)
	return got
}

// survivorOf writes orig to the alerts topic of b (one partition, on c)
// with a record time older than the topic's retention, then other under
// the same id, applies retention and waits until orig's record is gone:
// other survives under the id.
func survivorOf(t *testing.T, c *kafkatest.Cluster, b *bus.Bus, orig, other *alerts.Alert) {
	t.Helper()
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(),
		kafka.Message{Key: []byte(orig.ID), Value: mustJSON(t, orig), Time: time.Now().Add(-500 * 24 * time.Hour)}))
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(other.ID), Value: mustJSON(t, other)}))
	c.Kfake().ApplyRetention()
	require.Eventually(t, func() bool {
		offs, err := b.Offsets(t.Context(), bus.TopicAlerts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 1
	}, waitFor, tick)
}
