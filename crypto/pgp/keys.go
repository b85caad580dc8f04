package pgp

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Key algorithms accepted by GenerateKey.
const (
	AlgoEd25519 = "ed25519" // EdDSA primary key with a Curve25519 ECDH subkey (the default)
	AlgoRSA3072 = "rsa3072" // RSA-3072 primary key and subkey
)

// Armor block types.
const (
	blockPublicKey  = "PGP PUBLIC KEY BLOCK"
	blockPrivateKey = "PGP PRIVATE KEY BLOCK"
	blockSignature  = "PGP SIGNATURE"
	blockMessage    = "PGP MESSAGE"
)

// keyConfig returns the go-crypto configuration for generating a key of
// algo at now: version 4, SHA-256, AES-256 preferred, no AEAD.
func keyConfig(algo string, now time.Time) (*packet.Config, error) {
	cfg := &packet.Config{
		DefaultHash:   crypto.SHA256,
		DefaultCipher: packet.CipherAES256,
		Time:          func() time.Time { return now },
	}
	switch algo {
	case "", AlgoEd25519:
		cfg.Algorithm = packet.PubKeyAlgoEdDSA
		cfg.Curve = packet.Curve25519
	case AlgoRSA3072:
		cfg.Algorithm = packet.PubKeyAlgoRSA
		cfg.RSABits = 3072
	default:
		return nil, fmt.Errorf("unknown key algorithm %q: want %s or %s", algo, AlgoEd25519, AlgoRSA3072)
	}
	return cfg, nil
}

// GenerateKey makes a new version 4 OpenPGP key for name <email>, created
// at now and without expiry, and returns it ASCII-armoured, private and
// public. algo is "ed25519" (the default when empty) or "rsa3072".
func GenerateKey(name, email, algo string, now time.Time) (privateArmored, publicArmored []byte, err error) {
	return GenerateKeyWithPassphrase(name, email, algo, now, nil)
}

// GenerateKeyWithPassphrase is GenerateKey with the private key material
// encrypted under passphrase (S2K iterated and salted, AES-256). An empty
// passphrase leaves it unencrypted.
func GenerateKeyWithPassphrase(name, email, algo string, now time.Time, passphrase []byte) (privateArmored, publicArmored []byte, err error) {
	cfg, err := keyConfig(algo, now)
	if err != nil {
		return nil, nil, err
	}
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	pub, err := armorEntity(e, false, cfg)
	if err != nil {
		return nil, nil, err
	}
	if len(passphrase) > 0 {
		if err := e.EncryptPrivateKeys(passphrase, cfg); err != nil {
			return nil, nil, fmt.Errorf("encrypt private key: %w", err)
		}
	}
	priv, err := armorEntity(e, true, cfg)
	if err != nil {
		return nil, nil, err
	}
	return priv, pub, nil
}

