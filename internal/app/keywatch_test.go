package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-alerts/herald/internal/testkit/logtest"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/internal/testkit/smtptest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestKeyExpiryWarningOnce is issue 14's end-to-end case: Herald (fan-out
// and deliver roles, a real Kafka protocol broker, an SMTP server) holds
// a partner whose key expires in 10 days. The partner gets exactly one
// signed, content-free warning — the 30-day one, not yet the 7-day one —
// and after Herald restarts, nothing more.
func TestKeyExpiryWarningOnce(t *testing.T) {
	cluster := kafkatest.Start(t, kafkatest.RetryTiers(len(config.Default().Delivery.RetrySchedule)))
	sink := smtptest.New(t, smtptest.Options{})
	dir := t.TempDir()
	_, agency := pgptest.Key(t, pgptest.Agency)
	signingKey := filepath.Join(dir, "agency.asc")
	require.NoError(t, os.WriteFile(signingKey, []byte(agency), 0o600))
	cfg := config.Default()
	cfg.Kafka = cluster.Config()
	cfg.Publishing.KeyFile = kafkatest.KeyFile(t)
	cfg.Signing.KeyFile = signingKey
	cfg.SMTP.Host, cfg.SMTP.Port, cfg.SMTP.TLS, cfg.SMTP.From = sink.Host, sink.Port, email.TLSNone, "Herald <alerts@herald.example>"
	cfg.Email.IssuerName = "National Crime Agency"
	require.Equal(t, []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour}, cfg.Email.KeyExpiryWarning, "the defaults")

	const addr = "soc@acme.example"
	b := cluster.Open(t, cfg.Kafka)
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme Car Wash", Kind: subscribers.KindBusiness, Sectors: []string{"car-washes"},
		Clearance: alerts.TLPAmber, Email: []subscribers.Email{{Address: addr, PGPKey: pgptest.ExpiringKey(t, addr, 10*24*time.Hour)}}}
	acme.Normalize()
	store := app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}
	require.NoError(t, store.Put(t.Context(), "cli:test", "", []*subscribers.Subscriber{acme}, nil))

	// run runs one Herald process until stop is called.
	run := func() (logs *logtest.Buffer, stop func()) {
		logs = &logtest.Buffer{}
		log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		started := make(chan struct{})
		go func() {
			done <- app.Run(ctx, &cfg, log, app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true,
				Started: func(*app.App) { close(started) }})
		}()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("herald did not start: %v\n%s", err, logs.String())
		case <-time.After(60 * time.Second):
			t.Fatal("herald did not start within a minute")
		}
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cancel()
				select {
				case err := <-done:
					require.NoError(t, err)
				case <-time.After(60 * time.Second):
					t.Fatal("herald did not stop within a minute")
				}
			})
		}
		t.Cleanup(stop)
		return logs, stop
	}

	_, stop := run()
	require.Eventually(t, func() bool { return sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the warning")
	stop()
	msgs := sink.Messages()
	require.Len(t, msgs, 1)
	m := msgs[0]
	assert.Equal(t, []string{addr}, m.To)
	assert.Contains(t, string(m.Data), "multipart/signed")
	v, err := email.Verify(m.Data, pgptestPublic(t), nil, nil)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(v.Subject, "[TLP:CLEAR] Herald: your OpenPGP key expires on "), v.Subject)
	assert.Contains(t, v.Text, "The OpenPGP key Herald holds for "+addr+" expires on")
	assert.NotContains(t, v.Text, "/ack/", "nothing to acknowledge")

	jobs := keyExpiryJobs(t, b)
	require.Len(t, jobs, 1)
	k, err := delivery.KeyExpiryOf(jobs[0])
	require.NoError(t, err)
	assert.Equal(t, 30*24*time.Hour, k.Threshold, "the 30-day warning; the 7-day one is not due yet")

	// Herald restarts: it checks the key again and sends nothing.
	logs, stop := run()
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "partners' keys checked") }, 30*time.Second, 20*time.Millisecond, "%s", logs)
	require.Never(t, func() bool { return sink.Count() > 1 || len(keyExpiryJobs(t, b)) > 1 }, 3*time.Second, 100*time.Millisecond,
		"a second warning after the restart")
	stop()
	assert.Contains(t, logs.String(), "expiring=1")
}

// pgptestPublic is the agency's public key.
func pgptestPublic(t *testing.T) []byte {
	pub, _ := pgptest.Key(t, pgptest.Agency)
	return []byte(pub)
}

// keyExpiryJobs returns the key-expiry notices on the deliveries topic.
func keyExpiryJobs(t *testing.T, b *bus.Bus) []*delivery.Job {
	t.Helper()
	var out []*delivery.Job
	require.NoError(t, b.ReadAll(context.Background(), bus.TopicDeliveries, func(m kafka.Message) error {
		var probe struct{ Mode string }
		require.NoError(t, json.Unmarshal(m.Value, &probe))
		if probe.Mode == delivery.ModeKeyExpiryNotice {
			j, err := delivery.DecodeJob(m.Value, nil)
			require.NoError(t, err)
			out = append(out, j)
		}
		return nil
	}))
	return out
}
