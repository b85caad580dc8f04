package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/logtest"
	"github.com/herald-alerts/herald/internal/testkit/viewtest"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/publish"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/taxonomy"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// Tokens the tests present. Only their hashes reach the server.
const (
	analystToken       = "hrld_analyst_9f1c2e7a4b"
	secondAnalystToken = "hrld_analyst_bob_55e1c0"
	partnerToken       = "hrld_partner_acme_7c1d"
	adminToken         = "hrld_admin_3d8b6f0c21"
)

var testNow = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// validAlert is an alert that passes validation at testNow.
const validAlert = `{
  "title": "Car wash in Leeds recruiting via social media",
  "severity": "severe",
  "tlp": "TLP:AMBER",
  "marking": "OFFICIAL",
  "handling": {"code": "P"},
  "audience": {"sectors": ["car-washes"], "regions": ["TLE"]}
}`

// subscriberStore is the real store (records, overlays and audit to Kafka)
// that also applies what it writes to the registry at once, as the
// consumer of the subscribers topic would a moment later. (The tests of
// internal/app run two API servers, each with the real consumer.)
type subscriberStore struct {
	app.SubscriberStore
	mu      sync.Mutex
	reg     *subscribers.Registry
	puts    []*subscribers.Subscriber
	deletes []string
}

func (w *subscriberStore) Put(ctx context.Context, actor, reason string, subs []*subscribers.Subscriber, prev func(string) *subscribers.Subscriber) error {
	var clear []string
	for _, s := range subs {
		var old *subscribers.Subscriber
		if prev != nil {
			old = prev(s.ID)
		}
		clear = append(clear, subscribers.ReplacedOverlays(old, s)...)
		if old == nil {
			clear = append(clear, w.reg.OverlayKeys(s.ID)...)
		}
	}
	if err := w.SubscriberStore.Put(ctx, actor, reason, subs, prev); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range clear {
		w.reg.ClearOverlay(k)
	}
	for _, s := range subs {
		w.puts = append(w.puts, s)
		w.reg.Put(s)
	}
	return nil
}

func (w *subscriberStore) Delete(ctx context.Context, actor, id string) error {
	clear := w.reg.OverlayKeys(id)
	if err := w.SubscriberStore.Delete(ctx, actor, id); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, k := range clear {
		w.reg.ClearOverlay(k)
	}
	w.deletes = append(w.deletes, id)
	w.reg.Delete(id)
	return nil
}

func (w *subscriberStore) SetKey(ctx context.Context, actor string, rec *subscribers.Subscriber, address, written, pgpKey string, now time.Time) error {
	if err := w.SubscriberStore.SetKey(ctx, actor, rec, address, written, pgpKey, now); err != nil {
		return err
	}
	w.reg.PutKeyOverlay(subscribers.KeyOverlay{Subscriber: rec.ID, Address: address, PGPKey: pgpKey, By: actor, At: now.UTC(),
		Incarnation: rec.Incarnation})
	return nil
}

func (w *subscriberStore) SetSecrets(ctx context.Context, actor string, rec *subscribers.Subscriber, url string, written, secrets []string, now time.Time) error {
	if err := w.SubscriberStore.SetSecrets(ctx, actor, rec, url, written, secrets, now); err != nil {
		return err
	}
	w.reg.PutSecretsOverlay(subscribers.SecretsOverlay{Subscriber: rec.ID, URL: url, Secrets: secrets, By: actor, At: now.UTC(),
		Incarnation: rec.Incarnation, Over: subscribers.SecretsDigest(written)})
	return nil
}

func (w *subscriberStore) RewriteKey(ctx context.Context, rec *subscribers.Subscriber, o subscribers.KeyOverlay) error {
	if err := w.SubscriberStore.RewriteKey(ctx, rec, o); err != nil {
		return err
	}
	o.Seq = 0
	w.reg.PutKeyOverlay(o)
	return nil
}

func (w *subscriberStore) RewriteSecrets(ctx context.Context, rec *subscribers.Subscriber, o subscribers.SecretsOverlay) error {
	if err := w.SubscriberStore.RewriteSecrets(ctx, rec, o); err != nil {
		return err
	}
	o.Seq = 0
	w.reg.PutSecretsOverlay(o)
	return nil
}

