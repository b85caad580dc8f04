package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/ledger"
	"github.com/herald-alerts/herald/internal/policy"
	"github.com/herald-alerts/herald/subscribers"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// Tokens the tests present. Only their hashes reach the server.
const (
	analystToken = "hrld_analyst_9f1c2e7a4b"
	adminToken   = "hrld_admin_3d8b6f0c21"
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

// fakePublisher records what it is asked to publish.
type fakePublisher struct {
	mu  sync.Mutex
	got []*alerts.Alert
	err error
}

func (p *fakePublisher) Publish(_ context.Context, a *alerts.Alert) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	c := *a
	p.got = append(p.got, &c)
	return nil
}

func (p *fakePublisher) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *fakePublisher) published() []*alerts.Alert {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

// fakeLedger folds receipts with the real ledger.
type fakeLedger struct {
	mu  sync.Mutex
	l   *ledger.Ledger
	err error
}

func newFakeLedger() *fakeLedger { return &fakeLedger{l: ledger.New()} }

func (f *fakeLedger) add(rs ...delivery.Receipt) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range rs {
		f.l.Add(r)
	}
}

func (f *fakeLedger) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeLedger) Lookup(_ context.Context, ids []string) (map[string]*ledger.Alert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string]*ledger.Alert{}
	for _, id := range ids {
		if a := f.l.Alert(id); a != nil {
			out[id] = a
		}
	}
	return out, nil
}

// fakeWriter stores records straight into the registry, as the consumer
// of the subscribers topic would a moment later.
type fakeWriter struct {
	mu      sync.Mutex
	reg     *subscribers.Registry
	puts    []*subscribers.Subscriber
	deletes []string
}

func (w *fakeWriter) Put(_ context.Context, s *subscribers.Subscriber) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.puts = append(w.puts, s)
	w.reg.Put(s)
	return nil
}

func (w *fakeWriter) stored() []*subscribers.Subscriber {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.puts)
}

func (w *fakeWriter) deleted() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.deletes)
}

func (w *fakeWriter) Delete(_ context.Context, id string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deletes = append(w.deletes, id)
	w.reg.Delete(id)
	return nil
}

// taxonomy is a small fixed taxonomy.
type taxonomy struct{}

func (taxonomy) HasSector(s string) bool {
	return slices.Contains([]string{"car-washes", "nail-bars", "agriculture"}, s)
}
func (taxonomy) HasRegion(r string) bool { return slices.Contains([]string{"UK", "TLC", "TLE"}, r) }

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is one API server with in-test dependencies.
type env struct {
	t        testing.TB
	srv      *httptest.Server
	server   *api.Server
	pub      *fakePublisher
	led      *fakeLedger
	reg      *subscribers.Registry
	wr       *fakeWriter
	logs     *syncBuffer
	previews []*alerts.Alert
	priors   []map[string]*ledger.Alert
	mu       sync.Mutex
}

// newEnv starts a server; configure may change its fields first.
func newEnv(t testing.TB, configure ...func(*api.Server)) *env {
	t.Helper()
	e := &env{t: t, pub: &fakePublisher{}, led: newFakeLedger(), reg: subscribers.NewRegistry(), logs: &syncBuffer{}}
	e.wr = &fakeWriter{reg: e.reg}
	e.server = &api.Server{
		Publisher: e.pub,
		Ledger:    e.led,
		Registry:  e.reg,
		Writer:    e.wr,
		Preview:   e.preview,
		Taxonomy:  taxonomy{},
		Tokens: []config.Token{
			{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analystToken)},
			{Name: "ops", Role: config.RoleAdmin, SHA256: config.HashToken(adminToken)},
		},
		Metrics: prometheus.NewRegistry(),
		Now:     func() time.Time { return testNow },
		Log:     slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, f := range configure {
		f(e.server)
	}
	e.srv = httptest.NewServer(e.server.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

// preview stands in for the policy: every registered partner gets a
// decision for its first email address, withheld when the alert's TLP
// exceeds its clearance.
func (e *env) preview(a *alerts.Alert, prior map[string]*ledger.Alert, _ time.Time) []policy.Decision {
	e.mu.Lock()
	c := *a
	e.previews = append(e.previews, &c)
	e.priors = append(e.priors, prior)
	e.mu.Unlock()
	var ds []policy.Decision
	for _, s := range e.reg.List() {
		d := policy.Decision{Subscriber: s.ID, Channel: delivery.ChannelEmail, Target: s.Email[0].Address}
		if a.TLP.Exceeds(s.Clearance) {
			d.Decision, d.Rule, d.Reason = delivery.Withhold, policy.RuleClearance, "TLP:"+string(a.TLP)+" exceeds the partner's clearance"
		} else {
			d.Decision, d.Mode, d.Rule, d.Reason = delivery.Deliver, delivery.ModeEncrypted, policy.RuleEmailCrypt, "encrypted to the address's key"
		}
		ds = append(ds, d)
	}
	return ds
}

func (e *env) previewed() []*alerts.Alert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.previews)
}

// request is one call to the server.
type request struct {
	method, path, token, contentType, body string
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

// fannedOut records in the ledger that an alert was fanned out.
func (e *env) fannedOut(id string, tlp alerts.TLP, marking alerts.Marking) {
	e.led.add(delivery.Receipt{
		Kind: delivery.KindAlert, AlertID: id, Type: alerts.TypeAlert, TLP: tlp, Marking: marking,
		IssuedBy: "api:alice", At: testNow.Add(-time.Hour),
	})
}

var errBroker = errors.New("dial tcp 127.0.0.1:9092: connection refused")
