package pgp

import (
	"cmp"
	"crypto/sha256"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MaxCachedRecipients bounds a RecipientCache: when it holds that many
// keys' verdicts it forgets the one used least recently.
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
// alert at this size. A verdict takes about 0.3 KiB of heap with its LRU
// entry and map slot (307 B measured, Ed25519 or RSA-3072), where a parsed
// key took 6.8 KiB (Ed25519 with a Curve25519 subkey) to 8.8 KiB
// (RSA-3072) (BenchmarkKeyHeap, docs/BENCHMARKS.md "Partners' keys: a
// verdict per key"): a full cache holds about 40 MiB, not 0.85 to 1.1 GiB; it grows only with the keys a
// process is asked about, and the registry already holds their armour
// (0.75 to 2.5 KiB each). BenchmarkRecipientCacheAudience measures a pass
// over an audience within the bound and one just beyond it.
const MaxCachedRecipients = 1 << 17 // 131,072

// Verdict is what judging a key at a time finds: which key it is and
// until when it can be encrypted to (Info), and whether it can be at that
// time (Err).
type Verdict struct {
	// Info describes the key at the time asked (Recipient.Info); it is
	// zero when the key does not parse.
	Info KeyInfo
	// Err says why the key cannot be encrypted to at the time asked, as
	// ParseRecipient says it; nil when it can.
	Err error
}

// Parses reports whether the key parsed (whether or not it can be used).
func (v Verdict) Parses() bool { return v.Info.Fingerprint != "" }

// RecipientCache keeps the verdicts on partners' keys (Verdict), by the
// SHA-256 of their armour (so a replaced key is another entry), not the
// keys: parsing verifies the key's self-signatures, by far the dominant
// cost of judging it, and a parsed key is 15 to 20 times the size of what
// the policy and the key-expiry watch need to know about it. A key is
// parsed once, judged (ParseRecipient's rules: At, Info) and dropped; the
// verdict is kept with the interval of time in which the key's judgment
// cannot change (every key's and signature's creation and expiry outside
// it: Recipient.steady), so a verdict asked for at a time outside it
// (later, or earlier: an alert's time) parses the key again and replaces
// it, and an expiry, revocation or coming into force takes effect at
// once. A key that does not parse is refused at any time. It holds at
// most MaxCachedRecipients verdicts, forgetting the least recently used
// (a key replaced in its partner's record is the first to go). It is safe
// for concurrent use; the zero value is ready. One cache serves a
// process's policy, its key-expiry watch and its email notifier, which
// keeps the few keys it encrypts to parsed in a ParsedKeys of its own.
type RecipientCache struct {
	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, judged]
	size int // the bound; 0 means MaxCachedRecipients
}

// judged is a verdict and the seconds [from, until) (Unix time) in which
// it holds.
type judged struct {
	v           Verdict
	from, until int64
}

// Check reports why the key of armored cannot be encrypted to at now, or
// nil if it can (CheckRecipientKey).
func (c *RecipientCache) Check(armored string, now time.Time) error {
	return c.Judge(armored, now).Err
}

// Judge returns the verdict on the key of armored at now: the one cached
// when it holds at now, else a new one, judged on the key parsed again.
func (c *RecipientCache) Judge(armored string, now time.Time) Verdict {
	return c.judgeDigest(sha256.Sum256([]byte(armored)), armored, now)
}

// judgeDigest is Judge for armored whose SHA-256 is h.
func (c *RecipientCache) judgeDigest(h [sha256.Size]byte, armored string, now time.Time) Verdict {
	t := now.Unix()
	c.mu.Lock()
	j, ok := c.verdicts().Get(h)
	c.mu.Unlock()
	if ok && j.from <= t && t < j.until {
		return j.v
	}
	// Judged without the lock: other keys are served meanwhile. Two
	// callers that miss the same key at once both parse it.
	j = judge(armored, now)
	c.mu.Lock()
	c.verdicts().Add(h, j)
	c.mu.Unlock()
	return j.v
}

