package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
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
