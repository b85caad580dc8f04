package busauth_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/herald-alerts/herald/crypto/busauth"
	"github.com/stretchr/testify/require"
)

func secret(b byte) []byte { return bytes.Repeat([]byte{b}, busauth.KeySize) }

func TestSignVerify(t *testing.T) {
	k, err := busauth.New(secret(1))
	require.NoError(t, err)
	h := k.Sign("alerts", []byte("op-7"), []byte(`{"id":"op-7"}`))
	require.True(t, strings.HasPrefix(h, "v1="+k.IDs()[0]+":"), h)
	require.NoError(t, k.Verify("alerts", []byte("op-7"), []byte(`{"id":"op-7"}`), h))

	for name, tc := range map[string]struct {
		purpose    string
		key, value string
		header     string
		want       error
	}{
		"other value":    {"alerts", "op-7", `{"id":"op-8"}`, h, busauth.ErrMismatch},
		"other key":      {"alerts", "op-8", `{"id":"op-7"}`, h, busauth.ErrMismatch},
		"other topic":    {"subscribers", "op-7", `{"id":"op-7"}`, h, busauth.ErrMismatch},
		"key into value": {"alerts", "op-", `7{"id":"op-7"}`, h, busauth.ErrMismatch},
		"missing":        {"alerts", "op-7", `{"id":"op-7"}`, "", busauth.ErrMissing},
		"garbage":        {"alerts", "op-7", `{"id":"op-7"}`, "hello", busauth.ErrMismatch},
		"bad base64":     {"alerts", "op-7", `{"id":"op-7"}`, "v1=" + k.IDs()[0] + ":!!!", busauth.ErrMismatch},
		"unknown key":    {"alerts", "op-7", `{"id":"op-7"}`, "v1=000000000000:AAAA", busauth.ErrUnknownKey},
	} {
		t.Run(name, func(t *testing.T) {
			err := k.Verify(tc.purpose, []byte(tc.key), []byte(tc.value), tc.header)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestRotation(t *testing.T) {
	old, err := busauth.New(secret(1))
	require.NoError(t, err)
	both, err := busauth.New(secret(2), secret(1))
	require.NoError(t, err)
	other, err := busauth.New(secret(3))
	require.NoError(t, err)

	fromOld := old.Sign("receipts", []byte("a"), []byte("v"))
	require.NoError(t, both.Verify("receipts", []byte("a"), []byte("v"), fromOld), "the old key still verifies during rotation")
	fromNew := both.Sign("receipts", []byte("a"), []byte("v"))
	require.NotEqual(t, fromOld, fromNew, "the first key signs")
	require.ErrorIs(t, old.Verify("receipts", []byte("a"), []byte("v"), fromNew), busauth.ErrUnknownKey)
	require.Error(t, other.Verify("receipts", []byte("a"), []byte("v"), fromOld))

	// SignedAt names the key that made each: what still needs the old one.
	id, err := both.SignedAt("receipts", busauth.Place{}, []byte("a"), []byte("v"), fromOld)
	require.NoError(t, err)
	require.Equal(t, both.IDs()[1], id)
	id, err = both.SignedAt("receipts", busauth.Place{}, []byte("a"), []byte("v"), fromNew)
	require.NoError(t, err)
	require.Equal(t, both.IDs()[0], id)
	id, err = both.SignedAt("receipts", busauth.Place{}, []byte("a"), []byte("w"), fromNew)
	require.ErrorIs(t, err, busauth.ErrMismatch)
	require.Empty(t, id)
}

func TestParse(t *testing.T) {
	data := busauth.Format(secret(2), secret(1))
	k, err := busauth.Parse(data)
	require.NoError(t, err)
	require.Len(t, k.IDs(), 2)

	for name, bad := range map[string]string{
		"empty":     "# nothing\n",
		"no prefix": "AAAA\n",
		"short":     "hbk1.AAAA\n",
		"twice":     string(busauth.Format(secret(1), secret(1))),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := busauth.Parse([]byte(bad))
			require.Error(t, err)
		})
	}
}

func TestDerive(t *testing.T) {
	k, _ := busauth.New(secret(1))
	k2, _ := busauth.New(secret(2))
	require.Len(t, k.Derive("ack"), 1)
	require.Len(t, k.Derive("ack")[0], busauth.KeySize)
	require.Equal(t, k.Derive("ack"), k.Derive("ack"))
	require.NotEqual(t, k.Derive("ack"), k.Derive("other"))
	require.NotEqual(t, k.Derive("ack"), k2.Derive("ack"))
	// During a rotation: one sub-key per key, the signing key's first.
	both, _ := busauth.New(secret(2), secret(1))
	require.Equal(t, [][]byte{k2.Derive("ack")[0], k.Derive("ack")[0]}, both.Derive("ack"))
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "publishing.key")
	var wg sync.WaitGroup
	ids := make([]string, 8)
	created := make([]bool, 8)
	for i := range ids {
		wg.Go(func() {
			k, c, err := busauth.LoadOrCreate(path)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i], created[i] = k.IDs()[0], c
		})
	}
	wg.Wait()
	n := 0
	for i := range ids {
		require.Equal(t, ids[0], ids[i], "every starter ends with the same key")
		if created[i] {
			n++
		}
	}
	require.Equal(t, 1, n, "exactly one creates it")
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	_, err = busauth.Load(filepath.Join(t.TempDir(), "missing"))
	require.True(t, errors.Is(err, os.ErrNotExist))
}
