package pgp

import (
	"crypto/sha256"
	"time"
)

// NewRecipientCacheOf returns a RecipientCache bounded to size keys
// instead of MaxCachedRecipients.
func NewRecipientCacheOf(size int) *RecipientCache { return &RecipientCache{size: size} }

// Cached reports whether c holds a verdict on armored, without making it
// recent.
func Cached(c *RecipientCache, armored string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.verdicts().Contains(sha256.Sum256([]byte(armored)))
}

// Steady returns the seconds [from, until) in which the judgment of the
// key of armored made at now holds (Recipient.steady).
func Steady(armored string, now time.Time) (from, until int64, err error) {
	r, err := parseKey(armored)
	if err != nil {
		return 0, 0, err
	}
	from, until = r.steady(now)
	return from, until, nil
}
