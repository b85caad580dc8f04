package taxii

import (
	"sync"

	lru "github.com/hashicorp/golang-lru/v2/simplelru"
)

// collectionCache keeps partners' collections, least recently used out
// first, bounded twice: by their number and by the alerts they hold
// together. A collection holds every alert a partner may pull, with its
// objects once made, so a few partners with long histories could
// otherwise keep most of what was ever rendered; one holding more than
// the whole budget is not kept at all (it is made again per request).
type collectionCache struct {
	mu     sync.Mutex
	lru    *lru.LRU[collectionKey, *collection]
	items  int // alerts held by the collections kept
	budget int // at most this many
}

func newCollectionCache(size, budget int) *collectionCache {
	c := &collectionCache{budget: budget}
	l, err := lru.NewLRU(max(size, 1), func(_ collectionKey, v *collection) { c.items -= len(v.items) })
	if err != nil {
		panic(err) // only for a size below one
	}
	c.lru = l
	return c
}

// get returns the collection kept under key.
func (c *collectionCache) get(key collectionKey) (*collection, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(key)
}

// add keeps v under key, replacing what key held, and drops the least
// recently used collections until the alerts kept fit the budget.
func (c *collectionCache) add(key collectionKey, v *collection) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key) // the eviction callback counts out what it held
	if len(v.items) > c.budget {
		return
	}
	c.lru.Add(key, v)
	c.items += len(v.items)
	for c.items > c.budget {
		c.lru.RemoveOldest()
	}
}

// remove drops what key holds.
func (c *collectionCache) remove(key collectionKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lru.Remove(key)
}

// len returns the number of collections kept and the alerts they hold.
func (c *collectionCache) len() (collections, items int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len(), c.items
}
