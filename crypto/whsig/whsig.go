// Package whsig implements Standard Webhooks v1 signatures
// (https://www.standardwebhooks.com, the "Standard Webhooks" specification):
// an HMAC-SHA256, keyed with a whsec_ secret, over "id.timestamp.body",
// carried in the webhook-id, webhook-timestamp and webhook-signature
// headers. The signature header carries one "v1,<base64>" entry per active
// secret, so a partner can rotate secrets without missing a message.
//
// It also names Herald's extra header, herald-pgp-signature, which carries
// the base64 of a binary OpenPGP (RFC 9580) detached signature of the body.
package whsig

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header names. HTTP header names are case-insensitive; these are the
// lower-case forms the specification uses.
const (
	// HeaderID carries the message id: Herald's delivery id, the same on
	// every retry of one delivery, so receivers can drop duplicates.
	HeaderID = "webhook-id"
	// HeaderTimestamp carries the signing time in Unix seconds.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature carries space-separated "v1,<base64 HMAC-SHA256>"
	// entries, one per active secret.
	HeaderSignature = "webhook-signature"
	// HeaderPGPSignature carries the base64 of the binary OpenPGP detached
	// signature of the body by the agency's signing key.
	HeaderPGPSignature = "herald-pgp-signature"
)

// SecretPrefix starts every Standard Webhooks secret.
const SecretPrefix = "whsec_"

// DefaultTolerance is how far a timestamp may lie from now when Verify is
// given no tolerance: five minutes, as the reference libraries use.
const DefaultTolerance = 5 * time.Minute

// maxEntries bounds the signature entries Verify looks at, so that a
// hostile header cannot make it compute without end.
const maxEntries = 16

// Errors returned by Verify and its parts, to be tested with errors.Is.
var (
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrInvalidHeaders = errors.New("malformed webhook signature headers")
	ErrNoMatch        = errors.New("no v1 signature matches any of the secrets")
	ErrTooOld         = errors.New("webhook timestamp is too old")
	ErrTooNew         = errors.New("webhook timestamp is too far in the future")
)

// DecodeSecret returns the HMAC key of a secret: base64 after the optional
// whsec_ prefix.
func DecodeSecret(secret string) ([]byte, error) {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, SecretPrefix))
	if err != nil {
		return nil, errors.New("decode webhook secret: not whsec_ followed by base64")
	}
	if len(key) == 0 {
		return nil, errors.New("decode webhook secret: empty key")
	}
	return key, nil
}

// NewSecret returns a fresh secret: whsec_ and the base64 of 32 random bytes.
func NewSecret() (string, error) {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return "", fmt.Errorf("new webhook secret: %w", err)
	}
	return SecretPrefix + base64.StdEncoding.EncodeToString(key[:]), nil
}

// Sign returns the webhook-signature header value for a message: one
// "v1,<base64>" entry per secret, separated by spaces. msgID must be
// non-empty and contain no space, comma or line break; ts is signed in
// whole Unix seconds, as the webhook-timestamp header carries it.
func Sign(msgID string, ts time.Time, body []byte, secrets []string) (string, error) {
	if err := checkID(msgID); err != nil {
		return "", err
	}
	s, err := NewSigner(secrets)
	if err != nil {
		return "", err
	}
	return s.Sign(msgID, ts, body)
}

// Signer signs messages with a fixed list of secrets, decoded and keyed
// once: a sender that signs many messages with one endpoint's secrets
// keeps one instead of calling Sign, which decodes the secrets and keys
// an HMAC for each message. It is safe for concurrent use.
type Signer struct {
	keys []*keyedMAC
}

// keyedMAC hands out HMAC-SHA256 states keyed with one secret.
type keyedMAC struct {
	key  []byte
	pool sync.Pool // of hash.Hash keyed with key
}

func (k *keyedMAC) sum(msgID string, unix int64, body []byte) []byte {
	h, _ := k.pool.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, k.key)
	} else {
		h.Reset() // back to the keyed state, without hashing the key again
	}
	writeSigned(h, msgID, unix, body)
	var out [sha256.Size]byte
	sum := h.Sum(out[:0])
	k.pool.Put(h)
	return sum
}

// NewSigner decodes secrets (whsec_ and base64, as Sign takes them) for
// signing.
func NewSigner(secrets []string) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("sign webhook: no secret")
	}
	s := &Signer{keys: make([]*keyedMAC, len(secrets))}
	for i, sec := range secrets {
		key, err := DecodeSecret(sec)
		if err != nil {
			return nil, fmt.Errorf("sign webhook: secret %d: %w", i, err)
		}
		s.keys[i] = &keyedMAC{key: key}
	}
	return s, nil
}

