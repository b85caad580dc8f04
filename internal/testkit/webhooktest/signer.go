package webhooktest

import (
	"bytes"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Signer makes binary OpenPGP detached signatures with a test key (v4,
// EdDSA over Curve25519, which GnuPG 2.2 and Sequoia accept) and counts
// them. It satisfies the webhook notifier's Signer interface.
type Signer struct {
	entity *openpgp.Entity
	count  atomic.Int64
}

var testKey struct {
	once   sync.Once
	entity *openpgp.Entity
	err    error
}

// NewSigner returns a signer with the test binary's key, generated once.
func NewSigner(t testing.TB) *Signer {
	t.Helper()
	testKey.once.Do(func() {
		testKey.entity, testKey.err = openpgp.NewEntity("Herald Test Agency", "webhooktest", "signing@agency.test",
			&packet.Config{Algorithm: packet.PubKeyAlgoEdDSA, Curve: packet.Curve25519})
	})
	if testKey.err != nil {
		t.Fatalf("webhooktest: generate OpenPGP key: %v", testKey.err)
	}
	return &Signer{entity: testKey.entity}
}

// SignDetached returns a binary detached signature of data.
func (s *Signer) SignDetached(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(data), nil); err != nil {
		return nil, err
	}
	s.count.Add(1)
	return buf.Bytes(), nil
}

// Count returns how many signatures were made.
func (s *Signer) Count() int64 { return s.count.Load() }

// PublicArmored returns the ASCII-armoured public key.
func (s *Signer) PublicArmored(t testing.TB) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.entity.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
