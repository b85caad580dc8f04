package app

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestRegistryFollowerSkipsUnauthenticRecords: a Kafka client without the
// publishing key can neither add, change nor delete a partner, nor disable
// or enable an endpoint; Sync still passes its records.
func TestRegistryFollowerSkipsUnauthenticRecords(t *testing.T) {
	c := kafkatest.Start(t, kafkatest.RetryTiers(1))
	herald := c.Open(t, c.Config())
	other, err := busauth.New(bytes.Repeat([]byte{7}, busauth.KeySize))
	require.NoError(t, err)
	stranger := c.OpenWith(t, c.Config(), bus.Options{Keyring: other, Log: kafkatest.Logger(t, slog.LevelError)})

	const hook = "https://acme.example/hook"
	acme := &subscribers.Subscriber{ID: "acme", Name: "Acme", Kind: subscribers.KindBusiness, Sectors: []string{"care"},
		Clearance: alerts.TLPGreen, Webhooks: []subscribers.Webhook{{URL: hook, Secrets: []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}}}
	acme.Normalize()
	write := func(b *bus.Bus, key string, v any) {
		t.Helper()
		var value []byte
		if v != nil {
			value, err = json.Marshal(v)
			require.NoError(t, err)
		}
		require.NoError(t, b.Producer(bus.TopicSubscribers).Write(t.Context(), kafka.Message{Key: []byte(key), Value: value}))
	}
	write(herald, "acme", acme)
	forged := *acme
	forged.Status = subscribers.StatusSuspended
	write(stranger, "acme", &forged)
	write(stranger, "mallory", &subscribers.Subscriber{ID: "mallory", Name: "Mallory", Kind: subscribers.KindNGO, Clearance: alerts.TLPRed})
	write(stranger, subscribers.EndpointKey("acme", hook), subscribers.EndpointState{Subscriber: "acme", URL: hook, Disabled: true, By: "herald:deliver"})

	reg := subscribers.NewRegistry()
	f := newRegistryFollower(herald, reg, kafkatest.Logger(t, slog.LevelError))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.NoError(t, f.Sync(t.Context()), "unauthentic records count as read")
	assert.Equal(t, 1, reg.Len())
	got := reg.Get("acme")
	require.NotNil(t, got)
	assert.Equal(t, subscribers.StatusActive, got.Status)
	assert.False(t, got.Webhooks[0].Disabled)

	// Herald's own endpoint state applies; a stranger's tombstones do not.
	write(herald, subscribers.EndpointKey("acme", hook), subscribers.EndpointState{Subscriber: "acme", URL: hook, Disabled: true,
		Reason: "gone", By: "herald:deliver", At: time.Now()})
	write(stranger, subscribers.EndpointKey("acme", hook), nil)
	write(stranger, "acme", nil)
	require.NoError(t, f.Sync(t.Context()))
	got = reg.Get("acme")
	require.NotNil(t, got, "a forged tombstone deletes nothing")
	assert.True(t, got.Webhooks[0].Disabled, "a forged tombstone enables nothing")
	assert.Equal(t, subscribers.StatusActive, reg.Record("acme").Status)
	assert.False(t, reg.Record("acme").Webhooks[0].Disabled)
}
