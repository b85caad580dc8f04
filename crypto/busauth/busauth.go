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
// A Keyring holds one or more keys: the first signs, every other verifies,
// so a key is rotated by adding the new key first and deploying. The old
// key is then retired (Retire): it keeps verifying what it signed before
// the retirement, bounded by offsets, which the broker assigns and a
// writer cannot choose, and nothing written after; so the records Herald
// keeps (PRODUCT.md §6) stay readable for as long as they are kept. After
// a compromise the old key is removed instead, once the compacted topics'
// records are written again under the new key (`herald keys resign`).
// Keys also derive sub-keys for other capabilities (HKDF, RFC 5869), such
// as partners' acknowledgement links; a retired key derives none.
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
	// retired says the key verifies only the records below cutoffs.
	retired bool
	cutoffs Cutoffs
}

// Keyring authenticates records. It is safe for concurrent use.
type Keyring struct {
	keys []*key
}

// New returns a keyring of the given secrets (each KeySize bytes), none
// retired; the first signs.
func New(secrets ...[]byte) (*Keyring, error) {
	entries := make([]entry, len(secrets))
	for i, s := range secrets {
		entries[i] = entry{secret: s}
	}
	return newKeyring(entries)
}

// entry is one key of a key file: its secret and, when retired, its
// cutoffs.
type entry struct {
	secret  []byte
	retired bool
	cutoffs Cutoffs
}

