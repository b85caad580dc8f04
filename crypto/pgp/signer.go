package pgp

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Errors LoadSigner wraps, for callers that need to tell them apart.
var (
	ErrNotPrivateKey      = errors.New("not a private key")
	ErrPassphraseRequired = errors.New("the key is protected by a passphrase and none was given")
	ErrWrongPassphrase    = errors.New("wrong passphrase")
	ErrKeyExpired         = errors.New("key expired")
	ErrKeyRevoked         = errors.New("key revoked")
	ErrCannotSign         = errors.New("key has no usable signing key")
)

// Signer is the agency's signing key, unlocked. It is safe for concurrent
// use.
type Signer struct {
	entity      *openpgp.Entity
	cfg         *packet.Config
	fingerprint string
	name        string
	public      []byte
	ops         atomic.Uint64
}

// LoadSigner parses an ASCII-armoured private key, unlocks it with
// passphrase if it is protected, and checks at now that it can sign. The
// errors wrap ErrNotPrivateKey, ErrPassphraseRequired, ErrWrongPassphrase,
// ErrKeyExpired, ErrKeyRevoked or ErrCannotSign.
func LoadSigner(armoredPrivate []byte, passphrase []byte, now time.Time) (*Signer, error) {
	e, err := readOne(armoredPrivate)
	if err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	fp := fingerprint(e.PrimaryKey)
	if e.PrivateKey == nil {
		return nil, fmt.Errorf("load signing key %s: %w (it is a public key)", fp, ErrNotPrivateKey)
	}
	if err := gnupg22(e.PrimaryKey); err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", fp, err)
	}
	if e.Revoked(now) {
		return nil, fmt.Errorf("load signing key %s: %w", fp, ErrKeyRevoked)
	}
	if sig, _ := e.PrimarySelfSignature(); sig != nil && e.PrimaryKey.KeyExpired(sig, now) {
		return nil, fmt.Errorf("load signing key %s: %w on %s", fp, ErrKeyExpired, expiry(e).UTC().Format(time.DateOnly))
	}
	if err := checkUsable(e, now); err != nil {
		return nil, fmt.Errorf("load signing key: %w", err)
	}
	k, ok := e.SigningKey(now)
	if !ok {
		return nil, fmt.Errorf("load signing key %s: %w (no key or subkey is valid for signing)", fp, ErrCannotSign)
	}
	if k.PrivateKey == nil || k.PrivateKey.Dummy() {
		return nil, fmt.Errorf("load signing key %s: %w (the secret part of the signing key is not in the file)", fp, ErrCannotSign)
	}
	if k.PrivateKey.Encrypted {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("load signing key %s: %w", fp, ErrPassphraseRequired)
		}
		if err := k.PrivateKey.Decrypt(passphrase); err != nil {
			var ke pgperrors.KeyInvalidError
			if errors.As(err, &ke) || strings.Contains(err.Error(), "incorrect key") || strings.Contains(err.Error(), "passphrase") {
				return nil, fmt.Errorf("load signing key %s: %w", fp, ErrWrongPassphrase)
			}
			return nil, fmt.Errorf("load signing key %s: %w: %v", fp, ErrWrongPassphrase, err)
		}
	}
	pub, err := armorEntity(e, false, nil)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", fp, err)
	}
	name := ""
	if ident := e.PrimaryIdentity(); ident != nil && ident.UserId != nil {
		name = strings.TrimSpace(ident.UserId.Name)
	}
	return &Signer{
		entity:      e,
		cfg:         &packet.Config{DefaultHash: crypto.SHA256, SigningKeyId: k.PublicKey.KeyId},
		fingerprint: fp,
		name:        name,
		public:      pub,
	}, nil
}

