package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestConsoleShowsAQuarantinedAlert drives the console's status page and
// desk in Debian's Chromium for an alert Herald's publisher wrote and the
// fan-out quarantined (unapproved: an AMBER alert without a second
// analyst's approval, as an api configured without release.second_analyst
// writes it). The status page says it was quarantined, why, and that it
// went to nobody, where it said "Deliveries in progress" for ever, and
// stops asking; the desk lists it as quarantined and counts it.
func TestConsoleShowsAQuarantinedAlert(t *testing.T) {
	chromium := findChromium(t)
	base, b := startAPIAndFanOut(t)

	issued := time.Now().UTC()
	a := &alerts.Alert{ID: "op-skew-2", Type: alerts.TypeAlert, Status: alerts.StatusActual, Title: "Nail bar recruits through a fake agency",
		Severity: alerts.SeveritySevere, TLP: alerts.TLPAmber, Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"},
		Audience: alerts.Audience{Sectors: []string{"nail-bars"}}, IssuedBy: "api:alice", IssuedAt: &issued}
	v, err := json.Marshal(a)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(a.ID), Value: v}))

	br := newBrowser(t, chromium, t.TempDir(), base)
	br.signIn("/status/"+a.ID, aliceToken, "alice")
	br.poll(`document.getElementById('status').dataset.state === 'quarantined'`)
	msg := br.text("#status-msg")
	assert.Contains(t, msg, "Quarantined by the fan-out (unapproved): it went to nobody.")
	assert.Contains(t, msg, "needs a second analyst's approval")
	assert.NotContains(t, br.bodyText(), "in progress")
	facts := br.text("#alert-facts")
	assert.Contains(t, facts, "Reasonunapproved")
	assert.Contains(t, facts, "TLP:AMBER")
	assert.Contains(t, br.text("#alert-title"), a.Title)

	// Nothing will change: the page stops asking. (Longer than a poll.)
	br.eval(`(() => { window.heraldCalls = 0; const f = window.fetch; window.fetch = function () { window.heraldCalls++; return f.apply(this, arguments); }; return ''; })()`)
	time.Sleep(4 * time.Second)
	assert.Equal(t, "0", br.eval(`String(window.heraldCalls)`), "no request after the quarantine was shown")

	br.navigate("/")
	br.poll(`document.querySelector('#alert-list tr[data-alert-id="op-skew-2"] .state') !== null`)
	assert.Equal(t, "quarantined", br.text(`#alert-list tr[data-alert-id="op-skew-2"] .state`))
	assert.Contains(t, br.text(`#alert-list tr[data-alert-id="op-skew-2"]`), "quarantined by the fan-out: unapproved")
	br.poll(`document.querySelector('[data-count="quarantined"]').textContent === '1'`)
	br.noPageErrors()
}

// startAPIAndFanOut runs the api and fanout roles of one Herald (release
// by a second analyst on, as by default) on the embedded broker, and
// returns the console's address and a client of its broker holding the
// publishing key.
func startAPIAndFanOut(t *testing.T) (string, *bus.Bus) {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Kafka.Brokers = nil
	cfg.Kafka.Embedded = config.Embedded{Listen: "127.0.0.1:0"}
	cfg.Kafka.Partitions = 1
	cfg.Kafka.Consumer = kafkatest.FastConsumer()
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.View.Dir = filepath.Join(dir, "view")
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(aliceToken)}}
	require.NoError(t, cfg.Validate())

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan *app.App, 1)
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, &cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), app.Options{
			Roles: []string{app.RoleAPI, app.RoleFanout}, Explicit: true, Started: func(a *app.App) { started <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "herald stopped with an error")
		case <-time.After(30 * time.Second):
			t.Error("herald did not stop within 30s")
		}
	})
	var h *app.App
	select {
	case h = <-started:
	case err := <-done:
		t.Fatalf("herald did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("herald did not start within 30s")
	}
	base := "http://" + h.APIAddr()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "the api becomes ready")
	return base, h.Bus()
}
