package fanout_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
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

func msg(t *testing.T, a *alerts.Alert) kafka.Message {
	v, err := json.Marshal(a)
	require.NoError(t, err)
	return kafka.Message{Topic: "herald.alerts", Key: []byte(a.ID), Value: v, Time: now}
}

type env struct {
	bus *bus.Bus
	w   *fanout.Worker
	reg *subscribers.Registry
}

func setup(t *testing.T) *env {
	b := kafkatest.New(t)
	reg := subscribers.NewRegistry()
	for _, s := range partners() {
		reg.Put(s)
	}
	return &env{bus: b, reg: reg, w: &fanout.Worker{
		Registry: reg, Taxonomy: taxonomy.Default(), Policy: policy.Options{},
		Deliveries: b.Producer(bus.TopicDeliveries), Receipts: b.Producer(bus.TopicReceipts),
		Quarantine: b.Producer(bus.TopicQuarantine), History: ledger.FromBus(b),
		Now: func() time.Time { return now }, Log: slog.New(slog.DiscardHandler),
	}}
}

func (e *env) jobs(t *testing.T) []delivery.Job {
	var out []delivery.Job
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		var j delivery.Job
		require.NoError(t, json.Unmarshal(m.Value, &j))
		require.Equal(t, j.Subscriber, string(m.Key), "jobs are keyed by subscriber id")
		out = append(out, j)
		return nil
	}))
	return out
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
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg(t, a)}))

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
	require.True(t, la.Received("hotel", "sec@hotel.example"))
	require.Empty(t, e.quarantined(t))
}

func TestBadMessagesAreQuarantinedAndTheBatchGoesOn(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	secretAlert := alert("s1", func(a *alerts.Alert) { a.Marking = "SECRET" })
	unattributed := alert("u1", func(a *alerts.Alert) { a.IssuedBy = "" })
	badSector := alert("b1", func(a *alerts.Alert) { a.Audience.Sectors = []string{"piracy"} })
	wrongKey := msg(t, alert("k1", nil))
	wrongKey.Key = []byte("other")
	batch := []kafka.Message{
		{Key: []byte("junk"), Value: []byte("{not json")},
		msg(t, secretAlert), msg(t, unattributed), msg(t, badSector), wrongKey,
		msg(t, alert("good", nil)),
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
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg(t, alert("orig", nil))}))
	// The update narrows the audience to financial services and raises the
	// TLP: the hotel, which had the original, is no longer eligible.
	upd := alert("upd", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"orig"}, alerts.TLPAmber
		a.Audience.Sectors = []string{"financial-services"}
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg(t, upd)}))
	modes := map[string]string{}
	for _, j := range e.jobs(t) {
		if j.Alert.ID == "upd" {
			modes[j.Subscriber+" "+j.Target] = j.Mode
		}
	}
	require.Equal(t, map[string]string{
		"bank fc@bank.example":              delivery.ModeKeyNotice, // AMBER needs encryption; no key
		"bank https://hooks.bank.example/h": delivery.ModeSigned,
		"hotel sec@hotel.example":           delivery.ModeCancelNotice,
	}, modes)

	// An update that lowers the TLP, or references an unknown alert, is
	// quarantined.
	down := alert("down", func(a *alerts.Alert) {
		a.Type, a.References, a.TLP = alerts.TypeUpdate, []string{"upd"}, alerts.TLPGreen
	})
	ghost := alert("ghost", func(a *alerts.Alert) { a.Type, a.References = alerts.TypeCancel, []string{"never-sent"} })
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg(t, down), msg(t, ghost)}))
	require.Equal(t, map[string]string{"down": fanout.ReasonDowngrade, "ghost": fanout.ReasonUnknownRef}, e.quarantined(t))
}

func TestNotBeforeIsCarriedAndNamedUnknownRecorded(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	later := now.Add(6 * time.Hour)
	a := alert("nb", func(a *alerts.Alert) {
		a.NotBefore = &later
		a.Audience = alerts.Audience{Subscribers: []string{"farm", "nobody"}}
	})
	require.NoError(t, e.w.Handle(ctx, []kafka.Message{msg(t, a)}))
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
