package pgp

import (
	"crypto/sha256"
	"sync"
	"time"
)

// MaxCachedRecipients bounds a RecipientCache; when it is full it starts
// afresh.
const MaxCachedRecipients = 20_000

// refusalTTL is how long a RecipientCache trusts that a key it could not
// use is still unusable: a key not yet valid (created in the future, by
// the owner's skewed clock) becomes usable, but a key that does not parse
// or is revoked never does, and parsing one again for every alert is what
// the cache saves.
const refusalTTL = 5 * time.Minute

// RecipientCache keeps partners' keys parsed, by the SHA-256 of their
// armour (so a replaced key is another entry): parsing verifies the key's
// self-signatures, by far the dominant cost of judging or encrypting to
// it. A cached key is judged again at every use (Recipient.At), so its
// expiry or revocation takes effect at once. It is safe for concurrent
// use; the zero value is ready.
type RecipientCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]cachedRecipient
}

type cachedRecipient struct {
	r   *Recipient // nil when refused
	err error
	at  time.Time // when refused
}

// Recipient returns the key of armored as usable at now, or why it is
// not (ParseRecipient).
func (c *RecipientCache) Recipient(armored string, now time.Time) (*Recipient, error) {
	h := sha256.Sum256([]byte(armored))
	c.mu.Lock()
	e, ok := c.m[h]
	c.mu.Unlock()
	switch {
	case ok && e.r != nil:
		return e.r.At(now)
	case ok && !now.Before(e.at) && now.Sub(e.at) < refusalTTL:
		return nil, e.err
	}
	r, err := ParseRecipient(armored, now)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= MaxCachedRecipients {
		c.m = make(map[[sha256.Size]byte]cachedRecipient)
	}
	c.m[h] = cachedRecipient{r: r, err: err, at: now}
	c.mu.Unlock()
	return r, err
}
