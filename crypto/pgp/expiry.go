package pgp

import (
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// KeyInfo is what Herald tells a partner, and its administrators, about a
// public key it holds: which key it is and until when it can be encrypted
// to.
type KeyInfo struct {
	// Fingerprint is the primary key's fingerprint in upper-case hex.
	Fingerprint string
	// Expires is when the key stops being usable for encryption: the
	// earliest of the primary key's expiry, its self-signature's expiry
	// and the expiry of the encryption subkey valid at the time asked
	// (or, when none is valid then, the primary key's expiry). The zero
	// time means the key does not expire.
	Expires time.Time
}

// InspectKey parses an ASCII-armoured public key and returns its
// fingerprint and expiry as judged at now. It checks only that the key
// parses (CheckKeyParses): a key already expired or revoked is described
// too, so that administrators can list it; whether it can be used is
// CheckRecipientKey's question.
func InspectKey(armored string, now time.Time) (KeyInfo, error) {
	e, err := readPublic(armored)
	if err != nil {
		return KeyInfo{}, err
	}
	return describe(e, now), nil
}

// Info describes the parsed key at now as InspectKey does, whether or not
// it can be used at now (At).
func (r *Recipient) Info(now time.Time) KeyInfo { return describe(r.entity, now) }

// describe returns e's fingerprint and its expiry as judged at now.
func describe(e *openpgp.Entity, now time.Time) KeyInfo {
	info := KeyInfo{Fingerprint: fingerprint(e.PrimaryKey), Expires: expiry(e)}
	earliest := func(t time.Time) {
		if !t.IsZero() && (info.Expires.IsZero() || t.Before(info.Expires)) {
			info.Expires = t
		}
	}
	if sig, _ := e.PrimarySelfSignature(); sig != nil {
		earliest(sigExpiry(sig))
	}
	if k, ok := e.EncryptionKey(now); ok && k.SelfSignature != nil && k.PublicKey != e.PrimaryKey {
		if lt := k.SelfSignature.KeyLifetimeSecs; lt != nil && *lt != 0 {
			earliest(k.PublicKey.CreationTime.Add(time.Duration(*lt) * time.Second))
		}
		earliest(sigExpiry(k.SelfSignature))
	}
	return info
}

// sigExpiry returns when sig expires, or the zero time.
func sigExpiry(sig *packet.Signature) time.Time {
	if sig.SigLifetimeSecs == nil || *sig.SigLifetimeSecs == 0 {
		return time.Time{}
	}
	return sig.CreationTime.Add(time.Duration(*sig.SigLifetimeSecs) * time.Second)
}
