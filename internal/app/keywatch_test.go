package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/deliver/email"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/logtest"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
)

// TestKeyExpiryWarningOnce is issue 14's end-to-end case: Herald (fan-out
// and deliver roles, a real Kafka protocol broker, an SMTP server) holds
// a partner whose key expires in 10 days. The partner gets exactly one
// signed, content-free warning — the 30-day one, not yet the 7-day one —
// and after Herald restarts, nothing more.
func TestKeyExpiryWarningOnce(t *testing.T) {
	e := newServeEnv(t, nil)
	e.level = slog.LevelDebug // the key check's line is at debug level
	require.Equal(t, []time.Duration{30 * 24 * time.Hour, 7 * 24 * time.Hour}, e.cfg.Email.KeyExpiryWarning, "the defaults")

	const addr = "soc@acme.example"
	b := e.cluster.Open(t, e.cfg.Kafka)
	acme := acmeCarWash()
	acme.Email[0].PGPKey = pgptest.ExpiringKey(t, addr, 10*24*time.Hour)
	register(t, b, acme)

	roles := app.Options{Roles: []string{app.RoleFanout, app.RoleDeliver}, Explicit: true}
	_, stop, err := e.serve(t, roles)
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "the warning")
	stop()
	msgs := e.sink.Messages()
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
	e.logs = &logtest.Buffer{} // the restarted Herald's log alone
	_, stop, err = e.serve(t, roles)
	require.NoError(t, err, "herald did not start:\n%s", e.logs)
	require.Eventually(t, func() bool { return strings.Contains(e.logs.String(), "partners' keys checked") }, 30*time.Second, 20*time.Millisecond, "%s", e.logs)
	require.Never(t, func() bool { return e.sink.Count() > 1 || len(keyExpiryJobs(t, b)) > 1 }, 3*time.Second, 100*time.Millisecond,
		"a second warning after the restart")
	stop()
	assert.Contains(t, e.logs.String(), "expiring=1")
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
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, b.ReadAll(ctx, bus.TopicDeliveries, func(m kafka.Message) error {
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
