// Package busauth authenticates the records Herald writes to Kafka
// (PRODUCT.md §3 rule 1): every record carries, in its herald-auth header,
// an HMAC-SHA256 (RFC 2104) over what the record says — its topic, key and
// value — with a key that Herald's processes hold and the brokers and other
// Kafka clients do not. Write access to a topic is then not enough to put
// words in an analyst's mouth, to add a partner, or to make a worker sign
// and send content Herald never published.
//
// A record's other headers (a dead letter's reason, a quarantine record's
// source, a lease) are covered by a second authenticator in its
// herald-auth-headers header (SignHeaders): an HMAC with the same key over
// the topic, the record's herald-auth (which binds its key and value) and
// every other header in order, so that a header cannot be added, removed,
// altered, reordered, or carried to another record or topic.
//
// A Keyring holds one or more keys: the first signs, every one verifies, so
// a key is rotated by adding the new key first, deploying, then removing
// the old one once nothing signed with it is still read (PRODUCT.md §6: the
// longest retention; a compacted topic keeps its latest records for ever,
// so they are written again under the new key first: `herald keys resign`). Keys also derive sub-keys for other capabilities
// (HKDF, RFC 5869), such as partners' acknowledgement links.
package busauth

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"iter"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/herald-alerts/herald/alerts"
)

// Header is the name of the Kafka record header that carries the
// authenticator.
const Header = "herald-auth"

// HeadersHeader is the name of the Kafka record header that carries the
// authenticator of a record's other headers (SignHeaders).
const HeadersHeader = "herald-auth-headers"

// Covers reports whether the authenticator of a record's headers
// (SignHeaders) covers a header named name: every header but herald-auth
// and herald-auth-headers themselves.
func Covers(name string) bool { return name != Header && name != HeadersHeader }

// keyPrefix starts every key line of a key file.
const keyPrefix = "hbk1."

// KeySize is the size of a key in bytes.
const KeySize = 32

// key is one secret and its public id.
type key struct {
	id     string
	secret []byte
	pool   sync.Pool // of hash.Hash keyed with secret
}

// Keyring authenticates records. It is safe for concurrent use.
type Keyring struct {
	keys []*key
}

// New returns a keyring of the given secrets (each KeySize bytes); the
// first signs.
func New(secrets ...[]byte) (*Keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("busauth: no key")
	}
	k := &Keyring{}
	seen := map[string]bool{}
	for i, s := range secrets {
		if len(s) != KeySize {
			return nil, fmt.Errorf("busauth: key %d is %d bytes, want %d", i+1, len(s), KeySize)
		}
		kk := &key{id: keyID(s), secret: bytes.Clone(s)}
		if seen[kk.id] {
			return nil, fmt.Errorf("busauth: key %d (%s) is listed twice", i+1, kk.id)
		}
		seen[kk.id] = true
		kk.pool.New = func() any { return hmac.New(sha256.New, kk.secret) }
		k.keys = append(k.keys, kk)
	}
	return k, nil
}

// keyID names a key without revealing it.
func keyID(secret []byte) string {
	h := sha256.Sum256(append([]byte("herald busauth key id\x00"), secret...))
	return hex.EncodeToString(h[:6])
}

// IDs returns the ids of the keys, the signing key first.
func (k *Keyring) IDs() []string {
	out := make([]string, len(k.keys))
	for i, kk := range k.keys {
		out[i] = kk.id
	}
	return out
}

// mac computes the authenticator of (purpose, recordKey, value) with kk.
func (kk *key) mac(purpose string, recordKey, value []byte) []byte {
	h := kk.pool.Get().(hash.Hash)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	h.Write([]byte("herald-bus/v1\x00"))
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(recordKey)))])
	h.Write(recordKey)
	h.Write(value)
	sum := h.Sum(nil)
	kk.pool.Put(h)
	return sum
}

// Sign returns the header value that authenticates a record with key
// recordKey and value written for purpose (the topic's name without
// prefix), with the signing key: "v1=<key id>:<base64url MAC>".
func (k *Keyring) Sign(purpose string, recordKey, value []byte) string {
	kk := k.keys[0]
	return "v1=" + kk.id + ":" + base64.RawURLEncoding.EncodeToString(kk.mac(purpose, recordKey, value))
}