func (w *subscriberStore) stored() []*subscribers.Subscriber {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.puts)
}

func (w *subscriberStore) deleted() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.deletes)
}

// testTaxonomy is a small taxonomy, as taxonomy.sectors and
// taxonomy.regions may configure one.
var testTaxonomy = func() *taxonomy.Taxonomy {
	t, err := config.Taxonomy{
		Sectors: []taxonomy.Sector{{Slug: "car-washes", Name: "Hand car washes"}, {Slug: "nail-bars", Name: "Nail bars"},
			{Slug: "agriculture", Name: "Agriculture"}},
		Regions: []taxonomy.Region{{Code: "TLC", Name: "North East"}, {Code: "TLE", Name: "Yorkshire and The Humber"}},
	}.Build()
	if err != nil {
		panic(err)
	}
	return t
}()

// env is one API server over a real in-process Kafka cluster.
type env struct {
	t      testing.TB
	srv    *httptest.Server
	server *api.Server
	bus    *bus.Bus
	pub    *publish.Publisher
	reg    *subscribers.Registry
	wr     *subscriberStore
	view   *view.View
	logs   *logtest.Buffer
}

// withRelease turns release by a second analyst on with the default list.
func withRelease(e *env) { e.pub.Release = config.Default().Release }

// withKafkaDown points the publisher and the ledger at a broker that is
// not there.
func withKafkaDown(e *env) {
	k := config.Default().Kafka
	k.Brokers = []string{"127.0.0.1:1"}
	dead, err := bus.Open(context.Background(), k, bus.Options{Keyring: kafkatest.Keyring(), Log: slog.New(slog.DiscardHandler)})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { dead.Close() })
	idx := publish.KafkaIndex{R: dead}
	e.pub.Index, e.pub.Alerts, e.pub.Pending = idx, dead.Producer(bus.TopicAlerts), dead.Producer(bus.TopicPending)
	e.server.Ledger = idx
}