// Sign returns the webhook-signature header value for a message, as the
// package's Sign does with the Signer's secrets.
func (s *Signer) Sign(msgID string, ts time.Time, body []byte) (string, error) {
	if err := checkID(msgID); err != nil {
		return "", err
	}
	const entry = len("v1,") + (sha256.Size+2)/3*4
	b := make([]byte, 0, len(s.keys)*(entry+1))
	for i, k := range s.keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, "v1,"...)
		b = base64.StdEncoding.AppendEncode(b, k.sum(msgID, ts.Unix(), body))
	}
	return string(b), nil
}

// checkID checks a message id to be signed: non-empty, without space,
// comma or line break.
func checkID(msgID string) error {
	if msgID == "" || strings.ContainsAny(msgID, " ,\r\n") {
		return fmt.Errorf("sign webhook: invalid message id %q", msgID)
	}
	return nil
}

// mac computes HMAC-SHA256(key, id "." timestamp "." body) without copying
// the body.
func mac(key []byte, msgID string, unix int64, body []byte) []byte {
	h := hmac.New(sha256.New, key)
	writeSigned(h, msgID, unix, body)
	return h.Sum(nil)
}

func writeSigned(h hash.Hash, msgID string, unix int64, body []byte) {
	var buf [24]byte
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(buf[:0], unix, 10))
	h.Write([]byte{'.'})
	h.Write(body)
}

// Verify checks a received message: the headers must be present, the
// timestamp within tolerance of now (DefaultTolerance if tolerance is
// zero), and at least one v1 entry of the signature header must match one
// of the secrets. Comparisons are constant-time.
func Verify(h http.Header, body []byte, secrets []string, now time.Time, tolerance time.Duration) error {
	if err := VerifySignature(h, body, secrets); err != nil {
		return err
	}
	return CheckTimestamp(h, now, tolerance)
}

// Timestamp returns the parsed webhook-timestamp header.
func Timestamp(h http.Header) (time.Time, error) {
	v := h.Get(HeaderTimestamp)
	if v == "" {
		return time.Time{}, fmt.Errorf("verify webhook: %w", ErrMissingHeaders)
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("verify webhook: timestamp %q: %w", v, ErrInvalidHeaders)
	}
	return time.Unix(sec, 0), nil
}

// CheckTimestamp checks that the webhook-timestamp header lies within
// tolerance of now (DefaultTolerance if tolerance is zero), which bounds
// how long a captured message can be replayed.
func CheckTimestamp(h http.Header, now time.Time, tolerance time.Duration) error {
	ts, err := Timestamp(h)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	switch d := now.Sub(ts); {
	case d > tolerance:
		return fmt.Errorf("verify webhook: signed %s ago: %w", d.Truncate(time.Second), ErrTooOld)
	case d < -tolerance:
		return fmt.Errorf("verify webhook: signed %s ahead: %w", (-d).Truncate(time.Second), ErrTooNew)
	}
	return nil
}

// VerifySignature checks only the signature: at least one v1 entry of the
// webhook-signature header must match one of the secrets. It does not look
// at how old the message is; use Verify unless you check that yourself.
func VerifySignature(h http.Header, body []byte, secrets []string) error {
	id, sigs := h.Get(HeaderID), h.Get(HeaderSignature)
	if id == "" || sigs == "" {
		return fmt.Errorf("verify webhook: %w", ErrMissingHeaders)
	}
	ts, err := Timestamp(h)
	if err != nil {
		return err
	}
	if len(secrets) == 0 {
		return errors.New("verify webhook: no secret to verify with")
	}
	var got [][]byte
	for i, entry := range strings.Fields(sigs) {
		if i == maxEntries {
			break
		}
		version, b64, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue // other versions (v1a, …) are not ours to judge
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(sig) != sha256.Size {
			continue
		}
		got = append(got, sig)
	}
	if len(got) == 0 {
		return fmt.Errorf("verify webhook: no v1 signature entry: %w", ErrInvalidHeaders)
	}
	for i, s := range secrets {
		key, err := DecodeSecret(s)
		if err != nil {
			return fmt.Errorf("verify webhook: secret %d: %w", i, err)
		}
		want := mac(key, id, ts.Unix(), body)
		for _, sig := range got {
			if hmac.Equal(sig, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("verify webhook: %w", ErrNoMatch)
}
