// Package ack makes and opens the capability that an email's
// acknowledgement link carries (PRODUCT.md §12): whoever holds the link may
// confirm that one delivery — one alert to one address of one partner —
// was received, until the link expires, and nothing else.
//
// The token is opaque: the claim (alert id, subscriber, target, expiry) is
// encrypted and authenticated together with AES-256-GCM (NIST SP 800-38D)
// under a key derived from Herald's publishing key (busauth
// Keyring.Derive(Purpose)), padded to a multiple of 64 bytes so that its
// length says little, and encoded in unpadded base64url (RFC 4648 §5) to
// sit in a URL path. A token that was altered, made with another key, or
// has expired does not open. Links are made under the current publishing
// key and opened under any key of the key file, so the links already sent
// keep working through a rotation until the old key is removed from it.
package ack

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/herald-alerts/herald/internal/delivery"
)

// Purpose is the name under which the link key is derived from the
// publishing key.
const Purpose = "ack-link"

// Lifetime is how long the link of an alert without expires_at is valid,
// from the alert's issue: as long as the receipts that answer for the
// delivery are kept (PRODUCT.md §6).
const Lifetime = 400 * 24 * time.Hour

// KeySize is the size of the key New takes.
const KeySize = 32

// MaxToken bounds the length of a token Open looks at.
const MaxToken = 1024

// Errors of Open.
var (
	ErrInvalid = errors.New("not an acknowledgement link of this Herald: altered, or made with another key")
	ErrExpired = errors.New("the acknowledgement link has expired")
)

// version starts every plaintext.
const version = 1

// aad binds the ciphertext to this use.
var aad = []byte("herald ack link v1")

// Claim is what a link lets its holder do: acknowledge Alert for
// Subscriber, as received at Target, until Expires.
type Claim struct {
	Alert      string
	Subscriber string
	Target     string
	Expires    time.Time
}

// ClaimFor returns the claim of job's link: its alert, subscriber and
// target, expiring with the alert (expires_at), or Lifetime after its
// issue (or after now, for an alert without issued_at).
func ClaimFor(job *delivery.Job, now time.Time) Claim {
	c := Claim{Alert: job.Alert.ID, Subscriber: job.Subscriber, Target: job.Target}
	switch a := job.Alert; {
	case a.ExpiresAt != nil:
		c.Expires = *a.ExpiresAt
	case a.IssuedAt != nil:
		c.Expires = a.IssuedAt.Add(Lifetime)
	default:
		c.Expires = now.Add(Lifetime)
	}
	return c
}

// Codec seals and opens links. It is safe for concurrent use.
type Codec struct {
	// aeads[0] seals; every one opens.
	aeads []cipher.AEAD
}

// New returns a Codec that seals with the first key and opens what any of
// keys sealed (each KeySize bytes, such as Keyring.Derive(Purpose): the
// current publishing key first, then the one it replaces).
func New(keys ...[]byte) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("ack: no key")
	}
	c := &Codec{}
	for i, key := range keys {
		if len(key) != KeySize {
			return nil, fmt.Errorf("ack: key %d is %d bytes, want %d", i, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("ack: %w", err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("ack: %w", err)
		}
		c.aeads = append(c.aeads, aead)
	}
	return c, nil
}

// Seal returns the token of c.
func (k *Codec) Seal(c Claim) (string, error) {
	if len(c.Alert) == 0 || len(c.Alert) > 255 || len(c.Subscriber) == 0 || len(c.Subscriber) > 255 || len(c.Target) == 0 || len(c.Target) > 512 {
		return "", errors.New("ack: a claim needs an alert and a subscriber of at most 255 bytes and a target of at most 512")
	}
	p := make([]byte, 0, 64+len(c.Alert)+len(c.Subscriber)+len(c.Target))
	p = append(p, version)
	p = binary.BigEndian.AppendUint64(p, uint64(c.Expires.Unix()))
	p = append(append(p, byte(len(c.Alert))), c.Alert...)
	p = append(append(p, byte(len(c.Subscriber))), c.Subscriber...)
	p = binary.BigEndian.AppendUint16(p, uint16(len(c.Target)))
	p = append(p, c.Target...)
	for len(p)%64 != 0 {
		p = append(p, 0)
	}
	aead := k.aeads[0]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(p)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("ack: nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, p, aad)), nil
}

// Open returns the claim of token: ErrInvalid when it was altered or made
// with another key, ErrExpired at or after its expiry.
func (k *Codec) Open(token string, now time.Time) (Claim, error) {
	if len(token) > MaxToken {
		return Claim{}, ErrInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return Claim{}, ErrInvalid
	}
	var p []byte
	for _, aead := range k.aeads {
		ns := aead.NonceSize()
		if len(raw) < ns+aead.Overhead() {
			return Claim{}, ErrInvalid
		}
		if p, err = aead.Open(nil, raw[:ns], raw[ns:], aad); err == nil {
			break
		}
	}
	if err != nil {
		return Claim{}, ErrInvalid
	}
	c, ok := parse(p)
	if !ok {
		return Claim{}, ErrInvalid
	}
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	return c, nil
}

// parse decodes a plaintext Seal made.
func parse(p []byte) (Claim, bool) {
	var c Claim
	if len(p) < 9 || p[0] != version {
		return c, false
	}
	c.Expires = time.Unix(int64(binary.BigEndian.Uint64(p[1:9])), 0).UTC()
	r := reader{b: p[9:]}
	c.Alert = r.field(r.uint(1))
	c.Subscriber = r.field(r.uint(1))
	c.Target = r.field(r.uint(2))
	if r.bad || c.Alert == "" || c.Subscriber == "" || c.Target == "" {
		return c, false
	}
	for _, b := range r.b {
		if b != 0 {
			return c, false
		}
	}
	return c, true
}

// reader reads a plaintext's fields; bad is set once one runs past its end.
type reader struct {
	b   []byte
	bad bool
}

// uint reads a big-endian length of size 1 or 2 bytes.
func (r *reader) uint(size int) int {
	if r.bad || len(r.b) < size {
		r.bad = true
		return 0
	}
	n := int(r.b[0])
	if size == 2 {
		n = int(binary.BigEndian.Uint16(r.b))
	}
	r.b = r.b[size:]
	return n
}

// field reads n bytes.
func (r *reader) field(n int) string {
	if r.bad || len(r.b) < n {
		r.bad = true
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
