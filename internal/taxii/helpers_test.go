package taxii_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/internal/record"
	"github.com/herald-alerts/herald/internal/taxii"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/viewtest"
	"github.com/herald-alerts/herald/internal/view"
	"github.com/herald-alerts/herald/subscribers"
)

const agency = "National Crime Agency"

// Tokens of the test partners, and of an analyst.
const (
	bankToken    = "tok-bank-5b2f"    // bank: financial services, pull up to GREEN
	charityToken = "tok-charity-77a1" // charity: financial services, pull up to AMBER
	ngoToken     = "tok-ngo-c09e"     // ngo: care only, pull up to AMBER
	hotelToken   = "tok-hotel-1d44"   // hotel: financial services, no pull channel
	analystToken = "tok-analyst-9e0b"
)

var tokens = map[string]taxii.Caller{
	bankToken:    {Name: "bank-misp", Role: taxii.RolePartner, Subscriber: "bank"},
	charityToken: {Name: "charity-octi", Role: taxii.RolePartner, Subscriber: "charity"},
	ngoToken:     {Name: "ngo-octi", Role: taxii.RolePartner, Subscriber: "ngo"},
	hotelToken:   {Name: "hotel", Role: taxii.RolePartner, Subscriber: "hotel"},
	analystToken: {Name: "alice", Role: "analyst"},
}

func partners() []*subscribers.Subscriber {
	subs := []*subscribers.Subscriber{
		{ID: "bank", Name: "Bank", Kind: "business", Sectors: []string{"financial-services"}, Clearance: "AMBER",
			Pull: &subscribers.Pull{MaxTLP: "GREEN"}},
		{ID: "charity", Name: "Charity", Kind: "ngo", Sectors: []string{"financial-services"}, Clearance: "RED",
			Sensitive: true, Pull: &subscribers.Pull{MaxTLP: "AMBER"}},
		{ID: "ngo", Name: "NGO", Kind: "ngo", Sectors: []string{"care"}, Clearance: "AMBER", Pull: &subscribers.Pull{}},
		{ID: "hotel", Name: "Hotel", Kind: "business", Sectors: []string{"financial-services"}, Clearance: "GREEN",
			Email: []subscribers.Email{{Address: "sec@hotel.example"}}},
	}
	for _, s := range subs {
		s.Normalize()
	}
	return subs
}

// env is the pull servers over a real in-process Kafka cluster: alerts
// are fanned out by the fan-out worker, the view follows the topics, and
// the servers answer from it.
type env struct {
	t       *testing.T
	bus     *bus.Bus
	view    *view.View
	reg     *subscribers.Registry
	w       *fanout.Worker
	server  *taxii.Server
	srv     *httptest.Server
	clock   *clock
	refused []string
	audit   *auditRecorder
	// ahead moves the servers' clock (time.Now) forward.
	ahead atomic.Int64
}

// serverNow is the servers' clock: time.Now, moved forward by ahead.
func (e *env) serverNow() time.Time { return time.Now().Add(time.Duration(e.ahead.Load())) }

// replica returns e with a pull server of its own on e's view, registry
// and receipts topic and e's clock, as another replica of the api role
// would be.
func (e *env) replica() *env {
	r := &env{t: e.t, bus: e.bus, view: e.view, reg: e.reg, w: e.w, clock: e.clock, audit: e.audit}
	r.serve(e.serverNow)
	return r
}

// serve starts e's pull server on e's view, registry and receipts topic,
// with clock now, and keeps the callers it refuses in e.refused.
func (e *env) serve(now func() time.Time) {
	e.server = &taxii.Server{Source: e.view, Registry: e.reg, Receipts: &receiptWriter{p: e.bus.Producer(bus.TopicReceipts)},
		Audit: e.audit, Agency: agency, Now: now, Log: kafkatest.Logger(e.t, slog.LevelWarn)}
	mux := http.NewServeMux()
	var mu sync.Mutex
	e.server.Register(mux, func(_ *http.Request, tok string) (taxii.Caller, bool) {
		c, ok := tokens[tok]
		return c, ok
	}, func(r *http.Request, who, why string) {
		mu.Lock()
		defer mu.Unlock()
		e.refused = append(e.refused, who)
	})
	e.srv = httptest.NewServer(mux)
	e.t.Cleanup(e.srv.Close)
}

// runView opens a view and runs it on b until the test ends; it returns
// once the view is ready.
func runView(tb testing.TB, b *bus.Bus) *view.View {
	tb.Helper()
	v, _ := viewtest.Run(tb, tb.TempDir(), view.Options{}, b, 5*time.Minute)
	return v
}

// auditRecorder keeps the audit entries the server records.
type auditRecorder struct {
	mu      sync.Mutex
	entries []record.Audit
}

func (a *auditRecorder) Record(_ context.Context, e record.Audit) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries = append(a.entries, e)
	return nil
}

func (a *auditRecorder) all() []record.Audit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.entries)
}

// clock is the fan-out's clock: each alert is fanned out a minute after
// the last.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) tick() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Minute)
	return c.now
}

// receiptWriter writes receipts to the receipts topic, as the app does.
type receiptWriter struct {
	p    *bus.Producer
	fail error
}

func (w *receiptWriter) WriteReceipt(ctx context.Context, r delivery.Receipt) error {
	if w.fail != nil {
		return w.fail
	}
	return w.p.Write(ctx, fanout.ReceiptMessage(r))
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, kafkatest.New(t))
}

