// Package pgptest provides OpenPGP fixture keys for tests: the agency
// signing key and partner keys in every state the policy distinguishes
// (usable Curve25519 and RSA-3072, expired, revoked, sign-only, version 6
// X25519). The keys are generated once by gen.go and embedded, because RSA
// key generation is too slow to repeat in every test.
package pgptest

import (
	"bytes"
	"crypto"
	"embed"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/herald-alerts/herald/crypto/pgp"
)

//go:embed testdata/*.asc
var fixtures embed.FS

// Fixture key names for RecipientKey and Key.
const (
	Agency          = "agency"           // Ed25519 agency key, no passphrase
	AgencyRSA       = "agency-rsa"       // RSA-3072 agency key
	AgencyProtected = "agency-protected" // Ed25519 agency key protected by Passphrase
	Alice           = "alice"            // usable Ed25519/Curve25519 partner key
	Bob             = "bob"              // usable RSA-3072 partner key
	Expired         = "expired"          // expired on 2020-01-02
	Revoked         = "revoked"          // revoked
	SignOnly        = "signonly"         // no encryption subkey
	NoSign          = "nosign"           // certify-only primary: cannot sign
	V6              = "v6"               // version 6 key with an X25519 (algorithm 25) subkey
)

// Passphrase protects the AgencyProtected fixture.
const Passphrase = "correct horse battery staple"

// Created is when the fixture keys were made (except Expired).
var Created = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

// Key returns a fixture key's armoured public and private parts.
func Key(t testing.TB, name string) (publicArmored, privateArmored string) {
	t.Helper()
	pub, err := fixtures.ReadFile("testdata/" + name + ".pub.asc")
	if err != nil {
		t.Fatalf("pgptest: no fixture key %q: %v", name, err)
	}
	priv, err := fixtures.ReadFile("testdata/" + name + ".sec.asc")
	if err != nil {
		t.Fatalf("pgptest: no fixture key %q: %v", name, err)
	}
	return string(pub), string(priv)
}

// RecipientKey returns a partner fixture key's armoured public and
// private parts (name is Alice, Bob, Expired, Revoked, SignOnly or V6).
func RecipientKey(t testing.TB, name string) (publicArmored, privateArmored string) {
	t.Helper()
	return Key(t, name)
}

// AgencySigner returns a Signer for the Ed25519 agency fixture key.
func AgencySigner(t testing.TB) *pgp.Signer {
	t.Helper()
	return Signer(t, Agency)
}

// Signer returns a Signer for the named fixture key (Agency, AgencyRSA or
// AgencyProtected).
func Signer(t testing.TB, name string) *pgp.Signer {
	t.Helper()
	_, priv := Key(t, name)
	var pass []byte
	if name == AgencyProtected {
		pass = []byte(Passphrase)
	}
	s, err := pgp.LoadSigner([]byte(priv), pass, time.Now())
	if err != nil {
		t.Fatalf("pgptest: load signer %s: %v", name, err)
	}
	return s
}

// ExpiringKey returns a new armoured public Ed25519/Curve25519 key for
// email, made yesterday, that expires left from now (left > -24h).
func ExpiringKey(t testing.TB, email string, left time.Duration) string {
	t.Helper()
	created := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return created }, KeyLifetimeSecs: uint32((left + 24*time.Hour) / time.Second)}
	e, err := openpgp.NewEntity("Partner", "", email, cfg)
	if err != nil {
		t.Fatalf("make a key expiring in %s: %v", left, err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err == nil {
		err = e.Serialize(w)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		t.Fatalf("armour a key expiring in %s: %v", left, err)
	}
	return buf.String()
}
