package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/internal/app"
)

// TestSubscribersPutAuditsAgainstTheRecord: the audit trail's list of
// changed fields compares the record put with the record as written, not
// with the effective record: an endpoint Herald disabled after a 410 is
// not a change the operator made.
func TestSubscribersPutAuditsAgainstTheRecord(t *testing.T) {
	b := onBroker(t)
	const hook = "https://hooks.acme.example/herald"
	data, err := json.Marshal(map[string]any{"id": "acme", "name": "Acme", "kind": "business", "clearance": "AMBER",
		"webhooks": []map[string]any{{"url": hook, "secrets": []string{"whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}}}})
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "acme.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	code, _, errOut := run(t, "", "subscribers", "put", file)
	require.Equal(t, 0, code, errOut)
	require.NoError(t, app.SubscriberStore{Bus: b, Audit: app.AuditLog(b, time.Now)}.SetEndpoint(context.Background(),
		"herald:deliver", "acme", hook, true, "410 Gone", time.Now()))

	code, _, errOut = run(t, "", "subscribers", "put", file)
	require.Equal(t, 0, code, errOut)
	code, out, errOut := run(t, "", "audit", "list", "--action", "subscriber.put", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var l struct {
		Entries []struct {
			Details map[string]any `json:"details"`
		} `json:"entries"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	require.Len(t, l.Entries, 2)
	assert.Empty(t, l.Entries[0].Details["changed"], "the same record again changes nothing")
}

// TestSubscribersPutIfMatch: `subscribers get` prints the record's
// version; `subscribers put --if-match` with it refuses, writing nothing,
// once the record changed since (a colleague's suspension stands), and
// replaces it at the current version.
func TestSubscribersPutIfMatch(t *testing.T) {
	onBroker(t)
	dir := t.TempDir()
	write := func(name string, rec map[string]any) string {
		t.Helper()
		data, err := json.Marshal(rec)
		require.NoError(t, err)
		file := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(file, data, 0o600))
		return file
	}
	rec := map[string]any{"id": "acme", "name": "Acme", "kind": "business", "clearance": "AMBER",
		"email": []map[string]any{{"address": "soc@acme.example"}}}
	code, _, errOut := run(t, "", "subscribers", "put", write("acme.json", rec))
	require.Equal(t, 0, code, errOut)
	version := func() string {
		t.Helper()
		code, _, errOut := run(t, "", "subscribers", "get", "acme")
		require.Equal(t, 0, code, errOut)
		m := regexp.MustCompile(`herald: version ("[0-9a-f]{32}")`).FindStringSubmatch(errOut)
		require.NotNil(t, m, errOut)
		return m[1]
	}
	read := version()

	rec["status"] = "suspended" // a colleague, meanwhile
	code, _, errOut = run(t, "", "subscribers", "put", write("suspended.json", rec))
	require.Equal(t, 0, code, errOut)

	delete(rec, "status")
	rec["name"] = "Acme Ltd" // the edit made to the copy read before
	edited := write("edited.json", rec)
	code, _, errOut = run(t, "", "subscribers", "put", "--if-match", read, edited)
	require.Equal(t, 1, code, errOut)
	assert.Contains(t, errOut, "changed since version "+read)
	code, out, errOut := run(t, "", "subscribers", "get", "acme")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `"status": "suspended"`, "the suspension stands")
	assert.NotContains(t, out, "Acme Ltd")

	// Get it again, make the change to that, put it at its version.
	current := version()
	var again map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &again))
	again["name"] = "Acme Ltd"
	code, _, errOut = run(t, "", "subscribers", "put", "--if-match", current, write("again.json", again))
	require.Equal(t, 0, code, errOut)
	code, out, _ = run(t, "", "subscribers", "get", "acme")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "Acme Ltd")
	assert.Contains(t, out, `"status": "suspended"`)
}