// newEnvOn is newEnv on the bus b.
func newEnvOn(t *testing.T, b *bus.Bus) *env {
	t.Helper()
	reg := subscribers.NewRegistry()
	for _, s := range partners() {
		reg.Put(s)
	}
	v := runView(t, b)
	e := &env{t: t, bus: b, view: v, reg: reg, clock: &clock{now: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}}
	e.w = &fanout.Worker{
		Registry: reg, Policy: policy.Options{},
		Deliveries: b.Producer(bus.TopicDeliveries), Receipts: b.Producer(bus.TopicReceipts),
		Quarantine: b.Producer(bus.TopicQuarantine), History: v, Authenticate: b.Authenticate,
		Now: e.clock.Now, Log: slog.New(slog.DiscardHandler),
	}
	e.audit = &auditRecorder{}
	e.serve(e.serverNow)
	return e
}

// issueSeq counts the alerts made, so that each is issued a second after
// the last: an update is always a new version of its original's objects.
var issueSeq atomic.Int64

// alert returns a valid alert for the financial-services sector, issued
// by an analyst within the last hour.
func alert(id string, mut func(*alerts.Alert)) *alerts.Alert {
	now := time.Now().UTC().Truncate(time.Second).Add(-time.Hour).Add(time.Duration(issueSeq.Add(1)) * time.Second)
	a := &alerts.Alert{ID: id, Title: "Forced labour indicators " + id, Summary: "Workers housed on site.",
		Severity: "severe", Marking: "OFFICIAL", TLP: "GREEN", Handling: alerts.Handling{Code: "P"},
		Indicators: []alerts.Indicator{
			{Type: "email", Value: "jobs-" + id + "@recruit.example", Context: "recruiter"},
			{Type: "phone", Value: "+44 7700 900" + id[len(id)-3:]},
		},
		Audience: alerts.Audience{Sectors: []string{"financial-services"}},
		IssuedBy: "api:alice", IssuedAt: &now}
	if mut != nil {
		mut(a)
	}
	a.Normalize()
	return a
}

// publish writes a to the alerts topic as Herald's publishers do, fans it
// out a minute after the last, and waits for the view to apply it all.
func (e *env) publish(a *alerts.Alert) time.Time {
	e.t.Helper()
	ctx := context.Background()
	v, err := json.Marshal(a)
	require.NoError(e.t, err)
	m := kafka.Message{Key: []byte(a.ID), Value: v}
	require.NoError(e.t, e.bus.Producer(bus.TopicAlerts).Write(ctx, m))
	e.synced()
	return e.fanOut(m)
}

// fanOut fans out the alert m written to the alerts topic, a minute
// after the last, and waits for the view to apply it all.
func (e *env) fanOut(m kafka.Message) time.Time {
	e.t.Helper()
	ctx := context.Background()
	at := e.clock.tick()
	require.NoError(e.t, e.w.Handle(ctx, []kafka.Message{e.bus.AsWritten(bus.TopicAlerts, m)}))
	e.synced()
	return at
}

// fanOutAged writes a to the alerts topic with a record time older than
// the topic's retention (400 days: 500 days ago), fans it out now (its
// receipts are not old), and waits for the view to apply it all.
func (e *env) fanOutAged(a *alerts.Alert) {
	e.t.Helper()
	v, err := json.Marshal(a)
	require.NoError(e.t, err)
	m := kafka.Message{Key: []byte(a.ID), Value: v, Time: time.Now().Add(-500 * 24 * time.Hour)}
	require.NoError(e.t, e.bus.Producer(bus.TopicAlerts).Write(context.Background(), m))
	e.synced()
	e.fanOut(m)
}

// rebuiltAfterRetention applies retention on c, the cluster of e's bus
// (one partition), waits until the first record of the alerts topic is
// gone, and returns an env serving a view rebuilt from Kafka, with e's
// registry, fan-out, clock and audit.
func (e *env) rebuiltAfterRetention(c *kafkatest.Cluster) *env {
	e.t.Helper()
	c.Kfake().ApplyRetention()
	require.Eventually(e.t, func() bool {
		offs, err := e.bus.Offsets(e.t.Context(), bus.TopicAlerts)
		return err == nil && offs[bus.TopicAlerts][0].Start == 1
	}, 10*time.Second, 10*time.Millisecond)
	fresh := &env{t: e.t, bus: e.bus, view: runView(e.t, e.bus), reg: e.reg, w: e.w, clock: e.clock, audit: e.audit}
	fresh.serve(e.serverNow)
	return fresh
}

func (e *env) synced() {
	e.t.Helper()
	require.NoError(e.t, e.view.Sync(context.Background()))
}

// put replaces a partner's record in the registry, as the registry
// follower applies an administrator's change.
func (e *env) put(id string, mut func(*subscribers.Subscriber)) {
	s := *e.reg.Get(id)
	if s.Pull != nil {
		p := *s.Pull
		s.Pull = &p
	}
	mut(&s)
	e.reg.Put(&s)
}

// response is what a request got.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body.
func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// get requests path with a Bearer token ("" for none) and the TAXII
// Accept header.
func (e *env) get(path, token string) response {
	return e.do(path, func(h http.Header) {
		h.Set("Accept", taxii.MediaTAXII)
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
	})
}

func (e *env) do(path string, headers func(http.Header)) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	require.NoError(e.t, err)
	headers(req.Header)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(e.t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func basic(token string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("any-user:"+token))
}

// collectionPath is the path of a partner's collection.
func collectionPath(subscriber string) string {
	return "/taxii2/herald/collections/" + taxii.CollectionID(subscriber) + "/"
}
