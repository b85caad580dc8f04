package pgp_test

import (
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
