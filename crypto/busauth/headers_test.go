package busauth_test

import (
	"iter"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// hs is a record's headers, in order, as name and value pairs.
type hs [][2]string

func (h hs) seq() iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for _, p := range h {
			if !yield(p[0], []byte(p[1])) {
				return
			}
		}
	}
}

// TestSignVerifyHeaders: the authenticator of a record's other headers
// covers their order, names and values, which of them there are, the
// topic, and the record (its herald-auth); it skips herald-auth and
// herald-auth-headers themselves.
func TestSignVerifyHeaders(t *testing.T) {
	k, err := busauth.New(secret(1))
	require.NoError(t, err)
	auth := k.Sign("dead", []byte("acme"), []byte(`{"id":"d1"}`))
	other := k.Sign("dead", []byte("acme"), []byte(`{"id":"d2"}`))
	headers := hs{{"reason", "exhausted"}, {"error", "503"}}
	h := k.SignHeaders("dead", auth, headers.seq())
	require.Regexp(t, `^v1=`+k.IDs()[0]+`:[A-Za-z0-9_-]{43}$`, h)
	require.NoError(t, k.VerifyHeaders("dead", auth, headers.seq(), h))
	require.NoError(t, k.VerifyHeaders("dead", auth,
		hs{{busauth.Header, auth}, {"reason", "exhausted"}, {busauth.HeadersHeader, h}, {"error", "503"}}.seq(), h),
		"herald-auth and herald-auth-headers are not covered")

	for name, tc := range map[string]struct {
		purpose, auth string
		headers       hs
		header        string
		want          error
	}{
		"order":            {"dead", auth, hs{{"error", "503"}, {"reason", "exhausted"}}, h, busauth.ErrHeadersMismatch},
		"name":             {"dead", auth, hs{{"reasons", "exhausted"}, {"error", "503"}}, h, busauth.ErrHeadersMismatch},
		"value":            {"dead", auth, hs{{"reason", "gone"}, {"error", "503"}}, h, busauth.ErrHeadersMismatch},
		"name into value":  {"dead", auth, hs{{"reaso", "nexhausted"}, {"error", "503"}}, h, busauth.ErrHeadersMismatch},
		"added":            {"dead", auth, hs{{"reason", "exhausted"}, {"error", "503"}, {"source", "x/0/1"}}, h, busauth.ErrHeadersMismatch},
		"added in front":   {"dead", auth, hs{{"reason", "forged"}, {"reason", "exhausted"}, {"error", "503"}}, h, busauth.ErrHeadersMismatch},
		"removed":          {"dead", auth, hs{{"reason", "exhausted"}}, h, busauth.ErrHeadersMismatch},
		"another topic":    {"quarantine", auth, headers, h, busauth.ErrHeadersMismatch},
		"another record":   {"dead", other, headers, h, busauth.ErrHeadersMismatch},
		"missing":          {"dead", auth, headers, "", busauth.ErrHeadersMissing},
		"garbage":          {"dead", auth, headers, "hello", busauth.ErrHeadersMismatch},
		"bad base64":       {"dead", auth, headers, "v1=" + k.IDs()[0] + ":!!!", busauth.ErrHeadersMismatch},
		"unknown key":      {"dead", auth, headers, "v1=000000000000:AAAA", busauth.ErrHeadersUnknownKey},
		"record's own mac": {"dead", auth, headers, auth, busauth.ErrHeadersMismatch},
	} {
		t.Run(name, func(t *testing.T) {
			require.ErrorIs(t, k.VerifyHeaders(tc.purpose, tc.auth, tc.headers.seq(), tc.header), tc.want)
		})
	}
}

// TestHeadersRotation: every key of the keyring verifies the headers'
// authenticator, as for the record's; a keyring without its key does not.
func TestHeadersRotation(t *testing.T) {
	old, err := busauth.New(secret(1))
	require.NoError(t, err)
	both, err := busauth.New(secret(2), secret(1))
	require.NoError(t, err)
	other, err := busauth.New(secret(3))
	require.NoError(t, err)
	headers := hs{{"lease", "1"}}
	auth := old.Sign("retry-1", []byte("acme"), []byte("v"))
	h := old.SignHeaders("retry-1", auth, headers.seq())
	require.NoError(t, both.VerifyHeaders("retry-1", auth, headers.seq(), h))
	require.ErrorIs(t, other.VerifyHeaders("retry-1", auth, headers.seq(), h), busauth.ErrHeadersUnknownKey)
}

func TestCovers(t *testing.T) {
	require.False(t, busauth.Covers(busauth.Header))
	require.False(t, busauth.Covers(busauth.HeadersHeader))
	require.True(t, busauth.Covers("reason"))
	require.True(t, busauth.Covers("lease"))
}
