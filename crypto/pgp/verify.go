package pgp

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// PublicKeys is a parsed set of OpenPGP public keys that signatures are
// checked against: the agency's key, for a partner or a tool that verifies
// what Herald sent.
type PublicKeys struct{ list openpgp.EntityList }

// ReadPublicKeys parses one or more ASCII-armoured public keys.
func ReadPublicKeys(armored []byte) (*PublicKeys, error) {
	list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(armored))
	if err != nil {
		return nil, err
	}
	if len(list) == 0 {
		return nil, errors.New("no public key given")
	}
	return &PublicKeys{list: list}, nil
}

// VerifyDetached checks a detached signature (binary or ASCII-armoured,
// binary or text mode) of data, and returns the fingerprint of the key that
// made it in upper-case hex.
func (k *PublicKeys) VerifyDetached(data, sig []byte) (signerFingerprint string, err error) {
	sigReader := io.Reader(bytes.NewReader(sig))
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN")) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("read armoured signature: %w", err)
		}
		if block.Type != blockSignature {
			return "", fmt.Errorf("armour holds %q, not a signature", block.Type)
		}
		sigReader = block.Body
	}
	signer, err := openpgp.CheckDetachedSignature(k.list, bytes.NewReader(data), sigReader, nil)
	if err != nil {
		return "", fmt.Errorf("bad signature: %w", err)
	}
	return fingerprint(signer.PrimaryKey), nil
}

// VerifyDetached checks a detached signature of data against the
// ASCII-armoured public key (ReadPublicKeys, then PublicKeys.VerifyDetached).
// Partners use it, through `herald verify`, to check what Herald sent.
func VerifyDetached(publicArmored, data, sig []byte) (signerFingerprint string, err error) {
	keys, err := ReadPublicKeys(publicArmored)
	if err != nil {
		return "", fmt.Errorf("verify: read public key: %w", err)
	}
	fp, err := keys.VerifyDetached(data, sig)
	if err != nil {
		return "", fmt.Errorf("verify: %w", err)
	}
	return fp, nil
}