// LoadSignerFile reads the private key at path and, when passphraseFile is
// not empty, the passphrase from that file (trailing newlines removed),
// then calls LoadSigner.
func LoadSignerFile(path, passphraseFile string, now time.Time) (*Signer, error) {
	armored, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	var pass []byte
	if passphraseFile != "" {
		p, err := os.ReadFile(passphraseFile)
		if err != nil {
			return nil, fmt.Errorf("read signing key passphrase: %w", err)
		}
		pass = bytes.TrimRight(p, "\r\n")
	}
	s, err := LoadSigner(armored, pass, now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Fingerprint returns the agency key's primary fingerprint in upper-case
// hex.
func (s *Signer) Fingerprint() string { return s.fingerprint }

// Name returns the name in the key's primary user id ("National Crime
// Agency" for "National Crime Agency <alerts@nca.example>"), or "" if the
// user id has none. Partner-facing text names the agency with it when no
// other name is configured.
func (s *Signer) Name() string { return s.name }

// PublicKeyArmored returns the agency's ASCII-armoured public key. The
// caller must not modify it.
func (s *Signer) PublicKeyArmored() []byte { return s.public }

// Ops returns the number of signatures made so far.
func (s *Signer) Ops() uint64 { return s.ops.Load() }

// SignDetached returns a binary detached signature of data (signature type
// 0x00), as sent base64-encoded in the herald-pgp-signature webhook header.
func (s *Signer) SignDetached(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	s.ops.Add(1)
	if err := openpgp.DetachSign(&buf, s.entity, bytes.NewReader(data), s.cfg); err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return buf.Bytes(), nil
}

// SignDetachedText returns an ASCII-armoured text-mode detached signature
// (with CRLF line endings, ready for MIME) of data (signature type 0x01, which hashes line endings as CRLF) for an
// RFC 3156 multipart/signed message, and the micalg parameter naming the
// hash the signature used, such as "pgp-sha256".
func (s *Signer) SignDetachedText(data []byte) (armoredSig []byte, micalg string, err error) {
	var raw bytes.Buffer
	s.ops.Add(1)
	if err := openpgp.DetachSignText(&raw, s.entity, bytes.NewReader(data), s.cfg); err != nil {
		return nil, "", fmt.Errorf("sign: %w", err)
	}
	p, err := packet.Read(bytes.NewReader(raw.Bytes()))
	if err != nil {
		return nil, "", fmt.Errorf("sign: read back signature: %w", err)
	}
	sig, ok := p.(*packet.Signature)
	if !ok {
		return nil, "", fmt.Errorf("sign: read back %T, not a signature", p)
	}
	micalg, err = Micalg(sig.Hash)
	if err != nil {
		return nil, "", fmt.Errorf("sign: %w", err)
	}
	var out bytes.Buffer
	w, err := armor.Encode(&out, blockSignature, nil)
	if err != nil {
		return nil, "", fmt.Errorf("sign: armor: %w", err)
	}
	w.Write(raw.Bytes())
	if err := w.Close(); err != nil {
		return nil, "", fmt.Errorf("sign: armor: %w", err)
	}
	out.WriteByte('\n')
	return crlf(out.Bytes()), micalg, nil
}

// Micalg returns the RFC 3156 §5 micalg value for a hash: "pgp-" and the
// OpenPGP hash name in lower case.
func Micalg(h crypto.Hash) (string, error) {
	switch h {
	case crypto.SHA224:
		return "pgp-sha224", nil
	case crypto.SHA256:
		return "pgp-sha256", nil
	case crypto.SHA384:
		return "pgp-sha384", nil
	case crypto.SHA512:
		return "pgp-sha512", nil
	case crypto.SHA3_256:
		return "pgp-sha3-256", nil
	case crypto.SHA3_512:
		return "pgp-sha3-512", nil
	}
	return "", fmt.Errorf("no micalg for hash %v", h)
}

// crlf turns the LF line endings of armour into CRLF, in one pass.
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+bytes.Count(b, []byte("\n")))
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return append(out, b...)
		}
		line := b[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		out = append(append(out, line...), '\r', '\n')
		b = b[i+1:]
	}
}
