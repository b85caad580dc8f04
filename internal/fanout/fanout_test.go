package fanout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

var now = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func partners() []*subscribers.Subscriber {
	subs := []*subscribers.Subscriber{
		{ID: "bank", Name: "Bank", Kind: "business", Sectors: []string{"financial-services"}, Clearance: "AMBER",
			Email:    []subscribers.Email{{Address: "fc@bank.example"}},
			Webhooks: []subscribers.Webhook{{URL: "https://hooks.bank.example/h", Secrets: []string{secret}}}},
		{ID: "hotel", Name: "Hotel", Kind: "business", Sectors: []string{"hospitality"}, Clearance: "GREEN",
			Email: []subscribers.Email{{Address: "sec@hotel.example"}}},
		{ID: "farm", Name: "Farm", Kind: "business", Sectors: []string{"agriculture"}, Clearance: "GREEN",
			Email: []subscribers.Email{{Address: "farm@farm.example"}}},
		{ID: "ngo", Name: "NGO", Kind: "ngo", Sectors: []string{"care"}, Clearance: "RED", Sensitive: true,
			Email: []subscribers.Email{{Address: "a@ngo.example"}}},
	}
	for _, s := range subs {
		s.Normalize()
	}
	return subs
}

func alert(id string, mut func(*alerts.Alert)) *alerts.Alert {
	a := &alerts.Alert{ID: id, Title: "Forced labour indicators", Severity: "severe", Marking: "OFFICIAL", TLP: "GREEN",
		Handling: alerts.Handling{Code: "P"}, Audience: alerts.Audience{Sectors: []string{"financial-services", "hospitality"}},
		IssuedBy: "api:alice", IssuedAt: &now}
	if mut != nil {
		mut(a)
	}
	a.Normalize()
	return a
}

// msg is a as the fan-out reads it from the alerts topic, written by one of
// Herald's publishers; the history then holds it as published (the first
// under its id), as the view of the alerts topic would.
func (e *env) msg(t *testing.T, a *alerts.Alert) kafka.Message {
	v, err := json.Marshal(a)
	require.NoError(t, err)
	e.history.publish(a.ID, v)
	return e.bus.AsWritten(bus.TopicAlerts, kafka.Message{Key: []byte(a.ID), Value: v, Time: now})
}

type env struct {
	bus     *bus.Bus
	w       *fanout.Worker
	reg     *subscribers.Registry
	history *history
}

// history is the fan-out's History in tests: the ledger folded from the
// receipts topic, and the alerts the test published.
type history struct {
	*ledger.Source
	mu        sync.Mutex
	published map[string]*view.Published
	fail      error // what Held answers, when set: the view cannot be read
}

var _ fanout.PublishedHistory = (*history)(nil)

func (h *history) publish(id string, raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.published[id]; !ok {
		h.published[id] = &view.Published{ID: id, Alert: raw}
	}
}

// Held answers as the view does: the alert as published, or
// ledger.ErrGone for one the test did not publish (or removed: gone).
func (h *history) Held(_ context.Context, id string) (*alerts.Alert, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail != nil {
		return nil, h.fail
	}
	p, ok := h.published[id]
	if !ok {
		return nil, fmt.Errorf("alert %s: %w", id, ledger.ErrGone)
	}
	a, err := alerts.Decode(p.Alert)
	if err != nil {
		return nil, err
	}
	a.Normalize()
	return a, nil
}

func setup(t *testing.T) *env {
	b := kafkatest.New(t)
	reg := subscribers.NewRegistry()
	for _, s := range partners() {
		reg.Put(s)
	}
	h := &history{Source: ledger.FromBus(b), published: map[string]*view.Published{}}
	return &env{bus: b, reg: reg, history: h, w: &fanout.Worker{
		Registry: reg, Policy: policy.Options{},
		Deliveries: b.Producer(bus.TopicDeliveries), Receipts: b.Producer(bus.TopicReceipts),
		Quarantine: b.Producer(bus.TopicQuarantine), History: h, Authenticate: b.Authenticate,
		SecondAnalyst: []string{"AMBER", "AMBER+STRICT", "RED", "OFFICIAL-SENSITIVE"},
		Now:           func() time.Time { return now }, Log: slog.New(slog.DiscardHandler),
	}}
}

func (e *env) jobs(t *testing.T) []delivery.Job {
	var out []delivery.Job
	place, err := e.bus.Producer(bus.TopicDeliveries).Placement(t.Context())
	require.NoError(t, err)
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		js, bad, err := delivery.DecodeJobs(m.Value, nil)
		require.NoError(t, err)
		require.Empty(t, bad)
		for _, j := range js {
			require.Equal(t, m.Partition, place.Partition([]byte(j.Subscriber)), "a job is on its partner's partition")
			if len(js) == 1 {
				require.Equal(t, j.Subscriber, string(m.Key), "a job alone is keyed by its subscriber id")
			}
			out = append(out, *j)
		}
		return nil
	}))
	return out
}

