package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/api"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestAckLinkFromEmail: the alert's email carries a link to the api role;
// opening it (as a mail scanner would) records nothing; pressing its
// button records the partner's acknowledgement, which the analysts see.
func TestAckLinkFromEmail(t *testing.T) {
	cluster := kafkatest.Start(t, kafkatest.RetryTiers(len(config.Default().Delivery.RetrySchedule)))
	sink := smtptest.New(t, smtptest.Options{})
	agencyPub, agency := pgptest.Key(t, pgptest.Agency)
	signingKey := filepath.Join(t.TempDir(), "agency.asc")
	require.NoError(t, os.WriteFile(signingKey, []byte(agency), 0o600))
	const analyst = "hrld_analyst_e2e_5b1f"
	cfg := config.Default()
	cfg.Kafka = cluster.Config()
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.Signing.KeyFile = signingKey
	cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS, cfg.SMTP.From = sink.Host, sink.Port, email.TLSNone, "Herald <alerts@herald.example>"
	cfg.Email.IssuerName = "National Crime Agency"
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.Tokens = []config.Token{{Name: "alice", Role: config.RoleAnalyst, SHA256: config.HashToken(analyst)}}

	b := cluster.Open(t, cfg.Kafka)
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: "soc@acme.example"}}}
	acme.Normalize()
	require.NoError(t, app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}.Put(t.Context(), "cli:test", "", []*subscribers.Subscriber{acme}, nil))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	started := make(chan *app.App, 1)
	go func() {
		// The roles in the reverse of their start order: the deliver role's
		// links must still name the port the api role binds.
		done <- app.Run(ctx, &cfg, slog.New(slog.DiscardHandler), app.Options{Explicit: true,
			Roles: []string{app.RoleDeliver, app.RoleFanout, app.RoleAPI}, Started: func(a *app.App) { started <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Error("herald did not stop")
		}
	})
	select {
	case h := <-started:
		cfg.API.Listen = h.APIAddr() // the port the api role bound
	case err := <-done:
		t.Fatalf("herald did not start: %v", err)
	}

	issued := time.Now().UTC()
	a := &alerts.Alert{ID: "op-ack-1", Type: alerts.TypeAlert, Status: alerts.StatusActual, Title: "Car wash recruits through a fake agency",
		Summary: "Workers are charged for travel and housing.", Severity: alerts.SeveritySevere, TLP: alerts.TLPGreen,
		Marking: alerts.MarkingOfficial, Handling: alerts.Handling{Code: "P"}, Audience: alerts.Audience{Sectors: []string{"car-washes"}},
		IssuedBy: "api:alice", IssuedAt: &issued}
	v, err := json.Marshal(a)
	require.NoError(t, err)
	require.NoError(t, b.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(a.ID), Value: v}))

	require.Eventually(t, func() bool { return sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the alert's email")
	ver, err := email.Verify(sink.Messages()[0].Data, []byte(agencyPub), nil, nil)
	require.NoError(t, err)
	link := regexp.MustCompile(`http://` + regexp.QuoteMeta(cfg.API.Listen) + `/ack/[A-Za-z0-9_-]+`).FindString(ver.Text)
	require.NotEmpty(t, link, "the signed text carries the link:\n%s", ver.Text)

	get := func(method, url, token string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	acks := func() int {
		code, body := get("GET", "http://"+cfg.API.Listen+"/v1/alerts/"+a.ID, analyst)
		require.Equal(t, http.StatusOK, code, body)
		var st api.AlertStatus
		require.NoError(t, json.Unmarshal([]byte(body), &st))
		assert.NotEmpty(t, st.IssuedBy)
		assert.False(t, st.IssuedAt.IsZero(), "a fanned-out alert's status says when it was issued, as the alert list does")
		for _, k := range st.Acks {
			assert.Equal(t, "acme", k.Subscriber)
			assert.Equal(t, "email link", k.By)
		}
		return len(st.Acks)
	}
	for range 2 {
		code, body := get("GET", link, "")
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, "Confirm receipt")
	}
	assert.Zero(t, acks(), "opening the link records nothing")
	code, body := get("POST", link, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "Receipt confirmed")
	assert.Equal(t, 1, acks())
	code, body = get("POST", link, "")
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "already acknowledged")
	assert.Equal(t, 1, acks())
}
