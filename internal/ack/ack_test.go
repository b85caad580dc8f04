package ack_test

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/ack"
	"github.com/herald-alerts/herald/internal/delivery"
)

var now = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

func codec(t testing.TB, seed byte) *ack.Codec {
	t.Helper()
	k, err := busauth.New(bytes.Repeat([]byte{seed}, busauth.KeySize))
	require.NoError(t, err)
	c, err := ack.New(k.Derive(ack.Purpose)...)
	require.NoError(t, err)
	return c
}

// TestLinkSurvivesRotation: a link made before the publishing key was
// rotated opens while the old key stays in the key file (second), and
// stops opening when it is removed; links made after are made under the
// new key.
func TestLinkSurvivesRotation(t *testing.T) {
	oldKey, newKey := bytes.Repeat([]byte{1}, busauth.KeySize), bytes.Repeat([]byte{2}, busauth.KeySize)
	before := codec(t, 1)
	claim := ack.Claim{Alert: "op-7", Subscriber: "acme", Target: "soc@acme.example", Expires: now.Add(48 * time.Hour)}
	tok, err := before.Seal(claim)
	require.NoError(t, err)

	k, err := busauth.New(newKey, oldKey)
	require.NoError(t, err)
	during, err := ack.New(k.Derive(ack.Purpose)...)
	require.NoError(t, err)
	got, err := during.Open(tok, now)
	require.NoError(t, err, "a link sent before the rotation still opens")
	assert.Equal(t, claim, got)

	fresh, err := during.Seal(claim)
	require.NoError(t, err)
	_, err = codec(t, 2).Open(fresh, now)
	require.NoError(t, err, "new links are made under the new key")
	_, err = before.Open(fresh, now)
	assert.ErrorIs(t, err, ack.ErrInvalid, "the old key alone does not open a new link")

	_, err = codec(t, 2).Open(tok, now)
	assert.ErrorIs(t, err, ack.ErrInvalid, "once the old key leaves the file, its links stop opening")
	_, err = ack.New()
	assert.Error(t, err, "a codec needs a key")
}

// TestLink: a link opens to exactly the delivery it was made for, reveals
// none of it, and stops opening when it expires, when altered in any byte,
// or under another key.
func TestLink(t *testing.T) {
	c := codec(t, 1)
	claim := ack.Claim{Alert: "op-7", Subscriber: "acme", Target: "soc@acme.example", Expires: now.Add(48 * time.Hour)}
	tok, err := c.Seal(claim)
	require.NoError(t, err)
	assert.Regexp(t, `^[A-Za-z0-9_-]+$`, tok, "fits a URL path as it is")
	for _, secret := range []string{"op-7", "acme", "soc@"} {
		raw, _ := base64.RawURLEncoding.DecodeString(tok)
		assert.NotContains(t, string(raw), secret)
		assert.NotContains(t, tok, secret)
	}
	again, err := c.Seal(claim)
	require.NoError(t, err)
	assert.NotEqual(t, tok, again, "two links to one delivery cannot be told to be alike")

	got, err := c.Open(tok, now)
	require.NoError(t, err)
	assert.Equal(t, claim, got)

	_, err = c.Open(tok, claim.Expires)
	assert.ErrorIs(t, err, ack.ErrExpired)
	_, err = codec(t, 2).Open(tok, now)
	assert.ErrorIs(t, err, ack.ErrInvalid, "another key")
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	require.NoError(t, err)
	for i := range raw {
		altered := bytes.Clone(raw)
		altered[i] ^= 0x01
		_, err := c.Open(base64.RawURLEncoding.EncodeToString(altered), now)
		require.ErrorIs(t, err, ack.ErrInvalid, "byte %d altered", i)
	}
	for _, bad := range []string{"", "x", tok[:len(tok)-1], tok + "A", strings.Repeat("A", ack.MaxToken+1), "not base64!"} {
		_, err := c.Open(bad, now)
		assert.ErrorIs(t, err, ack.ErrInvalid, "%q", bad)
	}

	// Lengths say little: ids and addresses of different lengths give
	// tokens of one length.
	short, err := c.Seal(ack.Claim{Alert: "a", Subscriber: "b", Target: "c@d.example", Expires: claim.Expires})
	require.NoError(t, err)
	assert.Len(t, short, len(tok))

	_, err = c.Seal(ack.Claim{Alert: "op-7", Subscriber: "acme", Expires: claim.Expires})
	assert.Error(t, err, "a claim names its target")
	_, err = ack.New([]byte("short"))
	assert.Error(t, err)
}

// TestClaimFor: a link expires with its alert, or 400 days after its issue
// when the alert has no expiry.
func TestClaimFor(t *testing.T) {
	issued, expires := now.Add(-time.Hour), now.Add(72*time.Hour)
	a := &alerts.Alert{ID: "op-7", IssuedAt: &issued, ExpiresAt: &expires}
	job := &delivery.Job{Alert: a, Subscriber: "acme", Target: "soc@acme.example"}
	assert.Equal(t, ack.Claim{Alert: "op-7", Subscriber: "acme", Target: "soc@acme.example", Expires: expires}, ack.ClaimFor(job, now))
	a.ExpiresAt = nil
	assert.Equal(t, issued.Add(400*24*time.Hour), ack.ClaimFor(job, now).Expires)
	a.IssuedAt = nil
	assert.Equal(t, now.Add(400*24*time.Hour), ack.ClaimFor(job, now).Expires)
}

// FuzzOpen: only what Seal made with the key opens, and no input makes
// Open panic.
func FuzzOpen(f *testing.F) {
	c := codec(f, 1)
	claim := ack.Claim{Alert: "op-7", Subscriber: "acme", Target: "soc@acme.example", Expires: now.Add(time.Hour)}
	tok, err := c.Seal(claim)
	require.NoError(f, err)
	f.Add(tok)
	f.Add("")
	f.Add(strings.Repeat("A", 200))
	f.Fuzz(func(t *testing.T, s string) {
		if got, err := c.Open(s, now); err == nil {
			// Every token sealed with this key (in this process or a
			// fuzzing worker) says claim.
			require.Equal(t, claim, got)
		}
	})
}