// hotels registers n hotels (hotel-0000…) in hospitality with an email
// address each; every pullEvery-th one (none when 0) also pulls.
func (e *env) hotels(n, pullEvery int) {
	for i := range n {
		s := &subscribers.Subscriber{ID: fmt.Sprintf("hotel-%04d", i), Name: "Hotel", Kind: "business",
			Sectors: []string{"hospitality"}, Clearance: "GREEN", Email: []subscribers.Email{{Address: fmt.Sprintf("sec@%d.example", i)}}}
		if pullEvery > 0 && i%pullEvery == 0 {
			s.Pull = &subscribers.Pull{MaxTLP: "GREEN"}
		}
		s.Normalize()
		e.reg.Put(s)
	}
}

func (e *env) quarantined(t *testing.T) map[string]string {
	out := map[string]string{}
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicQuarantine, func(m kafka.Message) error {
		out[string(m.Key)] = bus.Header(m, "reason")
		require.NotEmpty(t, bus.Header(m, "error"))
		return nil
	}))
	return out
}

func TestFanOutWritesJobsAndReceipts(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	a := alert("a1", nil)
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, a)}))

	jobs := e.jobs(t)
	got := map[string]string{}
	for _, j := range jobs {
		got[j.Subscriber+" "+j.Target] = j.Mode
		require.Equal(t, delivery.ID("a1", j.Subscriber, j.Target), j.ID)
		require.Equal(t, "a1", j.Alert.ID)
	}
	require.Equal(t, map[string]string{
		"bank fc@bank.example":              delivery.ModeSigned,
		"bank https://hooks.bank.example/h": delivery.ModeSigned,
		"hotel sec@hotel.example":           delivery.ModeSigned,
	}, got, "only partners sharing a sector get jobs")

	found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"a1"})
	require.NoError(t, err)
	la := found["a1"]
	require.NotNil(t, la)
	require.Equal(t, alerts.TLPGreen, la.TLP)
	require.Len(t, la.Entries(), 3)
	require.True(t, la.Received("hotel", "", "sec@hotel.example"))
	require.Empty(t, e.quarantined(t))
}

func TestBadMessagesAreQuarantinedAndTheBatchGoesOn(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	secretAlert := alert("s1", func(a *alerts.Alert) { a.Marking = "SECRET" })
	unattributed := alert("u1", func(a *alerts.Alert) { a.IssuedBy = "" })
	// Invalid whatever the taxonomy (the fan-out does not judge sectors
	// and regions again: TestFanOutTakesAlertsOfAnotherTaxonomy).
	untitled := alert("b1", func(a *alerts.Alert) { a.Title = "" })
	k1 := e.msg(t, alert("k1", nil))
	wrongKey := e.bus.AsWritten(bus.TopicAlerts, kafka.Message{Key: []byte("other"), Value: k1.Value})
	batch := []kafka.Message{
		e.bus.AsWritten(bus.TopicAlerts, kafka.Message{Key: []byte("junk"), Value: []byte("{not json")}),
		e.msg(t, secretAlert), e.msg(t, unattributed), e.msg(t, untitled), wrongKey,
		e.msg(t, alert("good", nil)),
	}
	require.NoError(t, e.w.Handle(ctx, batch))
	require.Equal(t, map[string]string{
		"junk":  fanout.ReasonMalformed,
		"s1":    fanout.ReasonForbidden,
		"u1":    fanout.ReasonUnissued,
		"b1":    fanout.ReasonInvalid,
		"other": fanout.ReasonInvalid,
	}, e.quarantined(t))
	require.Len(t, e.jobs(t), 3, "the valid alert after the bad ones is fanned out")
}

func TestUpdateReachesPriorRecipientsAndNoticesTheIneligible(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("orig", nil))}))
	// The update narrows the audience to financial services and raises the
	// TLP: the hotel, which had the original, is no longer eligible.
	upd := alert("upd", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"orig"}, alerts.TLPAmber
		a.Audience.Sectors = []string{"financial-services"}
		a.ApprovedBy, a.ApprovedAt = "api:bob", &now
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, upd)}))
	modes := map[string]string{}
	held := map[string][]delivery.Held{}
	for _, j := range e.jobs(t) {
		if j.Alert.ID == "upd" {
			modes[j.Subscriber+" "+j.Target] = j.Mode
			held[j.Subscriber+" "+j.Target] = j.Held
		}
	}
	require.Equal(t, map[string]string{
		// AMBER needs encryption and the address has no key: it had the
		// original, so it learns that the alert it holds was updated.
		"bank fc@bank.example":              delivery.ModeFollowUpKeyNotice,
		"bank https://hooks.bank.example/h": delivery.ModeSigned,
		"hotel sec@hotel.example":           delivery.ModeCancelNotice,
	}, modes)
	// The notices name the alert each target holds, with the title it
	// received in the clear (the original was GREEN).
	orig := []delivery.Held{{ID: "orig", Title: "Forced labour indicators"}}
	require.Equal(t, orig, held["bank fc@bank.example"])
	require.Equal(t, orig, held["hotel sec@hotel.example"])
	require.Nil(t, held["bank https://hooks.bank.example/h"], "content goes: no notice")

	// An update that lowers the TLP, or references an unknown alert, is
	// quarantined.
	down := alert("down", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"upd"}, alerts.TLPGreen
	})
	require.NoError(t, e.w.Handle(ctx, nil))
	ghost := alert("ghost", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"never-sent"} })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, down), e.msg(t, ghost)}))
	require.Equal(t, map[string]string{"down": fanout.ReasonDowngrade, "ghost": fanout.ReasonUnknownRef}, e.quarantined(t))
}

