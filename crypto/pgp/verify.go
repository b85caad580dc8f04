package pgp

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
)

// VerifyDetached checks a detached signature (binary or ASCII-armoured,
// binary or text mode) of data against the ASCII-armoured public key, and
// returns the fingerprint of the key that made it in upper-case hex.
// Partners use it, through `herald verify`, to check what Herald sent.
func VerifyDetached(publicArmored, data, sig []byte) (signerFingerprint string, err error) {
	keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(publicArmored))
	if err != nil {
		return "", fmt.Errorf("verify: read public key: %w", err)
	}
	if len(keys) == 0 {
		return "", errors.New("verify: no public key given")
	}
	sigReader := io.Reader(bytes.NewReader(sig))
	if bytes.HasPrefix(bytes.TrimSpace(sig), []byte("-----BEGIN")) {
		block, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return "", fmt.Errorf("verify: read armoured signature: %w", err)
		}
		if block.Type != blockSignature {
			return "", fmt.Errorf("verify: armour holds %q, not a signature", block.Type)
		}
		sigReader = block.Body
	}
	signer, err := openpgp.CheckDetachedSignature(keys, bytes.NewReader(data), sigReader, nil)
	if err != nil {
		return "", fmt.Errorf("verify: bad signature: %w", err)
	}
	return fingerprint(signer.PrimaryKey), nil
}