// Errors of Verify.
var (
	ErrMissing    = errors.New("no herald-auth header: not written by Herald")
	ErrUnknownKey = errors.New("herald-auth names a key this keyring does not hold")
	ErrMismatch   = errors.New("herald-auth does not match the record: altered, moved, or not written by Herald")
)

// Verify checks header, the value of a record's herald-auth header,
// against the record. It returns nil only when a key of the keyring made
// it for exactly this purpose, key and value.
func (k *Keyring) Verify(purpose string, recordKey, value []byte, header string) error {
	_, err := k.SignedBy(purpose, recordKey, value, header)
	return err
}

// SignedBy is Verify that also returns the id of the key (IDs) that made
// header: what a rotation asks of each record it must keep readable once
// the old key is removed. The id is returned only with a nil error.
func (k *Keyring) SignedBy(purpose string, recordKey, value []byte, header string) (string, error) {
	return k.verify(Header, header, recordErrs, func(kk *key) []byte { return kk.mac(purpose, recordKey, value) })
}

// verifyErrs are the errors verify returns for one header.
type verifyErrs struct{ missing, unknownKey, mismatch error }

var (
	recordErrs  = verifyErrs{ErrMissing, ErrUnknownKey, ErrMismatch}
	headersErrs = verifyErrs{ErrHeadersMissing, ErrHeadersUnknownKey, ErrHeadersMismatch}
)

// verify checks header, the value of a record's header named name
// ("v1=<key id>:<base64url MAC>"), against mac, the authenticator a key
// of the keyring computes for the record; it returns the id of the key
// that made it, or errs' errors.
func (k *Keyring) verify(name, header string, errs verifyErrs, mac func(*key) []byte) (string, error) {
	if header == "" {
		return "", errs.missing
	}
	rest, ok := strings.CutPrefix(header, "v1=")
	id, b64, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 {
		return "", fmt.Errorf("%s %q is malformed: %w", name, truncate(header), errs.mismatch)
	}
	got, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("%s is not base64url: %w", name, errs.mismatch)
	}
	for _, kk := range k.keys {
		if kk.id == id {
			if hmac.Equal(got, mac(kk)) {
				return kk.id, nil
			}
			return "", errs.mismatch
		}
	}
	return "", fmt.Errorf("%w (key %s)", errs.unknownKey, truncate(id))
}

// headersMAC computes the authenticator of the headers of a record whose
// herald-auth header is auth, written for purpose, with kk.
func (kk *key) headersMAC(purpose, auth string, headers iter.Seq2[string, []byte]) []byte {
	h := kk.pool.Get().(hash.Hash)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	field := func(b []byte) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))])
		h.Write(b)
	}
	h.Write([]byte("herald-bus-headers/v1\x00"))
	h.Write([]byte(purpose))
	h.Write([]byte{0})
	field([]byte(auth))
	for name, value := range headers {
		if Covers(name) {
			field([]byte(name))
			field(value)
		}
	}
	sum := h.Sum(nil)
	kk.pool.Put(h)
	return sum
}

// SignHeaders returns the value of the herald-auth-headers header of a
// record written for purpose whose herald-auth header is auth (Sign) and
// whose headers, in order, are headers (herald-auth and
// herald-auth-headers among them are skipped), with the signing key:
// "v1=<key id>:<base64url MAC>". auth binds the record's key and value, so
// the authenticator holds for that record only.
func (k *Keyring) SignHeaders(purpose, auth string, headers iter.Seq2[string, []byte]) string {
	kk := k.keys[0]
	return "v1=" + kk.id + ":" + base64.RawURLEncoding.EncodeToString(kk.headersMAC(purpose, auth, headers))
}

// Errors of VerifyHeaders.
var (
	ErrHeadersMissing    = errors.New("no herald-auth-headers header: the record's other headers were not written by Herald")
	ErrHeadersUnknownKey = errors.New("herald-auth-headers names a key this keyring does not hold")
	ErrHeadersMismatch   = errors.New("herald-auth-headers does not match the record's headers: added, removed, altered, reordered, moved, or not written by Herald")
)