// TestUpdateJobsCarryLineage: every webhook job of an update carries its
// lineage, traced from the published alerts it references: the root, the
// referenced alerts' issue times, and the earlier indicators withdrawn —
// only those of alerts that partner received, so a partner new to the
// chain never learns an earlier indicator's value from its withdrawal.
func TestUpdateJobsCarryLineage(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	earlier := now.Add(-2 * time.Hour)
	phone := alerts.Indicator{Type: "phone", Value: "+44 7700 900123"}
	iban := alerts.Indicator{Type: "iban", Value: "GB33BUKB20201555555555"}
	orig := alert("root-1", func(a *alerts.Alert) { a.IssuedAt, a.Indicators = &earlier, []alerts.Indicator{phone} })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, orig)}))
	// A lender joins the sector after the original went out.
	lender := &subscribers.Subscriber{ID: "lender", Name: "Lender", Kind: "business", Sectors: []string{"financial-services"},
		Clearance: "AMBER", Webhooks: []subscribers.Webhook{{URL: "https://hooks.lender.example/h", Secrets: []string{secret}}}}
	lender.Normalize()
	e.reg.Put(lender)
	mid := now.Add(-time.Hour)
	up1 := alert("up-1", func(a *alerts.Alert) {
		a.Type, a.References, a.IssuedAt, a.Indicators = alerts.TypeUpdate, []string{"root-1"}, &mid, []alerts.Indicator{iban}
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, up1)}))
	cancel := alert("cancel-1", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"up-1"} })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, cancel)}))

	type lineage struct {
		Root         string
		RootIssuedAt time.Time
		References   []delivery.Ref
		Earlier      []alerts.Indicator
	}
	want := map[string]lineage{
		"up-1 bank":   {"root-1", earlier, []delivery.Ref{{ID: "root-1", IssuedAt: earlier}}, []alerts.Indicator{phone}},
		"up-1 lender": {"root-1", earlier, []delivery.Ref{{ID: "root-1", IssuedAt: earlier}}, nil},
		"cancel-1 bank": {"root-1", earlier, []delivery.Ref{{ID: "up-1", IssuedAt: mid}},
			[]alerts.Indicator{iban, phone}},
		"cancel-1 lender": {"root-1", earlier, []delivery.Ref{{ID: "up-1", IssuedAt: mid}}, []alerts.Indicator{iban}},
	}
	got := map[string]lineage{}
	emails := 0
	for _, j := range e.jobs(t) {
		switch {
		case j.Alert.ID == "root-1":
			require.Nil(t, j.Lineage, "an alert that references nothing is its own root")
		case j.Channel == delivery.ChannelWebhook:
			require.NotNil(t, j.Lineage)
			got[j.Alert.ID+" "+j.Subscriber] = lineage{j.Lineage.Root, j.Lineage.RootIssuedAt, j.Lineage.References, j.Lineage.Earlier}
		case j.Channel == delivery.ChannelEmail:
			// An email threads under the chain's first alert
			// (References) and renders nothing else of the chain.
			require.Equal(t, &delivery.Lineage{Root: "root-1", RootIssuedAt: earlier}, j.Lineage, j.Alert.ID+" "+j.Subscriber)
			emails++
		default:
			require.Nil(t, j.Lineage, "only webhook and email jobs render what needs it")
		}
	}
	require.Equal(t, want, got, "the lender is never shown the original's phone number")
	require.Positive(t, emails, "the follow-ups' email jobs were checked")

	// A reference whose record has left the alerts topic (retention) can
	// never be traced: the cancel is quarantined, naming it, rather than
	// rendered without the chain, and the batch goes on.
	e.history.mu.Lock()
	delete(e.history.published, "up-1")
	e.history.mu.Unlock()
	again := alert("cancel-2", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"up-1"} })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, again)}))
	require.Equal(t, map[string]string{"cancel-2": fanout.ReasonUnknownRef}, e.quarantined(t))
	// A view that cannot be read (its sync failed) judges nothing: the
	// batch fails, and is fetched again.
	e.history.mu.Lock()
	e.history.fail = errors.New("sync view: not caught up")
	e.history.mu.Unlock()
	fourth := alert("cancel-4", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"root-1"} })
	require.ErrorContains(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, fourth)}), "not caught up")
	e.history.mu.Lock()
	e.history.fail = nil
	e.history.mu.Unlock()

	// A history that keeps no published alerts cannot plan an update.
	w := &fanout.Worker{Registry: e.reg, Policy: e.w.Policy, Deliveries: e.w.Deliveries,
		Receipts: e.w.Receipts, Quarantine: e.w.Quarantine, History: ledger.FromBus(e.bus), Authenticate: e.w.Authenticate,
		Now: e.w.Now, Log: e.w.Log}
	other := alert("cancel-3", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"root-1"} })
	require.ErrorContains(t, w.Handle(ctx, []kafka.Message{e.msg(t, other)}), "does not keep published alerts")
}

