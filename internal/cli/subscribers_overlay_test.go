package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/app"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
	"github.com/herald-alerts/herald/subscribers"
)

// TestSubscribersCommandsAndPartnersOwnKeys: `subscribers get` prints the
// record as written and names the keys and secrets the partner manages
// itself; `subscribers put` of the record as written leaves them in force,
// a record that changes the key replaces the partner's; `subscribers
// delete` clears them, so a record made again under the id has none.
func TestSubscribersCommandsAndPartnersOwnKeys(t *testing.T) {
	b := onBroker(t)
	const (
		addr    = "soc@acme.example"
		hook    = "https://hooks.acme.example/herald"
		secret1 = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
		secret2 = "whsec_ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7"
	)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	bob, _ := pgptest.RecipientKey(t, pgptest.Bob)
	info, err := pgp.InspectKey(alice, time.Now())
	require.NoError(t, err)
	write := func(key string) string {
		data, err := json.Marshal(map[string]any{"id": "acme", "name": "Acme", "kind": "business", "clearance": "AMBER",
			"email":    []map[string]any{{"address": addr, "pgp_key": key}},
			"webhooks": []map[string]any{{"url": hook, "secrets": []string{secret1}}}})
		require.NoError(t, err)
		file := filepath.Join(t.TempDir(), "acme.json")
		require.NoError(t, os.WriteFile(file, data, 0o600))
		return file
	}
	effective := func() *subscribers.Subscriber {
		t.Helper()
		code, out, errOut := run(t, "", "subscribers", "list", "-o", "json")
		require.Equal(t, 0, code, errOut)
		var subs []*subscribers.Subscriber
		require.NoError(t, json.Unmarshal([]byte(out), &subs))
		require.Len(t, subs, 1)
		return subs[0]
	}
	asWritten := write("")
	code, _, errOut := run(t, "", "subscribers", "put", asWritten)
	require.Equal(t, 0, code, errOut)
	store := app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}
	cur := effective()
	require.NotEmpty(t, cur.Incarnation, "a new record starts an incarnation")
	require.NoError(t, store.SetKey(context.Background(), "partner:acme-soc", cur, addr, cur.Email[0].PGPKey, alice, time.Now()))
	require.NoError(t, store.SetSecrets(context.Background(), "partner:acme-soc", cur, hook, cur.Webhooks[0].Secrets, []string{secret1, secret2}, time.Now()))

	code, out, errOut := run(t, "", "subscribers", "get", "acme")
	require.Equal(t, 0, code, errOut)
	var rec subscribers.Subscriber
	require.NoError(t, json.Unmarshal([]byte(out), &rec))
	assert.Empty(t, rec.Email[0].PGPKey, "the record as written")
	assert.Contains(t, errOut, "herald: "+addr+" uses the partner's own key "+info.Fingerprint+", not the record's (by partner:acme-soc at ")
	assert.Contains(t, errOut, "herald: webhook "+hook+" uses the partner's own secrets "+subscribers.RedactSecret(secret1)+", "+
		subscribers.RedactSecret(secret2)+", not the record's")
	assert.NotContains(t, errOut, "whsec_")
	assert.NotContains(t, errOut, "BEGIN PGP")

	// The record as written, put again: the partner's key and secrets
	// stand.
	code, _, errOut = run(t, "", "subscribers", "put", asWritten)
	require.Equal(t, 0, code, errOut)
	got := effective()
	assert.Equal(t, strings.TrimSpace(alice), strings.TrimSpace(got.Email[0].PGPKey))
	assert.Equal(t, []string{secret1, secret2}, got.Webhooks[0].Secrets)

	// Another key in the record replaces the partner's; the secrets it
	// left as written stand.
	code, _, errOut = run(t, "", "subscribers", "put", write(bob))
	require.Equal(t, 0, code, errOut)
	got = effective()
	assert.Equal(t, strings.TrimSpace(bob), strings.TrimSpace(got.Email[0].PGPKey))
	assert.Equal(t, []string{secret1, secret2}, got.Webhooks[0].Secrets)
	code, _, errOut = run(t, "", "subscribers", "get", "acme")
	require.Equal(t, 0, code, errOut)
	assert.NotContains(t, errOut, "own key")

	// Deleted and made again: nothing of the partner's survives.
	code, _, errOut = run(t, "", "subscribers", "delete", "acme")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = run(t, "", "subscribers", "put", asWritten)
	require.Equal(t, 0, code, errOut)
	got = effective()
	assert.Empty(t, got.Email[0].PGPKey)
	assert.Equal(t, []string{secret1}, got.Webhooks[0].Secrets)
}
