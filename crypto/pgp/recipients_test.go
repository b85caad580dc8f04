package pgp_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/crypto/pgp"
)

// TestRecipientCacheJudgesEachUse: a usable key is cached parsed but
// judged at the time asked, so it is refused once it has expired and
// still usable when asked about an earlier time; a key created in the
// future (the owner's clock ahead) is refused until it is valid, and
// usable from then on; a key that does not parse is refused every time.
func TestRecipientCacheJudgesEachUse(t *testing.T) {
	now := time.Now()
	var c pgp.RecipientCache
	key := expiringKey(t, now.Add(-time.Hour), time.Hour+2*time.Minute, time.Hour+2*time.Minute)
	r, err := c.Recipient(key, now)
	require.NoError(t, err)
	require.NotNil(t, r)
	_, err = c.Recipient(key, now.Add(3*time.Minute))
	require.Error(t, err, "expired a minute ago")
	_, err = c.Recipient(key, now.Add(time.Minute))
	require.NoError(t, err, "and usable before")

	future := expiringKey(t, now.Add(time.Minute), 24*time.Hour, 24*time.Hour)
	_, err = c.Recipient(future, now)
	require.Error(t, err, "not valid yet")
	_, err = c.Recipient(future, now.Add(2*time.Minute))
	require.NoError(t, err, "valid from its creation on: judged at the time asked")

	for range 2 {
		_, err = c.Recipient("not a key", now)
		require.Error(t, err)
	}
}

// TestRecipientCacheKeepsTheRecentlyUsed: a full cache forgets the key
// used least recently, and only that one, so an audience a little larger
// than the bound re-parses a few keys, not all of them.
func TestRecipientCacheKeepsTheRecentlyUsed(t *testing.T) {
	now := time.Now()
	keys := make([]string, 4)
	for i := range keys {
		keys[i] = expiringKey(t, now.Add(-time.Hour), 0, 0)
	}
	c := pgp.NewRecipientCacheOf(3)
	for _, k := range keys[:3] {
		_, err := c.Recipient(k, now)
		require.NoError(t, err)
	}
	_, err := c.Recipient(keys[0], now) // the first is used again
	require.NoError(t, err)
	_, err = c.Recipient(keys[3], now) // a fourth: one has to go
	require.NoError(t, err)
	require.Equal(t, 3, c.Len())
	for i, want := range []bool{true, false, true, true} {
		require.Equal(t, want, pgp.Cached(c, keys[i]), "key %d", i)
	}
}

// BenchmarkRecipientCacheAudience is what the policy pays for the keys of
// one alert's audience of 1,000 partners, each with its own key, asked
// for in the same order every time: within the bound (every key cached)
// and with a bound a tenth smaller than the audience, where an LRU finds
// none cached and parses every key again.
//
//	go test -run '^$' -bench RecipientCacheAudience -benchmem ./crypto/pgp/
func BenchmarkRecipientCacheAudience(b *testing.B) {
	now := time.Now()
	keys := make([]string, 1000)
	for i := range keys {
		_, pub, err := pgp.GenerateKey("Partner", fmt.Sprintf("soc%d@partner.example", i), pgp.AlgoEd25519, now.Add(-time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = string(pub)
	}
	for _, bc := range []struct {
		name string
		c    *pgp.RecipientCache
	}{
		{"within-bound", &pgp.RecipientCache{}},
		{"beyond-bound", pgp.NewRecipientCacheOf(len(keys) * 9 / 10)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				for _, k := range keys {
					if _, err := bc.c.Recipient(k, now); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(keys)), "ns/key")
		})
	}
}