// TestPullDecisionsAreRecordedWithoutJobs: the pull channel is decided and
// recorded like a target, with no job; a deliver decision is available at
// once, and an update the partner may no longer pull withdraws the original.
func TestPullDecisionsAreRecordedWithoutJobs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	puller := &subscribers.Subscriber{ID: "puller", Name: "Puller", Kind: "ngo", Sectors: []string{"hospitality"},
		Clearance: "AMBER", Pull: &subscribers.Pull{MaxTLP: "GREEN"}}
	puller.Normalize()
	e.reg.Put(puller)
	var observed [2]int
	e.w.Observe = func(_ string, jobs, withheld int) { observed = [2]int{jobs, withheld} }

	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("p1", nil))}))
	for _, j := range e.jobs(t) {
		require.NotEqual(t, delivery.ChannelPull, j.Channel, "nothing is sent by pull")
	}
	require.Equal(t, [2]int{3, 0}, observed, "bank email and webhook, hotel email; the pull is not withheld")
	found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"p1"})
	require.NoError(t, err)
	var pull *ledger.Entry
	for _, en := range found["p1"].Entries() {
		if en.Subscriber == "puller" {
			pull = &en
		}
	}
	require.NotNil(t, pull)
	require.Equal(t, ledger.Entry{Subscriber: "puller", Target: delivery.TargetPull, Decision: delivery.Deliver,
		Rule: policy.RulePullAvailable, State: delivery.StateAvailable, Channel: delivery.ChannelPull, Mode: delivery.ModePull,
		Reason: pull.Reason, DeliveryID: delivery.ID("p1", "puller", delivery.TargetPull), UpdatedAt: now}, *pull)
	require.Equal(t, 1, found["p1"].Counts()[delivery.StateAvailable], "an alert waiting to be pulled is not pending")

	up := alert("p2", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"p1"}, alerts.TLPAmber
		a.ApprovedBy, a.ApprovedAt = "api:bob", &now
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, up)}))
	found, err = ledger.FromBus(e.bus).Lookup(ctx, []string{"p2"})
	require.NoError(t, err)
	for _, en := range found["p2"].Entries() {
		if en.Subscriber == "puller" {
			require.Equal(t, delivery.Notice, en.Decision)
			require.Equal(t, delivery.ModeCancelNotice, en.Mode)
			require.Equal(t, policy.RuleNoLongerEligible, en.Rule)
			require.Equal(t, delivery.StateAvailable, en.State)
			require.Contains(t, en.Reason, "pull collection")
		}
	}
}

func TestNotBeforeIsCarriedAndNamedUnknownRecorded(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	later := now.Add(6 * time.Hour)
	a := alert("nb", func(a *alerts.Alert) {
		a.NotBefore = &later
		a.Audience = alerts.Audience{Subscribers: []string{"farm", "nobody"}}
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, a)}))
	jobs := e.jobs(t)
	require.Len(t, jobs, 1)
	require.Equal(t, "farm", jobs[0].Subscriber, "a named partner is in the audience whatever its sectors")
	require.True(t, jobs[0].NotBefore.Equal(later))
	found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"nb"})
	require.NoError(t, err)
	var rules []string
	for _, en := range found["nb"].Entries() {
		rules = append(rules, en.Subscriber+":"+en.Rule)
	}
	require.ElementsMatch(t, []string{"farm:email.signed", "nobody:" + fanout.RuleUnknownSubscriber}, rules)
}