// newKeyring returns a keyring of entries; the first signs (Parse refuses
// a file whose first key is retired, naming its line).
func newKeyring(entries []entry) (*Keyring, error) {
	if len(entries) == 0 {
		return nil, errors.New("busauth: no key")
	}
	k := &Keyring{}
	seen := map[string]bool{}
	for i, e := range entries {
		if len(e.secret) != KeySize {
			return nil, fmt.Errorf("busauth: key %d is %d bytes, want %d", i+1, len(e.secret), KeySize)
		}
		kk := &key{id: keyID(e.secret), secret: bytes.Clone(e.secret), retired: e.retired, cutoffs: e.cutoffs.clone()}
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

// IDs returns the ids of the keys, retired ones included, the signing key
// first.
func (k *Keyring) IDs() []string {
	out := make([]string, len(k.keys))
	for i, kk := range k.keys {
		out[i] = kk.id
	}
	return out
}

// Retired reports whether the key named id (IDs) is retired, and returns
// a copy of its cutoffs: what it still verifies.
func (k *Keyring) Retired(id string) (Cutoffs, bool) {
	for _, kk := range k.keys {
		if kk.id == id {
			return kk.cutoffs.clone(), kk.retired
		}
	}
	return nil, false
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
	// ErrRetiredKey refuses a record signed with a retired key that does
	// not lie below the key's cutoff on its topic and partition: written
	// after the retirement, so not by Herald (or by a process still
	// running with the key), or of a caller that cannot say where the
	// record lies.
	ErrRetiredKey = errors.New("signed with a key retired before this record was written")
)

// Place is where a record lies: its partition and offset on its topic,
// which the broker assigns and no writer chooses. What a retired key
// verifies is bounded by places.
type Place struct {
	Partition int
	Offset    int64
}

// Verify checks header, the value of a record's herald-auth header,
// against the record. It returns nil only when a key of the keyring in
// use (not retired) made it for exactly this purpose, key and value:
// without the record's place (SignedAt), a retired key's authenticator
// is refused (ErrRetiredKey).
func (k *Keyring) Verify(purpose string, recordKey, value []byte, header string) error {
	_, err := k.verify(Header, header, recordErrs, purpose, nil, func(kk *key) []byte { return kk.mac(purpose, recordKey, value) })
	return err
}

// SignedAt is Verify for a record read at place at of the topic named by
// purpose, that also returns the id of the key (IDs) that made header
// (what a rotation asks of each record it must keep readable), only with
// a nil error: a retired key verifies it too when at lies below the key's
// cutoff for that topic and partition (Cutoffs).
func (k *Keyring) SignedAt(purpose string, at Place, recordKey, value []byte, header string) (string, error) {
	return k.verify(Header, header, recordErrs, purpose, &at, func(kk *key) []byte { return kk.mac(purpose, recordKey, value) })
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
// that made it, or errs' errors. A retired key's authenticator holds only
// for a record of purpose at a place (at, nil when unknown) below the
// key's cutoff: the one home of that rule.
func (k *Keyring) verify(name, header string, errs verifyErrs, purpose string, at *Place, mac func(*key) []byte) (string, error) {
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
			if !hmac.Equal(got, mac(kk)) {
				return "", errs.mismatch
			}
			if kk.retired {
				if err := kk.cutoffs.admit(kk.id, purpose, at); err != nil {
					return "", err
				}
			}
			return kk.id, nil
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
// Without the record's place (VerifyHeadersAt), a retired key's
// authenticator is refused (ErrRetiredKey).
func (k *Keyring) VerifyHeaders(purpose, auth string, headers iter.Seq2[string, []byte], header string) error {
	_, err := k.verify(HeadersHeader, header, headersErrs, purpose, nil, func(kk *key) []byte { return kk.headersMAC(purpose, auth, headers) })
	return err
}

// VerifyHeadersAt is VerifyHeaders for a record read at place at of the
// topic named by purpose: a retired key's authenticator holds when at lies
// below the key's cutoff there, as for SignedAt.
func (k *Keyring) VerifyHeadersAt(purpose string, at Place, auth string, headers iter.Seq2[string, []byte], header string) error {
	_, err := k.verify(HeadersHeader, header, headersErrs, purpose, &at, func(kk *key) []byte { return kk.headersMAC(purpose, auth, headers) })
	return err
}

// truncate shortens s, from a record, for an error message
// (alerts.Clip).
func truncate(s string) string { return alerts.Clip(s, 40, "…") }

// Derive returns a KeySize sub-key of each key of the keyring in use (not
// retired) for purpose (HKDF with SHA-256), the signing key's first, for
// capabilities that must not be forged either, such as acknowledgement
// links: made with the first, accepted under any, so that what was issued
// before a rotation (the old key kept second in the file) stays valid
// until the old key is retired or removed. A retired key derives nothing:
// a capability carries no place to bound it by.
func (k *Keyring) Derive(purpose string) [][]byte {
	out := make([][]byte, 0, len(k.keys))
	for _, kk := range k.keys {
		if kk.retired {
			continue
		}
		sub, err := hkdf.Key(sha256.New, kk.secret, nil, "herald busauth derive: "+purpose, KeySize)
		if err != nil {
			panic("busauth: hkdf: " + err.Error()) // only for lengths over 255*32
		}
		out = append(out, sub)
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
	b.WriteString("# first, deploy and restart, then run `herald keys retire`: the old key's line then\n")
	b.WriteString("# says \"retired\" and the offsets below which it still verifies what it signed.\n")
	b.WriteString("# After a compromise, remove the key instead (docs/operator-guide.md, \"Rotating the\n")
	b.WriteString("# publishing key\").\n")
	for _, s := range secrets {
		b.WriteString(keyPrefix + base64Key(s) + "\n")
	}
	return b.Bytes()
}

// base64Key writes a secret as its key line carries it, after keyPrefix.
func base64Key(secret []byte) string { return base64.RawURLEncoding.EncodeToString(secret) }

// Parse reads a key file: one key per line ("hbk1." and base64url of 32
// bytes), the signing key first; blank lines and lines starting with '#'
// are ignored. A key line may go on with " retired" and the key's cutoffs
// (Cutoffs.String): "hbk1.… retired alerts=12,0,7;receipts=3,4,0" (Retire
// writes them); the first key may not be retired.
func Parse(data []byte) (*Keyring, error) {
	var entries []entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := 0
	for sc.Scan() {
		line++
		e, ok, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if !ok {
			continue
		}
		if len(entries) == 0 && e.retired {
			return nil, fmt.Errorf("line %d: the first key signs and may not be retired: put the key in use first, above the retired ones", line)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, errors.New("no key in the file")
	}
	return newKeyring(entries)
}

// parseLine reads one line of a key file; ok is false for a blank line or
// a comment.
func parseLine(text string) (e entry, ok bool, err error) {
	t := strings.TrimSpace(text)
	if t == "" || strings.HasPrefix(t, "#") {
		return entry{}, false, nil
	}
	fields := strings.Fields(t)
	b64, isKey := strings.CutPrefix(fields[0], keyPrefix)
	if !isKey {
		return entry{}, false, fmt.Errorf("not a Herald publishing key (want %s followed by base64url)", keyPrefix)
	}
	s, err := base64.RawURLEncoding.DecodeString(b64)
	if err != nil || len(s) != KeySize {
		return entry{}, false, fmt.Errorf("not %s followed by base64url of %d bytes", keyPrefix, KeySize)
	}
	e = entry{secret: s}
	switch {
	case len(fields) == 1:
	case fields[1] == retiredWord && len(fields) <= 3:
		e.retired, e.cutoffs = true, Cutoffs{}
		if len(fields) == 3 {
			if e.cutoffs, err = ParseCutoffs(fields[2]); err != nil {
				return entry{}, false, fmt.Errorf("retired key: %w", err)
			}
		}
	default:
		return entry{}, false, fmt.Errorf("a key may be followed only by %q and its cutoffs (topic=offset,offset;topic=…)", retiredWord)
	}
	return e, true, nil
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
