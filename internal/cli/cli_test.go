package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/crypto/whsig"
	"github.com/herald-alerts/herald/internal/bus"
	"github.com/herald-alerts/herald/internal/cli"
	"github.com/herald-alerts/herald/internal/config"
	"github.com/herald-alerts/herald/internal/testkit/kafkatest"
	"github.com/stretchr/testify/require"
)

// run executes the command line in process and returns the exit status,
// stdout and stderr.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Execute(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestKeysGenerateAndExport(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "agency.key")
	code, out, errOut := run(t, "", "keys", "generate", "--name", "Agency alerts", "--email", "alerts@agency.example", "--out", key)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "fingerprint: ")
	st, err := os.Stat(key)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the private key is readable by its owner only")

	// Never overwrites a key.
	code, _, errOut = run(t, "", "keys", "generate", "--name", "x", "--email", "x@y.example", "--out", key)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "refusing to overwrite")

	// export prints the public key of signing.key_file; it verifies the
	// key's own signatures.
	t.Setenv("HERALD_SIGNING_KEY_FILE", key)
	code, pub, errOut := run(t, "", "keys", "export")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, pub, "BEGIN PGP PUBLIC KEY BLOCK")
	require.NotContains(t, pub, "PRIVATE")
	filePub, err := os.ReadFile(key + ".pub")
	require.NoError(t, err)
	priv, err := os.ReadFile(key)
	require.NoError(t, err)
	s, err := pgp.LoadSigner(priv, nil, time.Now())
	require.NoError(t, err)
	sig, err := s.SignDetached([]byte("hello"))
	require.NoError(t, err)
	for _, p := range []string{pub, string(filePub)} {
		fp, err := pgp.VerifyDetached([]byte(p), []byte("hello"), sig)
		require.NoError(t, err)
		require.Equal(t, s.Fingerprint(), fp)
	}

	// A missing key is a clear error.
	t.Setenv("HERALD_SIGNING_KEY_FILE", filepath.Join(dir, "nope.key"))
	code, _, errOut = run(t, "", "keys", "export")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "signing.key_file")

	// No key configured at all: the same clear error, not a crash.
	t.Setenv("HERALD_SIGNING_KEY_FILE", "")
	code, _, errOut = run(t, "", "keys", "export")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "signing.key_file is not set")
}