// TestOnlyHeraldsPublishersReachPartners: an alert any other Kafka client
// wrote — unsigned, signed with another key, or a real alert replayed under
// another key — is quarantined as unattributed and nothing is delivered.
func TestOnlyHeraldsPublishersReachPartners(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	good := e.msg(t, alert("x1", nil))
	unsigned := kafka.Message{Topic: good.Topic, Key: good.Key, Value: good.Value, Time: now}
	other, err := busauth.New(bytes.Repeat([]byte{7}, busauth.KeySize))
	require.NoError(t, err)
	forged := unsigned
	forged.Headers = []kafka.Header{{Key: busauth.Header, Value: []byte(other.Sign(bus.TopicAlerts, good.Key, good.Value))}}
	tampered := good
	tampered.Value = bytes.Replace(good.Value, []byte("Forced labour"), []byte("Forged labour"), 1)
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{unsigned, forged, tampered}))
	require.Empty(t, e.jobs(t), "nothing is delivered")
	n := 0
	require.NoError(t, e.bus.ReadAll(ctx, bus.TopicQuarantine, func(m kafka.Message) error {
		n++
		require.Equal(t, fanout.ReasonUnissued, bus.Header(m, bus.HeaderReason))
		require.NoError(t, e.bus.Authenticate(m), "the quarantine record itself is Herald's")
		return nil
	}))
	require.Equal(t, 3, n)
	found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"x1"})
	require.NoError(t, err)
	require.Empty(t, found, "no receipt: the alert was never fanned out")
}

// TestAnIDIsOneAlertForever: the identical alert again is a no-op; another
// alert under a fanned-out id is quarantined as duplicate-id, in the same
// batch or later.
func TestAnIDIsOneAlertForever(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	amber := alert("op-reuse-7", func(a *alerts.Alert) {
		a.TLP, a.Title = alerts.TLPAmber, "AMBER text: named suspects"
		a.ApprovedBy, a.ApprovedAt = "api:bob", &now
	})
	again := alert("op-reuse-7", func(a *alerts.Alert) {
		a.TLP, a.Title = alerts.TLPAmber, "AMBER text: named suspects"
		a.IssuedBy, a.ApprovedBy, a.ApprovedAt = "cli:carol", "api:dave", &now // restamped: the same content
	})
	green := alert("op-reuse-7", func(a *alerts.Alert) { a.Title = "GREEN text" })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, amber), e.msg(t, green), e.msg(t, again)}))
	first := e.jobs(t)
	require.NotEmpty(t, first)
	for _, j := range first {
		require.Contains(t, j.Alert.Title, "AMBER")
	}
	// A new worker (after a restart or a rebalance) finds the first in the
	// ledger.
	w1 := e.w
	w2 := &fanout.Worker{Registry: e.reg, Policy: w1.Policy, SecondAnalyst: w1.SecondAnalyst,
		Deliveries: w1.Deliveries, Receipts: w1.Receipts, Quarantine: w1.Quarantine, History: w1.History,
		Authenticate: w1.Authenticate, Now: w1.Now, Log: w1.Log}
	require.NoError(t, w2.Handle(ctx, []kafka.Message{e.msg(t, green), e.msg(t, again)}))
	require.Len(t, e.jobs(t), len(first), "nothing is sent twice, and nothing of the GREEN alert")
	var reasons []string
	require.NoError(t, e.bus.ReadAll(ctx, bus.TopicQuarantine, func(m kafka.Message) error {
		reasons = append(reasons, string(m.Key)+":"+bus.Header(m, bus.HeaderReason))
		return nil
	}))
	require.Equal(t, []string{"op-reuse-7:duplicate-id", "op-reuse-7:duplicate-id"}, reasons)
}

// TestTheBindingFollowsTheAlertReceipt: the fan-out binds the id of each
// alert it fans out to its digest on the alert-ids topic, after the alert
// receipt; an alert fanned out with no binding (a fan-out stopped between
// the two) gets one when its record is read again, and nothing is sent
// twice.
func TestTheBindingFollowsTheAlertReceipt(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	bindings := func() []record.Binding {
		var out []record.Binding
		require.NoError(t, e.bus.ReadAll(ctx, bus.TopicAlertIDs, func(m kafka.Message) error {
			b, err := record.DecodeBinding(m.Key, m.Value)
			require.NoError(t, err)
			out = append(out, *b)
			return nil
		}))
		slices.SortFunc(out, func(x, y record.Binding) int { return strings.Compare(x.ID, y.ID) })
		return out
	}
	a1, a2 := alert("op-bind-1", nil), alert("op-bind-2", nil)
	m1, m2 := e.msg(t, a1), e.msg(t, a2)

	// A fan-out that wrote the alert receipt and stopped before the binding.
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{m1}))
	jobs := len(e.jobs(t))
	require.NotZero(t, jobs)
	require.Empty(t, bindings())

	w1 := e.w
	w2 := &fanout.Worker{Registry: e.reg, Policy: w1.Policy, SecondAnalyst: w1.SecondAnalyst,
		Deliveries: w1.Deliveries, Receipts: w1.Receipts, Quarantine: w1.Quarantine, History: w1.History,
		Bindings: e.bus.Producer(bus.TopicAlertIDs), Authenticate: w1.Authenticate, Now: w1.Now, Log: w1.Log}
	require.NoError(t, w2.Handle(ctx, []kafka.Message{m1, m2}))
	require.Len(t, e.jobs(t), 2*jobs, "op-bind-1 is not sent again; op-bind-2 goes out")
	got := bindings()
	require.Len(t, got, 2, "op-bind-1 repaired, op-bind-2 bound after its fan-out")
	for i, want := range []struct {
		a *alerts.Alert
		m kafka.Message
	}{{a1, m1}, {a2, m2}} {
		require.Equal(t, want.a.ID, got[i].ID)
		require.Equal(t, want.a.Digest(), got[i].Digest)
		require.True(t, now.Equal(got[i].FannedOut))
		require.Equal(t, want.m.Partition, got[i].Partition)
		require.Equal(t, want.m.Offset, got[i].Offset)
	}
}

