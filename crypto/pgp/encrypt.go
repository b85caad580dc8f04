package pgp

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// sealCipher is the session cipher. AES-256 is supported by every
// implementation Herald's partners use (GnuPG, Sequoia, OpenPGP.js) and is
// preferred by the keys Herald generates.
const sealCipher = packet.CipherAES256

// Sealed is a payload encrypted once under a random session key: a
// Symmetrically Encrypted Integrity Protected Data packet (version 1,
// with MDC, no AEAD, no compression). Each recipient's message is a
// Public-Key Encrypted Session Key packet for that recipient followed by
// the same data packet, so the payload is encrypted once however many
// recipients there are and, unlike openpgp.EncryptSplit, recipients need
// not be known in advance. Recipients each see only their own key packet.
//
// A Sealed keeps the session key in memory until it is garbage collected;
// hold it no longer than the payload it protects.
type Sealed struct {
	sessionKey []byte
	data       []byte
}

// Seal encrypts plaintext once (as a binary literal data packet).
func Seal(plaintext []byte) (*Sealed, error) {
	key := make([]byte, sealCipher.KeySize())
	if _, err := io.ReadFull(rand.Reader, key); err != nil {
		return nil, fmt.Errorf("seal: session key: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(plaintext) + 128) // literal and SEIPD headers, IV, MDC
	enc, err := packet.SerializeSymmetricallyEncrypted(&buf, sealCipher, false, packet.CipherSuite{}, key, nil)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	lit, err := packet.SerializeLiteral(enc, true, "", 0)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if _, err := lit.Write(plaintext); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	if err := lit.Close(); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealed{sessionKey: key, data: buf.Bytes()}, nil
}

// For returns the ASCII-armoured OpenPGP message (CRLF line endings) for
// one recipient: its key packet in front of the shared encrypted data.
func (s *Sealed) For(r *Recipient) ([]byte, error) {
	var msg bytes.Buffer
	msg.Grow(len(s.data) + 1024)
	if err := packet.SerializeEncryptedKeyAEAD(&msg, r.key.PublicKey, sealCipher, false, s.sessionKey, nil); err != nil {
		return nil, fmt.Errorf("encrypt to %s: %w", r.Fingerprint(), err)
	}
	msg.Write(s.data)
	var out bytes.Buffer
	out.Grow(msg.Len()*4/3 + 256)
	w, err := armor.Encode(&out, blockMessage, nil)
	if err != nil {
		return nil, fmt.Errorf("encrypt: armor: %w", err)
	}
	w.Write(msg.Bytes())
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypt: armor: %w", err)
	}
	out.WriteByte('\n')
	return crlf(out.Bytes()), nil
}

// EncryptTo encrypts plaintext for one recipient under a fresh session
// key and returns the ASCII-armoured OpenPGP message (CRLF line endings):
// one key packet, then the encrypted data. Use it when every recipient's
// plaintext differs; Seal and For share one encryption among recipients of
// the same plaintext.
func EncryptTo(r *Recipient, plaintext []byte) ([]byte, error) {
	s, err := Seal(plaintext)
	if err != nil {
		return nil, err
	}
	return s.For(r)
}

// Decrypt decrypts an OpenPGP message (ASCII-armoured or binary) with the
// ASCII-armoured secret key, unlocking it with passphrase if it is
// protected, and returns the plaintext. The integrity check (MDC or AEAD)
// must pass. Partners use it through `herald verify email`.
func Decrypt(secretArmored, passphrase, message []byte) ([]byte, error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(secretArmored))
	if err != nil {
		return nil, fmt.Errorf("decrypt: read secret key: %w", err)
	}
	for _, e := range keys {
		if e.PrivateKey == nil {
			return nil, fmt.Errorf("decrypt: key %s: %w", fingerprint(e.PrimaryKey), ErrNotPrivateKey)
		}
		for _, k := range keys.DecryptionKeys() {
			if k.PrivateKey != nil && k.PrivateKey.Encrypted {
				if len(passphrase) == 0 {
					return nil, fmt.Errorf("decrypt: %w", ErrPassphraseRequired)
				}
				if err := k.PrivateKey.Decrypt(passphrase); err != nil {
					return nil, fmt.Errorf("decrypt: %w", ErrWrongPassphrase)
				}
			}
		}
	}
	body := io.Reader(bytes.NewReader(message))
	if bytes.HasPrefix(bytes.TrimSpace(message), []byte("-----BEGIN")) {
		block, err := armor.Decode(bytes.NewReader(message))
		if err != nil {
			return nil, fmt.Errorf("decrypt: read armour: %w", err)
		}
		if block.Type != blockMessage {
			return nil, fmt.Errorf("decrypt: armour holds %q, not a message", block.Type)
		}
		body = block.Body
	}
	md, err := openpgp.ReadMessage(body, keys, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	if !md.IsEncrypted {
		return nil, errors.New("decrypt: the message is not encrypted")
	}
	plain, err := io.ReadAll(md.UnverifiedBody)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return plain, nil
}