// A command that only groups others is a usage error (exit 2) without
// one of them or with an unknown one, with its usage on stderr.
func TestGroupCommandsNeedASubcommand(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"keys"}, "herald keys needs a command: export, generate, resign"},
		{[]string{"keys", "frob"}, `unknown command "frob" for "herald keys"`},
		{[]string{"subscribers", "lsit"}, `unknown command "lsit" for "herald subscribers"; did you mean list?`},
		{[]string{"dead", "frob"}, `unknown command "frob" for "herald dead"`},
		{[]string{"frob"}, `unknown command "frob" for "herald"`},
		{nil, "herald needs a command: "},
		// cobra's own group, added as the command runs.
		{[]string{"completion"}, "herald completion needs a command: bash, fish, powershell, zsh"},
		{[]string{"completion", "tcsh"}, `unknown command "tcsh" for "herald completion"`},
		// Help about what does not exist.
		{[]string{"help", "frob"}, `unknown help topic "frob"`},
		{[]string{"help", "keys", "frob"}, `unknown help topic "keys frob"`},
	} {
		code, out, errOut := run(t, "", tc.args...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Empty(t, out, "%v", tc.args)
		require.Contains(t, errOut, tc.err, "%v", tc.args)
		require.Contains(t, errOut, "Usage:", "%v", tc.args)
	}
	code, out, _ := run(t, "", "keys", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Available Commands:")
	for _, args := range [][]string{{"help", "keys"}, {"help", "subscribers", "list"}, {"help"}} {
		code, out, errOut := run(t, "", args...)
		require.Equal(t, 0, code, "%v: %s", args, errOut)
		require.Contains(t, out, "Usage:", "%v", args)
	}
	_, out, _ = run(t, "", "help", "subscribers", "list")
	require.Contains(t, out, "herald subscribers list")
}

func TestTokenGenerate(t *testing.T) {
	code, out, _ := run(t, "", "token", "generate", "--role", "analyst", "--name", "alice")
	require.Equal(t, 0, code)
	lines := strings.Split(out, "\n")
	tok := strings.TrimSpace(lines[1])
	require.True(t, strings.HasPrefix(tok, "hrld_"))
	require.Contains(t, out, "{name: alice, role: analyst, sha256: "+config.HashToken(tok)+"}")
	code, _, _ = run(t, "", "token", "generate", "--role", "root", "--name", "x")
	require.Equal(t, 2, code)

	// The contract's form, without --name: a name is made, distinct for
	// two tokens of one role, and after the partner's id for a partner
	// token.
	names := map[string]bool{}
	for range 2 {
		code, out, errOut := run(t, "", "token", "generate", "--role", "admin")
		require.Equal(t, 0, code, errOut)
		m := regexp.MustCompile(`\{name: (admin-[0-9a-f]{6}), role: admin, sha256: [0-9a-f]{64}\}`).FindStringSubmatch(out)
		require.NotNil(t, m, out)
		names[m[1]] = true
	}
	require.Len(t, names, 2)
	code, out, errOut := run(t, "", "token", "generate", "--role", "partner", "--subscriber", "northbank")
	require.Equal(t, 0, code, errOut)
	require.Regexp(t, `\{name: northbank-[0-9a-f]{6}, role: partner, subscriber: northbank, sha256: `, out)
}

func TestVerifyWebhook(t *testing.T) {
	secret, err := whsig.NewSecret()
	require.NoError(t, err)
	body := `{"type":"alert.published","alert":{"id":"a1"}}`
	now := time.Now()
	sig, err := whsig.Sign("msg_abc", now, []byte(body), []string{secret})
	require.NoError(t, err)
	capture := func(body string) string {
		return fmt.Sprintf("POST /hooks HTTP/1.1\r\nHost: partner.example\r\nContent-Type: application/json\r\nwebhook-id: msg_abc\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\nContent-Length: %d\r\n\r\n%s",
			now.Unix(), sig, len(body), body)
	}
	code, out, errOut := run(t, capture(body), "verify", "webhook", "--secret", secret, "-")
	require.Equal(t, 0, code, out+errOut)

	code, _, _ = run(t, capture(strings.Replace(body, "a1", "a2", 1)), "verify", "webhook", "--secret", secret, "-")
	require.Equal(t, 1, code, "a changed body fails")
	other, _ := whsig.NewSecret()
	code, _, _ = run(t, capture(body), "verify", "webhook", "--secret", other, "-")
	require.Equal(t, 1, code, "a wrong secret fails")
	code, _, _ = run(t, capture(body), "verify", "webhook", "-")
	require.Equal(t, 2, code, "--secret is required")

	// With the agency key, the herald-pgp-signature header is checked too.
	dir := t.TempDir()
	priv, pub, err := pgp.GenerateKey("Agency", "a@agency.example", "", now)
	require.NoError(t, err)
	s, err := pgp.LoadSigner(priv, nil, now)
	require.NoError(t, err)
	pgpSig, err := s.SignDetached([]byte(body))
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "agency.asc")
	require.NoError(t, os.WriteFile(keyFile, pub, 0o600))
	withPGP := strings.Replace(capture(body), "Content-Length", "herald-pgp-signature: "+base64.StdEncoding.EncodeToString(pgpSig)+"\r\nContent-Length", 1)
	code, out, errOut = run(t, withPGP, "verify", "webhook", "--secret", secret, "--key", keyFile, "-")
	require.Equal(t, 0, code, out+errOut)
	otherPriv, _, err := pgp.GenerateKey("Impostor", "i@evil.example", "", now)
	require.NoError(t, err)
	impostor, err := pgp.LoadSigner(otherPriv, nil, now)
	require.NoError(t, err)
	badSig, err := impostor.SignDetached([]byte(body))
	require.NoError(t, err)
	forged := strings.Replace(capture(body), "Content-Length", "herald-pgp-signature: "+base64.StdEncoding.EncodeToString(badSig)+"\r\nContent-Length", 1)
	code, _, _ = run(t, forged, "verify", "webhook", "--secret", secret, "--key", keyFile, "-")
	require.Equal(t, 1, code, "a PGP signature by another key fails")
}

func TestVersionAndUsage(t *testing.T) {
	code, out, _ := run(t, "", "version")
	require.Equal(t, 0, code)
	require.Contains(t, out, "herald ")
	code, _, _ = run(t, "", "status")
	require.Equal(t, 2, code, "missing argument is a usage error")
	code, _, errOut := run(t, "", "serve", "--roles", "api,teleport")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "teleport")
}

// onBroker starts a Kafka-protocol broker with Herald's topics for the
// test and points the command line at it (HERALD_KAFKA_BROKERS, its
// publishing key, a cache folder of the test's own for its view), and
// returns a client of it.
func onBroker(t *testing.T) *bus.Bus {
	t.Helper()
	cluster := onCluster(t)
	return cluster.Open(t, cluster.Config())
}

// onCluster is onBroker returning the broker, for clients of other keys.
func onCluster(t *testing.T) *kafkatest.Cluster {
	t.Helper()
	cluster := kafkatest.Start(t)
	t.Setenv("HERALD_KAFKA_BROKERS", strings.Join(cluster.Addrs(), ","))
	t.Setenv("HERALD_PUBLISHING_KEY_FILE", kafkatest.KeyFile(t))
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	return cluster
}

// TestTwoPartnerTokensWithoutName: a partner's second token made without
// --name (a rotation, a second person) does not share the first's name,
// which the configuration refuses: both entries can be pasted in.
func TestTwoPartnerTokensWithoutName(t *testing.T) {
	entry := regexp.MustCompile(`\{name: [^}]*\}`)
	var lines []string
	for range 2 {
		code, out, errOut := run(t, "", "token", "generate", "--role", "partner", "--subscriber", "northbank")
		require.Equal(t, 0, code, errOut)
		lines = append(lines, "  - "+entry.FindString(out))
	}
	f := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(f, []byte("api:\n  tokens:\n"+strings.Join(lines, "\n")+"\n"), 0o600))
	code, _, errOut := run(t, "", "--config", f, "validate", "../../examples/alert-green.yaml")
	require.Equal(t, 0, code, "both generated entries must be usable together:\n%s\n%s", strings.Join(lines, "\n"), errOut)
}
