package cli_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// TestAlertsAndAuditList: what the CLI publishes shows in `alerts list`
// (waiting for a second analyst, then published) and in `audit list`, read
// from a view kept in the user's cache folder between commands.
func TestAlertsAndAuditList(t *testing.T) {
	onBroker(t)
	dir := t.TempDir()
	green := filepath.Join(dir, "green.yaml")
	amber := filepath.Join(dir, "amber.yaml")
	require.NoError(t, os.WriteFile(green, []byte(`{id: g-1, title: "Green warning", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))
	require.NoError(t, os.WriteFile(amber, []byte(`{id: a-1, title: "Amber warning", severity: severe, marking: OFFICIAL, tlp: AMBER,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))

	code, out, errOut := run(t, "", "publish", green)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "g-1\n", out)
	code, out, errOut = run(t, "", "publish", amber)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "a-1\tawaiting approval")
	// The same OS user cannot approve what it published.
	code, _, errOut = run(t, "", "approve", "a-1")
	require.Equal(t, 1, code, errOut)
	require.Contains(t, errOut, "cannot approve")
	// A different alert under a used id: exit 2 naming id.
	other := filepath.Join(dir, "other.yaml")
	require.NoError(t, os.WriteFile(other, []byte(`{id: g-1, title: "Another text", severity: severe, marking: OFFICIAL, tlp: GREEN,
  handling: {code: P}, audience: {sectors: [hospitality]}}`), 0o600))
	code, _, errOut = run(t, "", "publish", other)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, `id: "g-1" already names another alert`)
	// The identical alert again: the same id, nothing published twice.
	code, out, errOut = run(t, "", "publish", green)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "g-1\n", out)
	require.Contains(t, errOut, "already held")

	code, out, errOut = run(t, "", "alerts", "list", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var list struct {
		Alerts []struct{ ID, State, IssuedBy string } `json:"alerts"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &list))
	states := map[string]string{}
	for _, a := range list.Alerts {
		states[a.ID] = a.State
	}
	assert.Equal(t, map[string]string{"g-1": "published", "a-1": "pending"}, states)

	code, out, errOut = run(t, "", "alerts", "list", "--state", "pending")
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "a-1")
	assert.NotContains(t, out, "g-1")
	code, _, _ = run(t, "", "alerts", "list", "--state", "lost")
	assert.Equal(t, 2, code)

	code, out, errOut = run(t, "", "audit", "list", "--since", "1h")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{"alert.publish", "alert:g-1", "alert.submit", "alert:a-1", "alert.approve", "refused"} {
		assert.Contains(t, out, want)
	}
	code, _, _ = run(t, "", "audit", "list", "--since", "whenever")
	assert.Equal(t, 2, code)
}

func TestTokenGenerateForPartners(t *testing.T) {
	code, out, errOut := run(t, "", "token", "generate", "--role", "partner", "--subscriber", "northbank", "--name", "northbank-soc")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "role: partner, subscriber: northbank, sha256: ")
	code, _, errOut = run(t, "", "token", "generate", "--role", "partner", "--name", "x")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--subscriber is required")
	code, _, _ = run(t, "", "token", "generate", "--role", "analyst", "--subscriber", "northbank", "--name", "x")
	require.Equal(t, 2, code)
}

func TestKeysGeneratePublishing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "publishing.key")
	code, out, errOut := run(t, "", "keys", "generate", "--publishing", "--out", p)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "key id ")
	k, err := busauth.Load(p)
	require.NoError(t, err)
	require.Len(t, k.IDs(), 1)
	st, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	code, _, _ = run(t, "", "keys", "generate", "--publishing", "--out", p)
	require.Equal(t, 2, code, "never overwrites a key")
}

// TestDeadReplayIsAudited: an operator's replay of dead letters is in the
// audit trail with who did it and how many went back.
func TestDeadReplayIsAudited(t *testing.T) {
	onBroker(t)
	code, out, errOut := run(t, "", "dead", "replay", "--subscriber", "acme")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "re-queued 0 deliveries\n", out)
	code, out, errOut = run(t, "", "audit", "list", "--action", "dead.replay", "--output", "json")
	require.Equal(t, 0, code, errOut)
	var l struct {
		Entries []struct {
			Actor, Action, Object string
			Details               map[string]any
		} `json:"entries"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &l))
	require.Len(t, l.Entries, 1)
	assert.Equal(t, "subscriber:acme", l.Entries[0].Object)
	assert.True(t, strings.HasPrefix(l.Entries[0].Actor, "cli:"))
	assert.EqualValues(t, 0, l.Entries[0].Details["requeued"])

	// A query the view refuses is invalid input naming the flag.
	code, _, errOut = run(t, "", "audit", "list", "--action", "dead.replya")
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, `--action: "dead.replya" is not an audit action`)
	code, _, errOut = run(t, "", "alerts", "list", "--before", "c:AAAA")
	require.Equal(t, 2, code, errOut)
	assert.Contains(t, errOut, "--before: not a cursor from a previous page")
}
