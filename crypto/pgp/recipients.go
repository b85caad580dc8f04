package pgp

import (
	"crypto/sha256"
	"sync"
	"time"
)

// MaxCachedRecipients bounds a RecipientCache; when it is full it starts
// afresh.
const MaxCachedRecipients = 20_000

// RecipientCache keeps partners' keys parsed, by the SHA-256 of their
// armour (so a replaced key is another entry): parsing verifies the key's
// self-signatures, by far the dominant cost of judging or encrypting to
// it. What parsing finds does not change with time, so it is kept, a key
// that does not parse included; whether a parsed key can be encrypted to
// is judged again at every use (Recipient.At), so its expiry, revocation
// or coming into force takes effect at once. It is safe for concurrent
// use; the zero value is ready. One cache serves a process's policy and
// its email notifier.
type RecipientCache struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]parsedKey
}

type parsedKey struct {
	r   *Recipient // nil when the key does not parse
	err error
}

// Recipient returns the key of armored as usable at now, or why it is
// not (ParseRecipient).
func (c *RecipientCache) Recipient(armored string, now time.Time) (*Recipient, error) {
	r, err := c.Parsed(armored)
	if err != nil {
		return nil, err
	}
	return r.At(now)
}

// Parsed returns the key of armored as parsed, or why it does not parse,
// without judging it at any time: judge it (At) before using it, at every
// use; Info describes it.
func (c *RecipientCache) Parsed(armored string) (*Recipient, error) {
	h := sha256.Sum256([]byte(armored))
	c.mu.Lock()
	p, ok := c.m[h]
	c.mu.Unlock()
	if !ok {
		p.r, p.err = parseKey(armored)
		c.mu.Lock()
		if c.m == nil || len(c.m) >= MaxCachedRecipients {
			c.m = make(map[[sha256.Size]byte]parsedKey)
		}
		c.m[h] = p
		c.mu.Unlock()
	}
	return p.r, p.err
}

// Len returns how many keys c holds parsed (or found not to parse).
func (c *RecipientCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
