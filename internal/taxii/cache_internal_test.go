package taxii

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCollectionCacheBoundsTheAlertsKept: the collections kept hold at
// most the budget's alerts together, the least recently used going
// first; one larger than the whole budget is not kept; replacing a
// collection counts out what it held.
func TestCollectionCacheBoundsTheAlertsKept(t *testing.T) {
	withItems := func(n int) *collection { return &collection{items: make([]*item, n)} }
	key := func(b byte) collectionKey { return collectionKey{record: [32]byte{b}} }
	c := newCollectionCache(32, 10)

	c.add(key(1), withItems(4))
	c.add(key(2), withItems(4))
	n, items := c.len()
	require.Equal(t, 2, n)
	require.Equal(t, 8, items)

	_, ok := c.get(key(1)) // now the most recently used
	require.True(t, ok)
	c.add(key(3), withItems(4)) // 12 > 10: key 2 goes
	_, ok = c.get(key(2))
	require.False(t, ok)
	n, items = c.len()
	require.Equal(t, 2, n)
	require.Equal(t, 8, items)

	c.add(key(1), withItems(1)) // replaced: its 4 counted out
	n, items = c.len()
	require.Equal(t, 2, n)
	require.Equal(t, 5, items)

	c.add(key(4), withItems(11)) // more than the whole budget: not kept
	_, ok = c.get(key(4))
	require.False(t, ok)
	n, items = c.len()
	require.Equal(t, 2, n)
	require.Equal(t, 5, items)

	c.remove(key(3))
	n, items = c.len()
	require.Equal(t, 1, n)
	require.Equal(t, 1, items)

	// The number of collections still bounds them.
	small := newCollectionCache(2, 100)
	for b := range byte(3) {
		small.add(key(b), withItems(1))
	}
	n, items = small.len()
	require.Equal(t, 2, n)
	require.Equal(t, 2, items)
}
