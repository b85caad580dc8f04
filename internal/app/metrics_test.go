package app_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
)

// TestRecordsHeraldDidNotWriteAreCounted: an operator alerts on records
// Herald refused, which reach no one. A client holding another publishing
// key writes an alert (the fan-out quarantines it as unattributed) and a
// partner record (the registry skips it); /metrics counts both, by
// reason and by topic, and the real alert still goes.
func TestRecordsHeraldDidNotWriteAreCounted(t *testing.T) {
	e := newServeEnv(t, nil)
	b := e.cluster.Open(t, e.cfg.Kafka)
	register(t, b, acmeCarWash())
	h, _, err := e.serve(t, app.Options{})
	require.NoError(t, err, "herald did not start:\n%s", e.logs)

	secret := make([]byte, busauth.KeySize)
	secret[0] = 1
	other, err := busauth.New(secret)
	require.NoError(t, err)
	stranger := e.cluster.OpenWith(t, e.cfg.Kafka, bus.Options{Keyring: other, Log: kafkatest.Logger(t, slog.LevelError)})
	forged := carWashAlert("op-forged-1")
	v, err := json.Marshal(forged)
	require.NoError(t, err)
	require.NoError(t, stranger.Producer(bus.TopicAlerts).Write(t.Context(), kafka.Message{Key: []byte(forged.ID), Value: v}))
	mallory := acmeCarWash()
	mallory.ID, mallory.Email[0].Address = "mallory", "mallory@evil.example"
	v, err = json.Marshal(mallory)
	require.NoError(t, err)
	require.NoError(t, stranger.Producer(bus.TopicSubscribers).Write(t.Context(), kafka.Message{Key: []byte(mallory.ID), Value: v}))
	publish(t, b, carWashAlert("op-real-1"))

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, body := call(c, "GET", "http://"+h.APIAddr()+"/metrics", "", "")
		require.Equal(c, http.StatusOK, code, body)
		assert.Contains(c, body, `herald_fanout_quarantined_total{reason="unattributed"} 1`)
		assert.Contains(c, body, `herald_bus_refused_records_total{topic="subscribers"}`)
		assert.Contains(c, body, `herald_fanout_alerts_total 1`)
	}, 60*time.Second, 100*time.Millisecond, "the metrics:\n%s", e.logs)
	require.Eventually(t, func() bool { return e.sink.Count() >= 1 }, 60*time.Second, 50*time.Millisecond, "acme's email:\n%s", e.logs)
	for _, m := range e.sink.Messages() {
		assert.NotContains(t, m.To, "mallory@evil.example", "a partner record Herald did not write receives nothing")
	}
	assert.Equal(t, 1, e.sink.Count(), "acme got the real alert, and only it")
}