// TestSensitiveAlertsNeedASecondAnalyst: an AMBER alert without an
// approval, or approved by its author, never reaches partners.
func TestSensitiveAlertsNeedASecondAnalyst(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	none := alert("amber-1", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber })
	self := alert("amber-2", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber; a.ApprovedBy, a.ApprovedAt = "cli:Alice", &now })
	sensitive := alert("os-1", func(a *alerts.Alert) { a.Marking = alerts.MarkingOfficialSensitive })
	ok := alert("amber-3", func(a *alerts.Alert) { a.TLP = alerts.TLPAmber; a.ApprovedBy, a.ApprovedAt = "api:bob", &now })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, none), e.msg(t, self), e.msg(t, sensitive), e.msg(t, ok)}))
	require.Equal(t, map[string]string{"amber-1": fanout.ReasonUnapproved, "amber-2": fanout.ReasonUnapproved,
		"os-1": fanout.ReasonUnapproved}, e.quarantined(t))
	for _, j := range e.jobs(t) {
		require.Equal(t, "amber-3", j.Alert.ID)
	}
}

// TestFanOutPacksJobs: the jobs of a fan-out that go to one partition
// share records carrying the alert's bytes once, each on the partition of
// every partner it holds, authenticated like every record: every job once,
// the jobs Plan makes.
func TestFanOutPacksJobs(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const hotels = 1500 // more than one slice
	e.hotels(hotels, 0)
	a := alert("many", nil)
	msg := e.msg(t, a)
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg}))

	place, err := e.bus.Producer(bus.TopicDeliveries).Placement(ctx)
	require.NoError(t, err)
	records := 0
	partitions := map[int]bool{}
	ids := map[string]bool{}
	require.NoError(t, e.bus.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error {
		require.NoError(t, e.bus.Authenticate(m), "every record is authenticated")
		require.Equal(t, 1, bytes.Count(m.Value, msg.Value), "the alert's bytes once a record, as published")
		js, bad, err := delivery.DecodeJobs(m.Value, nil)
		require.NoError(t, err)
		require.Empty(t, bad)
		require.LessOrEqual(t, len(js), delivery.MaxRecordJobs)
		for _, j := range js {
			require.Equal(t, m.Partition, place.Partition([]byte(j.Subscriber)), "job %s on its partner's partition", j.ID)
			require.False(t, ids[j.ID], "job %s twice", j.ID)
			ids[j.ID] = true
		}
		records++
		partitions[m.Partition] = true
		return nil
	}))
	require.Len(t, ids, hotels+3, "the bank's two targets, the hotel and every hotel")
	require.Greater(t, len(partitions), 1, "jobs spread over the partitions")
	require.Less(t, records, hotels/20, "a record per slice and partition, not per job")

	plan, err := e.w.Plan(ctx, a, nil)
	require.NoError(t, err)
	planned := map[string]bool{}
	for _, m := range plan.Jobs {
		js, bad, err := delivery.DecodeJobs(m.Value, nil)
		require.NoError(t, err)
		require.Empty(t, bad)
		for _, j := range js {
			planned[j.ID] = true
		}
	}
	require.Equal(t, ids, planned, "Handle writes the jobs Plan makes")
}

