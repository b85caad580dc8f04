//go:build ignore

// gen writes the OpenPGP fixture keys in testdata/. Run it from this
// directory with `go run gen.go` when the fixtures must change; RSA key
// generation is slow, which is why the keys are fixtures.
package main

import (
	"bytes"
	"crypto"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/herald-alerts/herald/crypto/pgp"
)

var created = time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)

func main() {
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	gen := func(name, email, algo string, pass []byte) {
		priv, pub, err := pgp.GenerateKeyWithPassphrase(name, email, algo, created, pass)
		if err != nil {
			log.Fatal(err)
		}
		base := email[:bytes.IndexByte([]byte(email), '@')]
		write(base+".sec.asc", priv)
		write(base+".pub.asc", pub)
	}
	gen("National Crime Agency Herald", "agency@herald.example", "ed25519", nil)
	gen("Herald RSA signing key", "agency-rsa@herald.example", "rsa3072", nil)
	gen("Herald protected key", "agency-protected@herald.example", "ed25519", []byte("correct horse battery staple"))
	gen("Alice Partner", "alice@partner.example", "ed25519", nil)
	gen("Bob Partner", "bob@partner.example", "rsa3072", nil)

	cfg := func(now time.Time) *packet.Config {
		return &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519, DefaultHash: crypto.SHA256,
			DefaultCipher: packet.CipherAES256, Time: func() time.Time { return now }}
	}
	save := func(base string, e *openpgp.Entity, resign bool, c *packet.Config) {
		var pub, priv bytes.Buffer
		w, _ := armor.Encode(&pub, "PGP PUBLIC KEY BLOCK", nil)
		must(e.Serialize(w))
		must(w.Close())
		pub.WriteByte('\n')
		write(base+".pub.asc", pub.Bytes())
		w, _ = armor.Encode(&priv, "PGP PRIVATE KEY BLOCK", nil)
		if resign {
			must(e.SerializePrivate(w, c))
		} else {
			must(e.SerializePrivateWithoutSigning(w, c))
		}
		must(w.Close())
		priv.WriteByte('\n')
		write(base+".sec.asc", priv.Bytes())
	}

	// Expired: valid for one day from 2020-01-01.
	c := cfg(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	c.KeyLifetimeSecs = 86400
	e, err := openpgp.NewEntity("Expired Partner", "", "expired@partner.example", c)
	must(err)
	save("expired", e, false, c)

	// Revoked.
	c = cfg(created)
	e, err = openpgp.NewEntity("Revoked Partner", "", "revoked@partner.example", c)
	must(err)
	must(e.RevokeKey(packet.KeyCompromised, "fixture", c))
	save("revoked", e, false, c)

	// Sign-only: no encryption subkey.
	e, err = openpgp.NewEntity("Sign Only", "", "signonly@partner.example", c)
	must(err)
	e.Subkeys = nil
	save("signonly", e, false, c)

	// Certify-only with an encryption subkey: cannot sign.
	e, err = openpgp.NewEntity("Cannot Sign", "", "nosign@partner.example", c)
	must(err)
	for _, id := range e.Identities {
		id.SelfSignature.FlagSign = false
	}
	save("nosign", e, true, c)

	// Version 6 with X25519 (algorithm 25): GnuPG 2.2 cannot use it.
	c6 := &packet.Config{V6Keys: true, Algorithm: packet.PubKeyAlgoEd25519, DefaultHash: crypto.SHA256,
		Time: func() time.Time { return created }}
	e, err = openpgp.NewEntity("Modern Partner", "", "v6@partner.example", c6)
	must(err)
	save("v6", e, false, c6)
	fmt.Println("fixtures written to testdata/")
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
