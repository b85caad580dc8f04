package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/testkit/pgptest"
)

// TestSubscribersListExpiring: `subscribers list --expiring 30d` lists the
// addresses whose key expires within 30 days (and those expired), soonest
// first, with subscriber, address, fingerprint and expiry.
func TestSubscribersListExpiring(t *testing.T) {
	onBroker(t)
	expired, _ := pgptest.RecipientKey(t, pgptest.Expired)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	records := []map[string]any{
		{"id": "acme", "name": "Acme", "kind": "business", "clearance": "AMBER", "email": []map[string]string{
			{"address": "soon@acme.example", "pgp_key": pgptest.ExpiringKey(t, "soon@acme.example", 10*24*time.Hour)},
			{"address": "never@acme.example", "pgp_key": alice},
			{"address": "later@acme.example", "pgp_key": pgptest.ExpiringKey(t, "later@acme.example", 60*24*time.Hour)},
			{"address": "nokey@acme.example"},
		}},
		{"id": "globex", "name": "Globex", "kind": "ngo", "clearance": "GREEN", "email": []map[string]string{
			{"address": "old@globex.example", "pgp_key": expired},
		}},
	}
	data, err := json.Marshal(records)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "partners.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	code, _, errOut := run(t, "", "subscribers", "import", file)
	require.Equal(t, 0, code, errOut)

	code, out, errOut := run(t, "", "subscribers", "list", "--expiring", "30d")
	require.Equal(t, 0, code, errOut)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.GreaterOrEqual(t, len(lines), 3, out)
	assert.Equal(t, []string{"SUBSCRIBER", "STATUS", "ADDRESS", "FINGERPRINT", "EXPIRES", "IN"}, strings.Fields(lines[0]))
	assert.Equal(t, []string{"globex", "active", "old@globex.example"}, strings.Fields(lines[1])[:3])
	assert.Equal(t, "expired", strings.Fields(lines[1])[5])
	assert.Equal(t, []string{"acme", "active", "soon@acme.example"}, strings.Fields(lines[2])[:3])
	assert.Regexp(t, `^[0-9A-F]{40}$`, strings.Fields(lines[2])[3])
	assert.Contains(t, out, "2 keys expire within 30d")
	for _, absent := range []string{"never@", "later@", "nokey@"} {
		assert.NotContains(t, out, absent)
	}

	code, out, errOut = run(t, "", "subscribers", "list", "--expiring", "90d", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var keys []struct {
		Subscriber, Address, Fingerprint string
		ExpiresAt                        time.Time `json:"expires_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &keys))
	require.Len(t, keys, 3)
	assert.Equal(t, "later@acme.example", keys[2].Address)

	for _, bad := range []string{"soon", "-3d", "0"} {
		code, _, errOut = run(t, "", "subscribers", "list", "--expiring", bad)
		assert.Equal(t, 2, code, bad)
		assert.Contains(t, errOut, "--expiring", bad)
	}
}