// TestFanOutPacksReceipts: the decisions' receipts of a fan-out go out as
// arrays of receipts (a pull decision with its available outcome after
// it), bounded and authenticated like every record, and the alert receipt
// last, alone: every decision once, the same receipts Plan makes.
func TestFanOutPacksReceipts(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	const hotels = 1500 // more than one slice
	e.hotels(hotels, 100)
	a := alert("many", nil)
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, a)}))

	var records []kafka.Message
	require.NoError(t, e.bus.ReadAll(ctx, bus.TopicReceipts, func(m kafka.Message) error {
		require.NoError(t, e.bus.Authenticate(m), "every record is authenticated")
		records = append(records, m)
		return nil
	}))
	require.NotEmpty(t, records)
	last := records[len(records)-1]
	require.Equal(t, byte('{'), last.Value[0], "the alert receipt is a record of its own")
	var got []string
	var prev *delivery.Receipt // the receipt before, in the topic's order
	for i, m := range records {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		require.LessOrEqual(t, len(rs), delivery.MaxRecordReceipts)
		for j := range rs {
			r := &rs[j]
			require.Equal(t, i == len(records)-1, r.Kind == delivery.KindAlert, "the alert receipt comes last")
			if r.Kind == delivery.KindOutcome {
				// Next to its decision in the topic, in the same record or
				// (packing cuts records at MaxRecordReceipts) the next.
				require.NotNil(t, prev, "an available outcome follows its decision")
				require.Equal(t, delivery.StateAvailable, r.State)
				require.Equal(t, prev.DeliveryID, r.DeliveryID)
				require.Equal(t, delivery.KindDecision, prev.Kind)
			}
			got = append(got, string(r.Encode()))
			prev = r
		}
	}
	decisions := 2 + 1 + hotels + hotels/100 // bank's two targets, hotel, the hotels' email and pull targets
	require.Len(t, got, decisions+hotels/100+1, "every decision, the pull outcomes and the alert receipt, once")
	require.Less(t, len(records), 10, "packed")

	plan, err := e.w.Plan(ctx, a, nil)
	require.NoError(t, err)
	var planned []string
	for _, m := range plan.Receipts {
		rs, err := delivery.DecodeReceipts(string(m.Key), m.Value)
		require.NoError(t, err)
		for _, r := range rs {
			planned = append(planned, string(r.Encode()))
		}
	}
	require.ElementsMatch(t, planned, got, "Handle writes what Plan makes (slices may land in either order)")
}

// TestDecideAllShowsEveryPartnerTheFanOutOnlyCandidates: DecideAll, what
// dry runs and previews show, is Decide's rows unchanged and first, then
// every other registered partner by id, each withheld with the rule that
// withheld it (a suspended partner as suspended). The fan-out itself
// decides, and records, exactly Decide's rows: nothing for a partner
// outside the audience.
func TestDecideAllShowsEveryPartnerTheFanOutOnlyCandidates(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	closed := &subscribers.Subscriber{ID: "closed", Name: "Closed", Kind: "business", Sectors: []string{"construction"},
		Clearance: "GREEN", Status: subscribers.StatusSuspended, Email: []subscribers.Email{{Address: "c@closed.example"}}}
	closed.Normalize()
	e.reg.Put(closed)
	a := alert("a1", func(a *alerts.Alert) { a.Audience.Subscribers = []string{"nobody"} })

	cands := fanout.Decide(a, e.reg, nil, now, policy.Options{})
	all, audience := fanout.DecideAll(a, e.reg, nil, now, policy.Options{})
	require.Equal(t, len(cands), audience, "Decide's rows come first")
	require.Greater(t, len(all), len(cands))
	require.Equal(t, cands, all[:len(cands)], "the candidates' rows, unchanged and first")
	type row struct{ subscriber, target, decision, rule string }
	rows := func(ds []policy.Decision) []row {
		out := make([]row, len(ds))
		for i, d := range ds {
			out[i] = row{d.Subscriber, d.Target, d.Decision, d.Rule}
		}
		return out
	}
	require.Equal(t, []row{
		{"bank", "fc@bank.example", delivery.Deliver, policy.RuleEmailSigned},
		{"bank", "https://hooks.bank.example/h", delivery.Deliver, policy.RuleWebhookSign},
		{"hotel", "sec@hotel.example", delivery.Deliver, policy.RuleEmailSigned},
		{"nobody", "", delivery.Withhold, fanout.RuleUnknownSubscriber},
	}, rows(cands))
	require.Equal(t, []row{
		{"closed", "c@closed.example", delivery.Withhold, policy.RuleSuspended},
		{"farm", "farm@farm.example", delivery.Withhold, policy.RuleSector},
		{"ngo", "a@ngo.example", delivery.Withhold, policy.RuleSector},
	}, rows(all[len(cands):]), "every other partner, by id")

	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, a)}))
	found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"a1"})
	require.NoError(t, err)
	var recorded []row
	for _, en := range found["a1"].Entries() {
		recorded = append(recorded, row{en.Subscriber, en.Target, en.Decision, en.Rule})
	}
	require.Equal(t, rows(cands), recorded, "the fan-out records the candidates' decisions only")
}

// TestDecideAllOfAnUpdate: in the preview of an update, a partner that had
// the original and is outside the new audience appears once, with rule 7's
// notice (as the fan-out decides it), not again among the other partners.
func TestDecideAllOfAnUpdate(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("orig", nil))}))
	upd := alert("upd", func(a *alerts.Alert) {
		a.Type, a.References = alerts.TypeUpdate, []string{"orig"}
		a.Audience.Sectors = []string{"financial-services"}
	})
	prior, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"orig"})
	require.NoError(t, err)
	cands := fanout.Decide(upd, e.reg, prior, now, policy.Options{})
	all, audience := fanout.DecideAll(upd, e.reg, prior, now, policy.Options{})
	require.Equal(t, len(cands), audience, "Decide's rows come first")
	require.Equal(t, cands, all[:len(cands)])
	var got []string
	for _, d := range all {
		got = append(got, d.Subscriber+" "+d.Decision+" "+d.Rule)
	}
	require.Equal(t, []string{
		"bank deliver " + policy.RuleEmailSigned,
		"bank deliver " + policy.RuleWebhookSign,
		"hotel notice " + policy.RuleNoLongerEligible,
		"farm withhold " + policy.RuleSector,
		"ngo withhold " + policy.RuleSector,
	}, got)
}

