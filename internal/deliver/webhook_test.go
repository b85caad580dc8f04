package deliver

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/deliver/webhook"
	"github.com/herald-alerts/herald/internal/delivery"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/internal/testkit/webhooktest"
)

// TestRealWebhookReceiver runs the runner with the real webhook notifier
// against httptest receivers: retries carry the same webhook-id, and 410
// disables the endpoint.
func TestRealWebhookReceiver(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Policy.AllowInsecureLoopback = true })
	n, err := webhook.New(webhook.Config{Timeout: 2 * time.Second, AllowInsecureLoopback: true},
		webhooktest.NewSigner(t), kafkatest.Logger(t, slog.LevelWarn))
	require.NoError(t, err)

	flaky := webhooktest.New(t)
	flaky.FailThenSucceed(2, http.StatusServiceUnavailable)
	gone := webhooktest.New(t)
	gone.Script(webhooktest.Status(http.StatusGone))
	e.reg.Put(testSub("acme", flaky.URL("/hook"), gone.URL("/hook")))

	a := testAlert("al-web")
	jf := testJob(a, "acme", delivery.ChannelWebhook, flaky.URL("/hook"))
	jg := testJob(a, "acme", delivery.ChannelWebhook, gone.URL("/hook"))
	r := New(e.cfg, e.bus, e.reg, map[string]Notifier{delivery.ChannelWebhook: n})
	e.start(r)
	e.publish(jf, jg)

	rs := e.waitState(jf.ID, delivery.StateDelivered)
	assert.Equal(t, []string{delivery.StateRetrying, delivery.StateRetrying, delivery.StateDelivered}, states(rs))
	reqs := flaky.Requests()
	require.Len(t, reqs, 3)
	for _, q := range reqs {
		assert.Equal(t, jf.ID, q.Header.Get("webhook-id"))
	}

	rs = e.waitState(jg.ID, delivery.StateDisabled)
	assert.Equal(t, delivery.ReasonGone, rs[0].Reason)
	assert.Equal(t, 1, gone.Count())
	require.Eventually(t, func() bool {
		s := e.reg.Get("acme")
		return s.Webhooks[1].Disabled && !s.Webhooks[0].Disabled
	}, 5*time.Second, 20*time.Millisecond)
}
