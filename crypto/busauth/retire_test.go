package busauth_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/busauth"
)

// retiredRing returns a keyring of secret(2), signing, and secret(1),
// retired at cutoffs, read from the file Retire wrote.
func retiredRing(t *testing.T, cutoffs busauth.Cutoffs) (*busauth.Keyring, []byte) {
	t.Helper()
	data, done, err := busauth.Retire(busauth.Format(secret(2), secret(1)), cutoffs)
	require.NoError(t, err)
	require.Len(t, done, 1)
	k, err := busauth.Parse(data)
	require.NoError(t, err)
	return k, data
}

func TestCutoffsRoundTrip(t *testing.T) {
	for _, c := range []busauth.Cutoffs{
		{},
		{"alerts": {12, 0, 7}},
		{"alerts": {12, 0, 7}, "receipts": {3}, "retry-0": {0, 0}},
	} {
		s := c.String()
		got, err := busauth.ParseCutoffs(s)
		require.NoError(t, err, s)
		require.Equal(t, c, got, s)
	}
	require.Equal(t, "alerts=12,0,7;receipts=3", busauth.Cutoffs{"receipts": {3}, "alerts": {12, 0, 7}}.String(), "topics in order")
	for _, bad := range []string{"alerts", "=1", "alerts=1;alerts=2", "alerts=-1", "alerts=x", "alerts=1,,2"} {
		_, err := busauth.ParseCutoffs(bad)
		require.Error(t, err, bad)
	}
}

// TestRetire: the file Retire writes keeps its comments and first key,
// marks the second retired with its cutoffs, reads back with them, and a
// second Retire changes nothing (the cutoffs never move forward).
func TestRetire(t *testing.T) {
	cut := busauth.Cutoffs{"alerts": {12, 0, 7}, "receipts": {3, 4, 0}}
	k, data := retiredRing(t, cut)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Equal(t, strings.Split(strings.TrimSpace(string(busauth.Format(secret(2), secret(1)))), "\n")[:len(lines)-1], lines[:len(lines)-1], "comments and the first key kept")
	require.Regexp(t, `^hbk1\.[A-Za-z0-9_-]{43} retired alerts=12,0,7;receipts=3,4,0$`, lines[len(lines)-1])

	ids := k.IDs()
	require.Len(t, ids, 2)
	_, retired := k.Retired(ids[0])
	require.False(t, retired, "the first key signs")
	got, retired := k.Retired(ids[1])
	require.True(t, retired)
	require.Equal(t, cut, got)

	again, done, err := busauth.Retire(data, busauth.Cutoffs{"alerts": {99, 99, 99}})
	require.NoError(t, err)
	require.Equal(t, string(data), string(again), "already retired: its cutoffs kept")
	require.Equal(t, []busauth.Retirement{{ID: ids[1], Already: true, Cutoffs: cut}}, done)

	_, _, err = busauth.Retire(busauth.Format(secret(1)), cut)
	require.ErrorIs(t, err, busauth.ErrOneKey)
}

// TestRetiredKeyVerifiesBelowItsCutoff: a retired key verifies what lies
// below its cutoff on the record's topic and partition, and refuses the
// rest, and whatever is asked without a place, with ErrRetiredKey.
func TestRetiredKeyVerifiesBelowItsCutoff(t *testing.T) {
	k, _ := retiredRing(t, busauth.Cutoffs{"alerts": {12, 0, 7}})
	old, err := busauth.New(secret(1))
	require.NoError(t, err)
	h := old.Sign("alerts", []byte("op-7"), []byte("v"))
	oldID := old.IDs()[0]

	at := func(p int, o int64) busauth.Place { return busauth.Place{Partition: p, Offset: o} }
	for name, tc := range map[string]struct {
		topic string
		at    busauth.Place
		ok    bool
	}{
		"below":              {"alerts", at(0, 11), true},
		"first offset":       {"alerts", at(2, 0), true},
		"at the cutoff":      {"alerts", at(0, 12), false},
		"above":              {"alerts", at(2, 8), false},
		"empty partition":    {"alerts", at(1, 0), false},
		"unlisted partition": {"alerts", at(3, 0), false},
		"unlisted topic":     {"receipts", at(0, 0), false},
	} {
		t.Run(name, func(t *testing.T) {
			h := old.Sign(tc.topic, []byte("op-7"), []byte("v"))
			id, err := k.SignedAt(tc.topic, tc.at, []byte("op-7"), []byte("v"), h)
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, oldID, id)
				return
			}
			require.ErrorIs(t, err, busauth.ErrRetiredKey)
			require.Contains(t, err.Error(), oldID)
			require.Empty(t, id)
		})
	}
	_, err = k.SignedAt("alerts", at(0, 1), []byte("op-7"), []byte("w"), h)
	require.ErrorIs(t, err, busauth.ErrMismatch, "a retired key's MAC must match first")
	require.ErrorIs(t, k.Verify("alerts", []byte("op-7"), []byte("v"), h), busauth.ErrRetiredKey, "no place: refused")

	// The signing key verifies anywhere, with or without a place.
	fresh := k.Sign("alerts", []byte("op-7"), []byte("v"))
	require.NoError(t, k.Verify("alerts", []byte("op-7"), []byte("v"), fresh))
	_, err = k.SignedAt("alerts", at(0, 1000), []byte("op-7"), []byte("v"), fresh)
	require.NoError(t, err)
	require.NotContains(t, fresh, oldID, "a retired key never signs")

	// Headers: the same bound.
	hs := hs{{"reason", "unattributed"}}
	hh := old.SignHeaders("alerts", h, hs.seq())
	require.NoError(t, k.VerifyHeadersAt("alerts", at(0, 11), h, hs.seq(), hh))
	require.ErrorIs(t, k.VerifyHeadersAt("alerts", at(0, 12), h, hs.seq(), hh), busauth.ErrRetiredKey)
	require.ErrorIs(t, k.VerifyHeaders("alerts", h, hs.seq(), hh), busauth.ErrRetiredKey, "no place: refused")
}

func TestRetiredFirstKeyRefused(t *testing.T) {
	first := "hbk1." + strings.Repeat("A", 43) + " retired alerts=1\n"
	second := strings.TrimSpace(string(busauth.Format(secret(2)))[strings.Index(string(busauth.Format(secret(2))), "hbk1."):])
	_, err := busauth.Parse([]byte("# comment\n" + first + second + "\n"))
	require.ErrorContains(t, err, "line 2: the first key signs and may not be retired")
	for name, bad := range map[string]string{
		"other word":   second + " expired alerts=1\n",
		"bad cutoffs":  second + " retired alerts\n",
		"extra fields": second + " retired alerts=1 more\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := busauth.Parse([]byte(string(busauth.Format(secret(3))) + bad))
			require.Error(t, err)
		})
	}
}

func TestDeriveExcludesRetired(t *testing.T) {
	k, _ := retiredRing(t, busauth.Cutoffs{"alerts": {1}})
	signing, err := busauth.New(secret(2))
	require.NoError(t, err)
	require.Equal(t, signing.Derive("ack"), k.Derive("ack"), "a retired key derives nothing")
}