// armorEntity serialises e, its secret parts too when private.
func armorEntity(e *openpgp.Entity, private bool, cfg *packet.Config) ([]byte, error) {
	var buf bytes.Buffer
	block := blockPublicKey
	if private {
		block = blockPrivateKey
	}
	w, err := armor.Encode(&buf, block, nil)
	if err != nil {
		return nil, fmt.Errorf("armor key: %w", err)
	}
	if private {
		err = e.SerializePrivateWithoutSigning(w, cfg)
	} else {
		err = e.Serialize(w)
	}
	if err != nil {
		return nil, fmt.Errorf("serialize key: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("armor key: %w", err)
	}
	buf.WriteByte('\n')
	return buf.Bytes(), nil
}

// readOne parses exactly one key from ASCII armour.
func readOne(armored []byte) (*openpgp.Entity, error) {
	if len(bytes.TrimSpace(armored)) == 0 {
		return nil, errors.New("no key: the text is empty")
	}
	if n := bytes.Count(armored, []byte("-----BEGIN PGP ")); n > 1 {
		return nil, fmt.Errorf("%d armoured blocks found; want exactly one key", n)
	}
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil {
		return nil, fmt.Errorf("not an ASCII-armoured OpenPGP key: %w", err)
	}
	switch len(list) {
	case 0:
		return nil, errors.New("no key found in the armour")
	case 1:
		return list[0], nil
	default:
		return nil, fmt.Errorf("%d keys found; want exactly one", len(list))
	}
}

// Fingerprint renders a key fingerprint as upper-case hex.
func fingerprint(pk *packet.PublicKey) string {
	return strings.ToUpper(fmt.Sprintf("%x", pk.Fingerprint))
}

// expiry returns when e's primary key expires, or the zero time.
func expiry(e *openpgp.Entity) time.Time {
	sig, _ := e.PrimarySelfSignature()
	if sig == nil || sig.KeyLifetimeSecs == nil || *sig.KeyLifetimeSecs == 0 {
		return time.Time{}
	}
	return e.PrimaryKey.CreationTime.Add(time.Duration(*sig.KeyLifetimeSecs) * time.Second)
}

// KeyError says why a parsed key cannot be encrypted to: the key, by its
// fingerprint, and the problem, as a clause a sentence about the key can
// carry ("is revoked", "expired on 2026-01-02", "its user id is
// revoked"). Its text is "key <fingerprint>" and the problem, after a
// space for a predicate or ": " for a clause of its own (Predicate).
type KeyError struct {
	Fingerprint string
	Problem     string
	// Predicate reports that Problem continues "key <fingerprint>" as a
	// predicate ("is revoked"); otherwise it is a clause of its own.
	Predicate bool
	err       error
}

func (e *KeyError) Error() string {
	if e.Predicate {
		return "key " + e.Fingerprint + " " + e.Problem
	}
	return "key " + e.Fingerprint + ": " + e.Problem
}

// Unwrap returns the error the problem came from, if any.
func (e *KeyError) Unwrap() error { return e.err }

// keyError returns the KeyError of the key fp: sep " " makes problem a
// predicate, ": " a clause of its own; err is what it came from.
func keyError(fp, sep, problem string, err error) error {
	return &KeyError{Fingerprint: fp, Problem: problem, Predicate: sep == " ", err: err}
}

// checkUsable reports why e cannot be used at now at all: revoked,
// expired, or without a valid self-signature.
func checkUsable(e *openpgp.Entity, now time.Time) error {
	fp := fingerprint(e.PrimaryKey)
	if e.Revoked(now) {
		return keyError(fp, " ", "is revoked", nil)
	}
	sig, ident := e.PrimarySelfSignature()
	if sig == nil {
		return keyError(fp, " ", "has no valid self-signature", nil)
	}
	if ident != nil && ident.Revoked(now) {
		return keyError(fp, ": ", "its user id is revoked", nil)
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return keyError(fp, " ", "expired on "+expiry(e).UTC().Format(time.DateOnly), nil)
	}
	if sig.SigExpired(now) {
		return keyError(fp, ": ", "its self-signature expired", nil)
	}
	return nil
}

// gnupg22 reports why GnuPG 2.2 could not use pk, if it could not.
func gnupg22(pk *packet.PublicKey) error {
	if pk.Version != 4 {
		return fmt.Errorf("version %d keys are not supported by GnuPG 2.2; send a version 4 key (Curve25519 or RSA)", pk.Version)
	}
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448:
		return fmt.Errorf("public-key algorithm %d (RFC 9580) is not supported by GnuPG 2.2; send a version 4 key with a cv25519 or RSA encryption subkey", pk.PubKeyAlgo)
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly,
		packet.PubKeyAlgoECDH, packet.PubKeyAlgoEdDSA, packet.PubKeyAlgoECDSA, packet.PubKeyAlgoElGamal, packet.PubKeyAlgoDSA:
		return nil
	}
	return fmt.Errorf("public-key algorithm %d is not supported", pk.PubKeyAlgo)
}

// CheckKeyParses reports whether armored is exactly one well-formed
// OpenPGP public key. It does not look at expiry, revocation or
// capabilities, which change with time and are the policy's business
// (CheckRecipientKey); subscriber validation uses it to reject malformed
// records.
func CheckKeyParses(armored string) error {
	_, err := readPublic(armored)
	return err
}

// readPublic parses exactly one public key from ASCII armour.
func readPublic(armored string) (*openpgp.Entity, error) {
	e, err := readOne([]byte(armored))
	if err != nil {
		return nil, err
	}
	if e.PrivateKey != nil {
		return nil, errors.New("this is a private key: give the public key only")
	}
	return e, nil
}

// Recipient is a partner's public key, checked as usable for encryption.
type Recipient struct {
	entity *openpgp.Entity
	key    openpgp.Key
}

// Fingerprint returns the recipient's primary key fingerprint in
// upper-case hex.
func (r *Recipient) Fingerprint() string { return fingerprint(r.entity.PrimaryKey) }

// ParseRecipient parses an ASCII-armoured public key and checks that it
// can be used to encrypt to at now, in a form GnuPG 2.2 and Sequoia can
// decrypt. The error says why not: unparsable, revoked, expired, no
// encryption subkey, or an unsupported (version 6 / X25519 algorithm 25)
// key.
func ParseRecipient(armored string, now time.Time) (*Recipient, error) {
	r, err := parseKey(armored)
	if err != nil {
		return nil, err
	}
	return r.At(now)
}

