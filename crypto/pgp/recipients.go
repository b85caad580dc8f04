package pgp

import (
	"cmp"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MaxCachedRecipients bounds a RecipientCache: when it holds that many
// keys it forgets the one used least recently.
//
// The bound is set to hold every key of the largest audience Herald is
// measured with (docs/BENCHMARKS.md: 100,000 partners; PRODUCT.md sets no
// limit), with a third more for partners with keys for several
// addresses and for keys replaced but not yet forgotten. The policy asks
// for an alert's candidates in the same order (by partner id) every
// time, so an audience with more keys than the bound would find none
// cached (each would be forgotten just before its turn
// came again) and re-parse them all for every alert: about 0.15 ms for an
// Ed25519 key and 0.5 ms for an RSA-3072 one, 20 to 60 CPU seconds per
// alert at this size. A parsed key takes about 6.5 KiB of heap
// (Ed25519 with a Curve25519 subkey) to 8.5 KiB (RSA-3072), measured, and
// the LRU's entry and map slot about 0.2 KiB more, so a full cache holds
// about 0.85 to 1.1 GiB; it grows only with the keys a process is asked
// about, and the registry already holds their armour (0.75 to 2.5 KiB
// each). BenchmarkRecipientCacheAudience measures a pass over an audience
// within the bound and one just beyond it.
const MaxCachedRecipients = 1 << 17 // 131,072

// RecipientCache keeps partners' keys parsed, by the SHA-256 of their
// armour (so a replaced key is another entry): parsing verifies the key's
// self-signatures, by far the dominant cost of judging or encrypting to
// it. What parsing finds does not change with time, so it is kept, a key
// that does not parse included; whether a parsed key can be encrypted to
// is judged again at every use (Recipient.At), so its expiry, revocation
// or coming into force takes effect at once. It holds at most
// MaxCachedRecipients keys, forgetting the least recently used (a key
// replaced in its partner's record is the first to go). It is safe for
// concurrent use; the zero value is ready. One cache serves a process's
// policy, its email notifier and its key-expiry watch.
type RecipientCache struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, parsedKey]
	size int // the bound; 0 means MaxCachedRecipients
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
	p, ok := c.keys().Get(h)
	c.mu.Unlock()
	if !ok {
		// Parsed without the lock: other keys are served meanwhile. Two
		// callers that miss the same key at once both parse it.
		p.r, p.err = parseKey(armored)
		c.mu.Lock()
		c.keys().Add(h, p)
		c.mu.Unlock()
	}
	return p.r, p.err
}

// Len returns how many keys c holds parsed (or found not to parse).
func (c *RecipientCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys().Len()
}

// keys returns the LRU, made on first use. Called with c.mu held.
func (c *RecipientCache) keys() *simplelru.LRU[[sha256.Size]byte, parsedKey] {
	if c.lru == nil {
		l, err := simplelru.NewLRU[[sha256.Size]byte, parsedKey](max(cmp.Or(c.size, MaxCachedRecipients), 1), nil)
		if err != nil {
			panic(err) // only for a size below one
		}
		c.lru = l
	}
	return c.lru
}