// VerifyHeaders checks header, the value of a record's herald-auth-headers
// header, against the record's headers, its herald-auth header auth and
// purpose. It returns nil only when a key of the keyring made it for
// exactly these. It does not check auth itself: Verify does.
func (k *Keyring) VerifyHeaders(purpose, auth string, headers iter.Seq2[string, []byte], header string) error {
	_, err := k.verify(HeadersHeader, header, headersErrs, func(kk *key) []byte { return kk.headersMAC(purpose, auth, headers) })
	return err
}

// truncate shortens s, from a record, for an error message
// (alerts.Clip).
func truncate(s string) string { return alerts.Clip(s, 40, "…") }

// Derive returns a KeySize sub-key of each key of the keyring for purpose
// (HKDF with SHA-256), the signing key's first, for capabilities that must
// not be forged either, such as acknowledgement links: made with the first,
// accepted under any, so that what was issued before a rotation (the old
// key kept second in the file) stays valid until the old key is removed.
func (k *Keyring) Derive(purpose string) [][]byte {
	out := make([][]byte, len(k.keys))
	for i, kk := range k.keys {
		sub, err := hkdf.Key(sha256.New, kk.secret, nil, "herald busauth derive: "+purpose, KeySize)
		if err != nil {
			panic("busauth: hkdf: " + err.Error()) // only for lengths over 255*32
		}
		out[i] = sub
	}
	return out
}

// Generate returns the contents of a new key file holding one new key.
func Generate() ([]byte, error) {
	s := make([]byte, KeySize)
	if _, err := rand.Read(s); err != nil {
		return nil, fmt.Errorf("busauth: generate key: %w", err)
	}
	return Format(s), nil
}

// Format writes secrets as a key file, the signing key first.
func Format(secrets ...[]byte) []byte {
	var b bytes.Buffer
	b.WriteString("# Herald publishing key (publishing.key_file): authenticates every record Herald\n")
	b.WriteString("# writes to Kafka. Keep it secret; give the same file to every Herald process and\n")
	b.WriteString("# CLI. The first key signs, every key listed verifies: to rotate, put a new key\n")
	b.WriteString("# first, deploy, run `herald keys resign --subscribers --alert-ids`, and remove the old\n")
	b.WriteString("# one once `herald keys resign --subscribers --alert-ids --dry-run` exits 0; after a\n")
	b.WriteString("# compromise, do not (docs/operator-guide.md, \"Rotating the publishing key\").\n")
	for _, s := range secrets {
		b.WriteString(keyPrefix + base64.RawURLEncoding.EncodeToString(s) + "\n")
	}
	return b.Bytes()
}

// Parse reads a key file: one key per line ("hbk1." and base64url of 32
// bytes), the signing key first; blank lines and lines starting with '#'
// are ignored.
func Parse(data []byte) (*Keyring, error) {
	var secrets [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		b64, ok := strings.CutPrefix(t, keyPrefix)
		if !ok {
			return nil, fmt.Errorf("line %d: not a Herald publishing key (want %s followed by base64url)", line, keyPrefix)
		}
		s, err := base64.RawURLEncoding.DecodeString(b64)
		if err != nil || len(s) != KeySize {
			return nil, fmt.Errorf("line %d: not %s followed by base64url of %d bytes", line, keyPrefix, KeySize)
		}
		secrets = append(secrets, s)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(secrets) == 0 {
		return nil, errors.New("no key in the file")
	}
	return New(secrets...)
}

// Load reads the key file at path.
func Load(path string) (*Keyring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read publishing key: %w", err)
	}
	k, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("publishing key %s: %w", path, err)
	}
	return k, nil
}

// LoadOrCreate reads the key file at path, or, when it does not exist,
// creates it (mode 0600) with a new key, for the embedded development
// broker's zero-setup start. created reports which.
func LoadOrCreate(path string) (k *Keyring, created bool, err error) {
	k, err = Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return k, false, err
	}
	data, err := Generate()
	if err != nil {
		return nil, false, err
	}
	// Write a temporary file, then link it into place: the key file
	// appears complete or not at all, and of two processes starting at
	// once exactly one creates it.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".publishing-key-*")
	if err != nil {
		return nil, false, fmt.Errorf("create publishing key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, false, fmt.Errorf("write publishing key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, false, fmt.Errorf("write publishing key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, os.ErrExist) {
			k, err = Load(path)
			return k, false, err
		}
		return nil, false, fmt.Errorf("create publishing key: %w", err)
	}
	k, err = Parse(data)
	return k, true, err
}