// parseKey parses an ASCII-armoured public key: one key, its
// self-signatures checked. The Recipient it returns is to be judged (At)
// before use; it can be described (Info) whether or not it can be used.
func parseKey(armored string) (*Recipient, error) {
	e, err := readOne([]byte(armored))
	if err != nil {
		return nil, err
	}
	return &Recipient{entity: e}, nil
}

// At judges the already parsed (and signature-checked) key again at now,
// cheaply, and returns it with the encryption subkey valid at now. A
// caller that caches recipients calls it before every use, so that expiry
// and revocation are noticed without parsing the key again.
func (r *Recipient) At(now time.Time) (*Recipient, error) {
	if err := gnupg22(r.entity.PrimaryKey); err != nil {
		return nil, keyError(fingerprint(r.entity.PrimaryKey), ": ", err.Error(), err)
	}
	if err := checkUsable(r.entity, now); err != nil {
		return nil, err
	}
	k, ok := r.entity.EncryptionKey(now)
	if !ok {
		return nil, keyError(fingerprint(r.entity.PrimaryKey), " ", "has no valid encryption subkey"+whyNoSubkey(r.entity, now), nil)
	}
	if err := gnupg22(k.PublicKey); err != nil {
		return nil, keyError(fingerprint(r.entity.PrimaryKey), ": ", "encryption subkey: "+err.Error(), err)
	}
	return &Recipient{entity: r.entity, key: k}, nil
}

// whyNoSubkey explains, as a suffix, why e offers no encryption subkey.
func whyNoSubkey(e *openpgp.Entity, now time.Time) string {
	for _, sk := range e.Subkeys {
		if sk.Sig == nil || !sk.Sig.FlagsValid || !sk.Sig.FlagEncryptCommunications {
			continue
		}
		switch {
		case sk.Revoked(now):
			return " (its encryption subkey is revoked)"
		case sk.PublicKey.KeyExpired(sk.Sig, now) || sk.Sig.SigExpired(now):
			return " (its encryption subkey has expired)"
		}
	}
	return " (it can only sign)"
}

// CheckRecipientKey reports why an ASCII-armoured public key cannot be
// used to encrypt to at now, or nil if it can. See ParseRecipient.
func CheckRecipientKey(armored string, now time.Time) error {
	_, err := ParseRecipient(armored, now)
	return err
}

// steady returns the seconds [from, until) (Unix time, as go-crypto
// compares it) around now within which every judgment of the key (At,
// Info) is the one made at now. go-crypto v1.5 compares a time only with a
// key's or signature's creation and with creation + lifetime, in whole
// seconds: PublicKey.KeyExpired (creation > now, now > creation + key
// lifetime) and Signature.SigExpired (creation > now, now > creation +
// signature lifetime), which Entity.EncryptionKey, Entity.Revoked,
// Identity.Revoked and Subkey.Revoked (through revoked; a revocation for
// a compromised key holds at any time) apply to the primary key, its
// self-signature, the subkeys and their binding signatures and every
// revocation; parsing and PrimarySelfSignature use no time. A creation at
// c changes the answer between c−1 and c, an expiry at e between e and
// e+1, so those are the steps; every signature the key carries is
// counted (certifications too), which can only narrow the interval.
// math.MinInt64 and math.MaxInt64 stand for no step before or after now.
func (r *Recipient) steady(now time.Time) (from, until int64) {
	from, until = math.MinInt64, math.MaxInt64
	t := now.Unix()
	step := func(s int64) {
		if s <= t {
			from = max(from, s)
		} else {
			until = min(until, s)
		}
	}
	lifetime := func(created time.Time, secs *uint32) {
		if secs != nil && *secs != 0 {
			step(created.Add(time.Duration(*secs)*time.Second).Unix() + 1)
		}
	}
	sig := func(key *packet.PublicKey, s *packet.Signature) {
		if s == nil {
			return
		}
		step(s.CreationTime.Unix())
		lifetime(s.CreationTime, s.SigLifetimeSecs)
		lifetime(key.CreationTime, s.KeyLifetimeSecs)
	}
	e := r.entity
	step(e.PrimaryKey.CreationTime.Unix())
	sigs := func(key *packet.PublicKey, list []*packet.Signature) {
		for _, s := range list {
			sig(key, s)
		}
	}
	sig(e.PrimaryKey, e.SelfSignature)
	sigs(e.PrimaryKey, e.Revocations)
	sigs(e.PrimaryKey, e.Signatures)
	for _, id := range e.Identities {
		sig(e.PrimaryKey, id.SelfSignature)
		sigs(e.PrimaryKey, id.Revocations)
		sigs(e.PrimaryKey, id.Signatures)
	}
	for _, sk := range e.Subkeys {
		step(sk.PublicKey.CreationTime.Unix())
		sig(sk.PublicKey, sk.Sig)
		sigs(sk.PublicKey, sk.Revocations)
	}
	return from, until
}
