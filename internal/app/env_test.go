package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/testkit/apitest"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/logtest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
)

// serveEnv is what a test runs `herald serve` against: a Kafka cluster
// (kfake, in this process), an SMTP sink, and Herald's configuration for
// them, which the test changes before it starts Herald.
type serveEnv struct {
	cluster *kafkatest.Cluster
	sink    *smtptest.Server
	cfg     config.Config
	logs    *logtest.Buffer // what the Heralds the test started logged, unless it replaced the buffer
	level   slog.Level      // the least level logged; info unless the test lowers it
}

// newServeEnv starts the cluster, creating topics (full names) with the
// given configs before Herald sees it, and the SMTP sink. The
// configuration has the agency's signing key, a publishing key, the sink
// as its SMTP server and an API listener on a free port.
func newServeEnv(t *testing.T, topics map[string][]kafka.ConfigEntry) *serveEnv {
	t.Helper()
	cluster := kafkatest.Start(t, kafkatest.RetryTiers(len(config.Default().Delivery.RetrySchedule)))
	if len(topics) > 0 {
		var req kafka.CreateTopicsRequest
		for name, entries := range topics {
			req.Topics = append(req.Topics, kafka.TopicConfig{Topic: name, NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: entries})
		}
		admin := &kafka.Client{Addr: kafka.TCP(cluster.Addrs()...), Timeout: 10 * time.Second}
		res, err := admin.CreateTopics(t.Context(), &req)
		require.NoError(t, err)
		for name := range topics {
			require.NoError(t, res.Errors[name], name)
		}
	}
	sink := smtptest.New(t, smtptest.Options{})
	_, agency := pgptest.Key(t, pgptest.Agency)
	signingKey := filepath.Join(t.TempDir(), "agency.asc")
	require.NoError(t, os.WriteFile(signingKey, []byte(agency), 0o600))
	cfg := config.Default()
	cfg.Kafka = cluster.Config()
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.Signing.KeyFile = signingKey
	cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS, cfg.SMTP.From = sink.Host, sink.Port, email.TLSNone, "Herald <alerts@herald.example>"
	cfg.Email.IssuerName = "National Crime Agency"
	cfg.API.Listen = "127.0.0.1:0"
	return &serveEnv{cluster: cluster, sink: sink, cfg: cfg, logs: &logtest.Buffer{}}
}

// serve runs app.Run with opt (no roles: every role, as `herald serve`
// with no --roles does) until stop is called or the test ends. It returns
// the running App and stop, or the error Run returned when Herald did not
// start.
func (e *serveEnv) serve(t *testing.T, opt app.Options) (h *app.App, stop func(), err error) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: e.level}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *app.App, 1)
	opt.Started = func(a *app.App) { started <- a }
	go func() { done <- app.Run(ctx, &e.cfg, log, opt) }()
	select {
	case h = <-started:
	case err := <-done:
		cancel()
		return nil, nil, err
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("herald neither started nor failed within a minute:\n%s", e.logs)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err, "herald stopped with an error")
			case <-time.After(60 * time.Second):
				t.Fatal("herald did not stop within a minute")
			}
		})
	}
	t.Cleanup(stop)
	return h, stop, nil
}

// start runs the given roles alone (explicit, in this order) until the
// test ends; Herald must start.
func (e *serveEnv) start(t *testing.T, roles ...string) *app.App {
	t.Helper()
	h, _, err := e.serve(t, app.Options{Roles: roles, Explicit: true})
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	return h
}

// acmeCarWash is a partner of the car-washes sector, cleared for AMBER,
// that takes alerts by email at soc@acme.example.
func acmeCarWash() *subscribers.Subscriber {
	return &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: "soc@acme.example"}}}
}

// register normalises subs and stores them on b as an administrator's
// command line does.
func register(t *testing.T, b *bus.Bus, subs ...*subscribers.Subscriber) {
	t.Helper()
	for _, s := range subs {
		s.Normalize()
	}
	require.NoError(t, app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}.Put(t.Context(), "cli:test", "", subs, nil))
}

// carWashAlert is a GREEN alert, issued now by api:alice, for the
// car-washes sector.
func carWashAlert(id string) *alerts.Alert {
	issued := time.Now().UTC()
	return &alerts.Alert{ID: id, Type: alerts.TypeAlert, Status: alerts.StatusActual, Title: "Car wash recruits through a fake agency",
		Summary: "Workers are charged for travel and housing.", Severity: alerts.SeveritySevere, TLP: alerts.TLPGreen,
		Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"}, Audience: alerts.Audience{Sectors: []string{"car-washes"}},
		IssuedBy: "api:alice", IssuedAt: &issued}
}

// publish writes a to the alerts topic on b, keyed by its id.
func publish(t *testing.T, b *bus.Bus, a *alerts.Alert) {
	t.Helper()
	v, err := json.Marshal(a)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(a.ID), Value: v}))
}

// call makes one HTTP request and returns the status and body. A token,
// if any, is sent as the bearer token; a body, if any, as JSON. t may be
// a require.EventuallyWithT's *assert.CollectT, so that a request that
// fails while polling says why when the wait ends, where a require on the
// test's t inside require.Eventually's function would end only that
// function's goroutine and leave "Condition never satisfied" after the
// whole timeout.
func call(t require.TestingT, method, url, token, body string) (int, string) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	status, out := apitest.Do(t, req)
	return status, string(out)
}