// judge parses armored and judges it at now, keeping nothing of the key
// but the verdict.
func judge(armored string, now time.Time) judged {
	r, err := parseKey(armored)
	if err != nil {
		return judged{v: Verdict{Err: err}, from: math.MinInt64, until: math.MaxInt64}
	}
	_, err = r.At(now)
	from, until := r.steady(now)
	return judged{v: Verdict{Info: r.Info(now), Err: err}, from: from, until: until}
}

// Len returns how many verdicts c holds.
func (c *RecipientCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdicts().Len()
}

// verdicts returns the LRU, made on first use. Called with c.mu held.
func (c *RecipientCache) verdicts() *simplelru.LRU[[sha256.Size]byte, judged] {
	if c.lru == nil {
		c.lru = newLRU[judged](cmp.Or(c.size, MaxCachedRecipients))
	}
	return c.lru
}

// MaxParsedKeys bounds a ParsedKeys. Only the email notifier keeps keys
// parsed, to encrypt to them, and it uses a key in bursts: an alert's
// messages to one partner's addresses (often one key), sent within
// moments of each other, and their retries; the policy's pass over an
// audience, which would want every key at once, needs verdicts only. 2,048
// keys cover the deliveries in flight of a deliver process many times
// over (delivery.concurrency, 64 by default) and take 14 to 18 MiB at
// most (6.8 to 8.8 KiB a key); a key forgotten is parsed again, 0.15 to
// 0.5 ms.
const MaxParsedKeys = 2048

// ParsedKeys keeps the keys a process encrypts to parsed, by the SHA-256
// of their armour, at most MaxParsedKeys of them, forgetting the least
// recently used. It asks Verdicts first, so a key that cannot be
// encrypted to is refused without being parsed or kept. It is safe for
// concurrent use; the zero value is ready, with verdicts of its own.
type ParsedKeys struct {
	// Verdicts judges a key before it is parsed: the process's
	// RecipientCache, which the policy uses too; nil means one of its own.
	Verdicts *RecipientCache

	mu   sync.Mutex
	lru  *simplelru.LRU[[sha256.Size]byte, *Recipient]
	size int // the bound; 0 means MaxParsedKeys
	once sync.Once
	own  *RecipientCache // Verdicts, or one of its own when it is nil
}

// Judge returns the verdict on the key of armored at now (Verdicts'),
// without keeping the key parsed: what a notice says of a key it does not
// encrypt to.
func (c *ParsedKeys) Judge(armored string, now time.Time) Verdict {
	return c.verdicts().Judge(armored, now)
}

// verdicts returns c.Verdicts, or, when it is nil, a cache of its own made
// on first use; the exported field is never written.
func (c *ParsedKeys) verdicts() *RecipientCache {
	c.once.Do(func() {
		c.own = c.Verdicts
		if c.own == nil {
			c.own = &RecipientCache{}
		}
	})
	return c.own
}

// Recipient returns the key of armored as usable at now, or why it is
// not (ParseRecipient).
func (c *ParsedKeys) Recipient(armored string, now time.Time) (*Recipient, error) {
	h := sha256.Sum256([]byte(armored)) // the verdicts' key too
	if err := c.verdicts().judgeDigest(h, armored, now).Err; err != nil {
		return nil, err
	}
	c.mu.Lock()
	r, ok := c.keys().Get(h)
	c.mu.Unlock()
	if !ok {
		var err error
		if r, err = parseKey(armored); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.keys().Add(h, r)
		c.mu.Unlock()
	}
	return r.At(now)
}

// Len returns how many keys c holds parsed.
func (c *ParsedKeys) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys().Len()
}

// keys returns the LRU, made on first use. Called with c.mu held.
func (c *ParsedKeys) keys() *simplelru.LRU[[sha256.Size]byte, *Recipient] {
	if c.lru == nil {
		c.lru = newLRU[*Recipient](cmp.Or(c.size, MaxParsedKeys))
	}
	return c.lru
}

// newLRU returns an LRU of at most size entries (at least one) by digest.
func newLRU[V any](size int) *simplelru.LRU[[sha256.Size]byte, V] {
	l, err := simplelru.NewLRU[[sha256.Size]byte, V](max(size, 1), nil)
	if err != nil {
		panic(err) // only for a size below one
	}
	return l
}
