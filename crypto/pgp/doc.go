// Package pgp holds Herald's OpenPGP operations: generating and loading the
// agency signing key, detached signatures (binary for the webhook
// herald-pgp-signature header, text-mode armoured for RFC 3156 PGP/MIME),
// checking partners' public keys, and encrypting one payload once for any
// number of recipients.
//
// It implements the parts of OpenPGP (RFC 4880, and RFC 9580 where GnuPG
// 2.2 and Sequoia 0.27 agree) that Herald needs, on
// github.com/ProtonMail/go-crypto. Keys are version 4 only: EdDSA over
// Ed25519 with a Curve25519 ECDH subkey by default, or RSA-3072. Version 6
// keys, X25519 (algorithm 25) recipients and AEAD encryption are not used
// because GnuPG 2.2 cannot read them.
//
// Partners' keys are judged (ParseRecipient) far more often than they
// change, so a process keeps a verdict per key (RecipientCache: usable or
// why not, fingerprint, expiry, and the interval in which go-crypto's
// time checks cannot change them), about 0.3 KiB each, and keeps parsed
// (6.8 to 8.8 KiB each) only the few keys it encrypts to (ParsedKeys).
//
// Encryption follows RFC 4880 §5.1 and §5.13: a session key encrypts the
// payload once into a Symmetrically Encrypted Integrity Protected Data
// packet (with MDC); each recipient's message is its own Public-Key
// Encrypted Session Key packet followed by that same packet (see Sealed).
package pgp