// TestPriorRecipientsInAStableOrder: an update of two alerts lists the
// partners that had them in the same order every time (the referenced
// alerts' ids in order), in the fan-out and in the preview alike.
func TestPriorRecipientsInAStableOrder(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("orig-a", func(a *alerts.Alert) {
		a.Audience.Sectors = []string{"hospitality"}
	}))}))
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("orig-b", func(a *alerts.Alert) {
		a.Audience.Sectors = []string{"agriculture"}
	}))}))
	upd := alert("upd", func(a *alerts.Alert) {
		a.Type, a.References = alerts.TypeUpdate, []string{"orig-b", "orig-a"}
		a.Audience.Sectors = []string{"financial-services"}
	})
	prior, err := ledger.FromBus(e.bus).Lookup(ctx, upd.References)
	require.NoError(t, err)
	order := func() []string {
		var got []string
		for _, d := range fanout.Decide(upd, e.reg, prior, now, policy.Options{}) {
			got = append(got, d.Subscriber)
		}
		return got
	}
	first := order()
	require.Contains(t, first, "hotel")
	require.Contains(t, first, "farm")
	require.Less(t, slices.Index(first, "hotel"), slices.Index(first, "farm"), "orig-a's recipients before orig-b's")
	for range 20 {
		require.Equal(t, first, order())
	}
}

// TestReRegisteredPartnerIsNoPriorRecipient: a partner deleted and
// registered again under its id (a new incarnation of the record, maybe
// another organisation) is not a prior recipient of what the deleted one
// received: an update or cancel of it neither reaches it nor names the
// alert to it (rule 7). The jobs and receipts name the incarnation they
// were decided for. History written before receipts named it (no
// incarnation) still belongs to any record under the id.
func TestReRegisteredPartnerIsNoPriorRecipient(t *testing.T) {
	for _, tc := range []struct {
		name, first string
		notified    bool
	}{
		{name: "receipts name the incarnation", first: "incA-0123456789", notified: false},
		{name: "receipts from before incarnations", first: "", notified: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t)
			ctx := context.Background()
			acme := func(incarnation string, sectors ...string) *subscribers.Subscriber {
				s := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: "business", Sectors: sectors, Clearance: "GREEN",
					Incarnation: incarnation, Email: []subscribers.Email{{Address: "soc@acme.example"}}}
				s.Normalize()
				return s
			}
			e.reg.Put(acme(tc.first, "hospitality"))
			require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, alert("x", nil))}))
			var got []string
			for _, j := range e.jobs(t) {
				if j.Subscriber == "acme" {
					got = append(got, j.Alert.ID+" "+j.Incarnation)
				}
			}
			require.Equal(t, []string{"x " + tc.first}, got, "the job names the incarnation decided for")
			found, err := ledger.FromBus(e.bus).Lookup(ctx, []string{"x"})
			require.NoError(t, err)
			en, ok := found["x"].Entry("acme", "soc@acme.example")
			require.True(t, ok)
			require.Equal(t, tc.first, en.Incarnation, "the decision receipt names the incarnation decided for")

			// acme is deleted; another organisation is registered as acme,
			// outside the cancel's audience.
			require.True(t, e.reg.Delete("acme"))
			e.reg.Put(acme("incB-9876543210", "agriculture"))
			cancel := alert("x-cancel", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"x"} })
			require.NoError(t, e.w.Handle(ctx, []kafka.Message{e.msg(t, cancel)}))
			var toAcme []string // mode, incarnation and the alerts named held
			for _, j := range e.jobs(t) {
				if j.Alert.ID == "x-cancel" && j.Subscriber == "acme" {
					toAcme = append(toAcme, fmt.Sprintf("%s %s %v", j.Mode, j.Incarnation, j.Held))
				}
			}
			found, err = ledger.FromBus(e.bus).Lookup(ctx, []string{"x-cancel"})
			require.NoError(t, err)
			_, decided := found["x-cancel"].Entry("acme", "soc@acme.example")
			if !tc.notified {
				require.Empty(t, toAcme, "the new acme is not told of the old acme's alert")
				require.False(t, decided, "the new acme is not a prior recipient: no decision about it")
				return
			}
			require.Equal(t, []string{delivery.ModeCancelNotice + " incB-9876543210 [{x Forced labour indicators}]"}, toAcme,
				"history without an incarnation belongs to any record under the id")
		})
	}
}
