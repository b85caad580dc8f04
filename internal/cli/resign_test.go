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

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/fanout"
	"github.com/herald-alerts/herald/internal/record"
)

// TestKeysResignSubscribers is the publishing key's rotation as the
// operator guide tells it: the new key first, the old second; `keys
// resign --subscribers --dry-run` fails while the subscribers topic's
// records in force need the old key; `keys resign --subscribers` vouches
// for them and says the old key may go; with it gone, the partner is
// there, and reading it logs no record skipped.
func TestKeysResignSubscribers(t *testing.T) {
	onBroker(t)
	data, err := json.Marshal(map[string]any{"id": "acme", "name": "Acme", "kind": "business", "clearance": "AMBER",
		"email": []map[string]any{{"address": "soc@acme.example"}}})
	require.NoError(t, err)
	dir := t.TempDir()
	file := filepath.Join(dir, "acme.json")
	require.NoError(t, os.WriteFile(file, data, 0o600))
	code, _, errOut := run(t, "", "subscribers", "put", file)
	require.Equal(t, 0, code, errOut)

	rotating, newOnly, newID := rotatingKeys(t, dir)
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", rotating)

	code, _, _ = run(t, "", "keys", "resign")
	assert.Equal(t, 2, code, "--subscribers is required")

	code, out, errOut := run(t, "", "keys", "resign", "--subscribers", "--dry-run")
	// The partner's record, and the tombstone that cleared any own key
	// of its address when it was created.
	assert.Equal(t, 1, code, "the old key still signs the partner's record")
	assert.Regexp(t, newID+` \(signs\) +0\n[0-9a-f]{12} +2\nunverified +0\n`, out)
	assert.Contains(t, errOut, "2 records in force in the subscribers topic are kept by a key other than "+newID)

	code, out, errOut = run(t, "", "keys", "resign", "--subscribers")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "vouched for 2 records of the subscribers topic with key "+newID)
	assert.Regexp(t, newID+` \(signs\) +2\n[0-9a-f]{12} +0\n`, out)
	assert.Contains(t, out, "no record in force in the subscribers topic needs a key other than "+newID)

	code, _, errOut = run(t, "", "keys", "resign", "--subscribers", "--dry-run")
	assert.Equal(t, 0, code, errOut)
	code, out, errOut = run(t, "", "keys", "resign", "--subscribers")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "vouched for 0 records", "a second run has nothing to do")

	code, out, errOut = run(t, "", "audit", "list", "--action", "keys.resign", "--output", "json")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 2, strings.Count(out, `"action": "keys.resign"`)+strings.Count(out, `"action":"keys.resign"`), out)

	t.Setenv("HERALD_PUBLISHING_KEY_FILE", newOnly)
	code, out, errOut = run(t, "", "subscribers", "get", "acme")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, `"Acme"`)
	assert.NotContains(t, errOut, "ignoring", "no record skipped: the old key's records are vouched for")
}

// TestKeysResignAlertIDs: alert id bindings written under the old key;
// after the rotation, `keys resign --alert-ids --dry-run` exits 1 and
// names the topic, `keys resign --alert-ids` copies them under the new
// key, the dry run then exits 0 and a second run copies nothing. With
// --subscribers too, each table names its topic. Without either flag the
// command is refused.
func TestKeysResignAlertIDs(t *testing.T) {
	b := onBroker(t)
	for _, id := range []string{"op-cli-1", "op-cli-2"} {
		require.NoError(t, b.Producer(bus.TopicAlertIDs).Write(t.Context(),
			fanout.BindingMessage(record.Binding{ID: id, Digest: "sha256:" + id, FannedOut: time.Now(), Offset: -1})))
	}
	rotating, _, newID := rotatingKeys(t, t.TempDir())
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", rotating)

	code, _, errOut := run(t, "", "keys", "resign", "--dry-run")
	assert.Equal(t, 2, code, "--subscribers or --alert-ids is required")
	assert.Contains(t, errOut, "--alert-ids")

	code, out, errOut := run(t, "", "keys", "resign", "--alert-ids", "--dry-run")
	assert.Equal(t, 1, code, "the old key still signs both bindings")
	assert.Regexp(t, `KEY +BINDINGS IN FORCE \(alert-ids\)\n`+newID+` \(signs\) +0\n[0-9a-f]{12} +2\n`, out)
	assert.Contains(t, errOut, "2 bindings in force in the alert-ids topic are signed with a key other than "+newID)

	code, out, errOut = run(t, "", "keys", "resign", "--alert-ids")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "copied 2 bindings of the alert-ids topic with key "+newID)
	assert.Regexp(t, newID+` \(signs\) +2\n[0-9a-f]{12} +0\n`, out)
	assert.Contains(t, out, "no binding in force in the alert-ids topic needs a key other than "+newID)

	code, out, errOut = run(t, "", "keys", "resign", "--alert-ids", "--dry-run")
	assert.Equal(t, 0, code, errOut)
	assert.NotContains(t, out, "copied", "a dry run writes nothing")

	// Both topics: the subscribers topic is empty, and a second run
	// copies nothing.
	code, out, errOut = run(t, "", "keys", "resign", "--subscribers", "--alert-ids")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "vouched for 0 records of the subscribers topic with key "+newID)
	assert.Regexp(t, `KEY +RECORDS IN FORCE \(subscribers\)\n`, out)
	assert.Contains(t, out, "copied 0 bindings of the alert-ids topic with key "+newID)
	assert.Regexp(t, `KEY +BINDINGS IN FORCE \(alert-ids\)\n`, out)

	code, out, errOut = run(t, "", "audit", "list", "--action", "keys.resign", "--output", "json")
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, 2, strings.Count(out, "topic:alert-ids"), out)
}

// rotatingKeys writes under dir the key files of a rotation of the
// publishing key HERALD_PUBLISHING_KEY_FILE names: rotating, a fresh key
// first and the old one second, and newOnly, the fresh key alone. It
// returns their paths and the fresh key's id.
func rotatingKeys(t *testing.T, dir string) (rotating, newOnly, newID string) {
	t.Helper()
	line := func(data []byte) string {
		for l := range strings.Lines(string(data)) {
			if strings.HasPrefix(l, "hbk1.") {
				return strings.TrimSpace(l)
			}
		}
		t.Fatalf("no key line in %q", data)
		return ""
	}
	old, err := os.ReadFile(os.Getenv("HERALD_PUBLISHING_KEY_FILE"))
	require.NoError(t, err)
	fresh, err := busauth.Generate()
	require.NoError(t, err)
	rotating = filepath.Join(dir, "rotating.key")
	require.NoError(t, os.WriteFile(rotating, []byte(line(fresh)+"\n"+line(old)+"\n"), 0o600))
	newOnly = filepath.Join(dir, "new.key")
	require.NoError(t, os.WriteFile(newOnly, fresh, 0o600))
	k, err := busauth.Parse(fresh)
	require.NoError(t, err)
	return rotating, newOnly, k.IDs()[0]
}
