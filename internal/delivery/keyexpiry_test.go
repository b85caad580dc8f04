package delivery_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/internal/delivery"
)

// TestKeyExpiryNotice: a key-expiry notice's id is a function of
// (subscriber, address, fingerprint, threshold) alone, so every process
// names it alike; its job survives the bus and says what it was made to
// say; and a job that was altered is not taken for one.
func TestKeyExpiryNotice(t *testing.T) {
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	k := delivery.KeyExpiry{Subscriber: "acme", Address: "soc@acme.example", Fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567",
		Expires: now.Add(10 * 24 * time.Hour), Threshold: 30 * 24 * time.Hour}
	id := k.NoticeID()
	assert.True(t, alerts.ValidID(id), id)
	assert.True(t, delivery.IsKeyExpiryNotice(id))
	later := k
	later.Expires = later.Expires.Add(time.Hour) // the same key seen again: the same notice
	assert.Equal(t, id, later.NoticeID())
	for _, other := range []func(*delivery.KeyExpiry){
		func(o *delivery.KeyExpiry) { o.Subscriber = "globex" },
		func(o *delivery.KeyExpiry) { o.Address = "other@acme.example" },
		func(o *delivery.KeyExpiry) { o.Fingerprint = "F" + o.Fingerprint[1:] },
		func(o *delivery.KeyExpiry) { o.Threshold = 7 * 24 * time.Hour },
	} {
		o := k
		other(&o)
		assert.NotEqual(t, id, o.NoticeID())
	}

	job := k.Job(now)
	require.Equal(t, delivery.ID(id, "acme", "soc@acme.example"), job.ID)
	v, err := job.Encode()
	require.NoError(t, err)
	got, err := delivery.DecodeJob(v, nil)
	require.NoError(t, err)
	require.False(t, got.Expired(now))
	require.True(t, got.Expired(k.Expires), "the notice expires with the key")
	back, err := delivery.KeyExpiryOf(got)
	require.NoError(t, err)
	assert.Equal(t, k.Address, back.Address)
	assert.Equal(t, k.Fingerprint, back.Fingerprint)
	assert.Equal(t, k.Threshold, back.Threshold)
	assert.True(t, k.Expires.Equal(back.Expires))

	got.Target = "mallory@acme.example"
	_, err = delivery.KeyExpiryOf(got)
	assert.ErrorContains(t, err, "not its target")
	got.Target = k.Address
	got.Alert.Indicators[1].Value = "F" + k.Fingerprint[1:]
	_, err = delivery.KeyExpiryOf(got)
	assert.ErrorContains(t, err, "does not match")
	signed := *got
	signed.Mode = delivery.ModeSigned
	_, err = delivery.KeyExpiryOf(&signed)
	assert.Error(t, err)
}