// newEnv starts a server; each option is a func(*env) or a
// func(*api.Server) applied before the server starts.
func newEnv(t testing.TB, options ...any) *env {
	t.Helper()
	b := kafkatest.New(t)
	e := &env{t: t, bus: b, reg: subscribers.NewRegistry(), logs: &logtest.Buffer{}}
	now := func() time.Time { return testNow }
	e.wr = &subscriberStore{SubscriberStore: app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, now), Overlays: e.reg}, reg: e.reg}
	e.pub = &publish.Publisher{
		Index: publish.KafkaIndex{R: b}, Registry: e.reg, Taxonomy: testTaxonomy,
		Release: config.Release{PendingTTL: 24 * time.Hour},
		Alerts:  b.Producer(bus.TopicAlerts), Pending: b.Producer(bus.TopicPending), Audit: app.AuditLog(b, now), Now: now,
	}
	e.view, _ = viewtest.Run(t, t.TempDir(), view.Options{Now: now}, b, 10*time.Second)
	e.server = &api.Server{
		Desk:      e.view,
		Publisher: e.pub,
		Decide:    app.Preview(e.reg, policy.Options{}),
		Audit:     app.AuditLog(b, now),
		Ledger:    publish.KafkaIndex{R: b},
		Registry:  e.reg,
		Directory: e.reg,
		Endpoints: e.wr,
		Overlays:  e.wr,
		Writer:    e.wr,
		Taxonomy:  testTaxonomy,
		Tokens: []config.Token{
			{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analystToken)},
			{Name: "bob", Role: config.RoleAnalyst, SHA256: config.HashToken(secondAnalystToken)},
			{Name: "ops", Role: config.RoleAdmin, SHA256: config.HashToken(adminToken)},
			{Name: "acme-soc", Role: config.RolePartner, Subscriber: "acme", SHA256: config.HashToken(partnerToken)},
		},
		Metrics: prometheus.NewRegistry(),
		Now:     now,
		Log:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range options {
		switch f := o.(type) {
		case func(*api.Server):
			f(e.server)
		case func(*env):
			f(e)
		default:
			t.Fatalf("newEnv: unknown option %T", o)
		}
	}
	e.srv = httptest.NewServer(e.server.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// synced waits until the view has applied everything written so far.
func (e *env) synced() {
	e.t.Helper()
	require.NoError(e.t, e.view.Sync(context.Background()))
}

// published returns the alerts written to the alerts topic, oldest first.
func (e *env) published() []*alerts.Alert { return e.publishedT(e.t) }

// publishedT is published reporting to t (a fuzz target's).
func (e *env) publishedT(t testing.TB) []*alerts.Alert {
	t.Helper()
	var out []*alerts.Alert
	require.NoError(t, e.bus.ReadAll(context.Background(), bus.TopicAlerts, func(m kafka.Message) error {
		require.NoError(t, e.bus.Authenticate(m), "the API writes only authenticated alerts")
		a, err := alerts.Decode(m.Value)
		require.NoError(t, err)
		require.Equal(t, a.ID, string(m.Key))
		out = append(out, a)
		return nil
	}))
	return out
}

// audited returns the audit trail.
func (e *env) audited() []record.Audit {
	e.t.Helper()
	var out []record.Audit
	require.NoError(e.t, e.bus.ReadAll(context.Background(), bus.TopicAudit, func(m kafka.Message) error {
		require.NoError(e.t, e.bus.Authenticate(m))
		var a record.Audit
		require.NoError(e.t, json.Unmarshal(m.Value, &a))
		out = append(out, a)
		return nil
	}))
	return out
}

// receipts writes receipts to the receipts topic, as the workers would.
func (e *env) receipts(rs ...delivery.Receipt) {
	e.t.Helper()
	msgs := make([]kafka.Message, len(rs))
	for i, r := range rs {
		msgs[i] = fanout.ReceiptMessage(r)
	}
	require.NoError(e.t, e.bus.Producer(bus.TopicReceipts).Write(context.Background(), msgs...))
}

// request is one call to the server.
type request struct {
	method, path, token, contentType, body string
	// header holds further request headers.
	header map[string]string
}

// do sends req and returns the response with its body read.
func (e *env) do(req request) (*http.Response, []byte) {
	e.t.Helper()
	var body io.Reader
	if req.body != "" {
		body = strings.NewReader(req.body)
	}
	r, err := http.NewRequestWithContext(e.t.Context(), req.method, e.srv.URL+req.path, body)
	require.NoError(e.t, err)
	if req.token != "" {
		r.Header.Set("Authorization", "Bearer "+req.token)
	}
	if req.contentType != "" {
		r.Header.Set("Content-Type", req.contentType)
	} else if req.body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range req.header {
		r.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(r)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return resp, b
}

// addPartner registers a partner directly in the registry.
func (e *env) addPartner(id string, clearance alerts.TLP) {
	s := &subscribers.Subscriber{
		ID: id, Name: id + " Ltd", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: clearance, Email: []subscribers.Email{{Address: "alerts@" + id + ".example"}},
	}
	s.Normalize()
	e.reg.Put(s)
}

// publishAs writes an alert under id to the alerts topic, as the fan-out
// only decides alerts that were: a partner's view of its deliveries shows
// nothing of an alert the view does not hold.
func (e *env) publishAs(id string) {
	e.t.Helper()
	v, err := json.Marshal(testAlertWith(id, nil))
	require.NoError(e.t, err)
	require.NoError(e.t, e.bus.Producer(bus.TopicAlerts).Write(context.Background(), kafka.Message{Key: []byte(id), Value: v}))
}

// fannedOut records in the ledger that an alert was fanned out.
func (e *env) fannedOut(id string, tlp alerts.TLP, marking alerts.Marking) {
	published := testAlertWith(id, nil) // as publishAs writes it, and the view reads it
	published.Normalize()
	e.receipts(delivery.Receipt{
		Kind: delivery.KindAlert, AlertID: id, Type: alerts.TypeAlert, TLP: tlp, Marking: marking,
		IssuedBy: "api:alice", At: testNow.Add(-time.Hour), Digest: published.Digest(),
	})
}
