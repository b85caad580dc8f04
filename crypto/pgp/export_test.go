package pgp

import "crypto/sha256"

// NewRecipientCacheOf returns a RecipientCache bounded to size keys
// instead of MaxCachedRecipients.
func NewRecipientCacheOf(size int) *RecipientCache { return &RecipientCache{size: size} }

// Cached reports whether c holds armored parsed, without making it recent.
func Cached(c *RecipientCache, armored string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys().Contains(sha256.Sum256([]byte(armored)))
}
