package pgp_test

import (
	"bytes"
	"crypto"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/pgp"
	"github.com/herald-alerts/herald/internal/testkit/pgptest"
)

// expiringKey makes an Ed25519 key created at created whose primary key
// lives primary and whose encryption subkey lives sub (0: no expiry).
func expiringKey(t *testing.T, created time.Time, primary, sub time.Duration) string {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return created }, KeyLifetimeSecs: uint32(primary / time.Second)}
	e, err := openpgp.NewEntity("Partner", "", "soc@partner.example", cfg)
	require.NoError(t, err)
	if sub != primary {
		e.Subkeys = nil
		sc := *cfg
		sc.KeyLifetimeSecs = uint32(sub / time.Second)
		require.NoError(t, e.AddEncryptionSubkey(&sc))
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	require.NoError(t, err)
	require.NoError(t, e.Serialize(w))
	require.NoError(t, w.Close())
	return buf.String()
}

func TestInspectKey(t *testing.T) {
	created := now.Add(-24 * time.Hour)
	alice, _ := pgptest.RecipientKey(t, pgptest.Alice)
	expired, _ := pgptest.RecipientKey(t, pgptest.Expired)
	_, private := pgptest.Key(t, pgptest.Agency)
	tests := []struct {
		name    string
		key     string
		expires time.Time
		wantErr string
	}{
		{name: "no expiry", key: alice},
		{name: "primary expires", key: expiringKey(t, created, 11*24*time.Hour, 11*24*time.Hour), expires: created.Add(11 * 24 * time.Hour)},
		{name: "subkey expires first", key: expiringKey(t, created, 0, 5*24*time.Hour), expires: created.Add(5 * 24 * time.Hour)},
		{name: "primary expires first", key: expiringKey(t, created, 3*24*time.Hour, 0), expires: created.Add(3 * 24 * time.Hour)},
		{name: "already expired", key: expired, expires: time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)},
		{name: "private key", key: private, wantErr: "private key"},
		{name: "garbage", key: "hello", wantErr: "not an ASCII-armoured OpenPGP key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := pgp.InspectKey(tt.key, now)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Len(t, info.Fingerprint, 40)
			assert.True(t, tt.expires.Equal(info.Expires), "expires %s, want %s", info.Expires, tt.expires)
		})
	}
}
