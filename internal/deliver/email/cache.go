package email

import (
	"container/list"
	"context"
	"sync"

	"github.com/herald-alerts/herald/crypto/pgp"
)

// artefact is what every recipient of one alert (in one format) shares:
// the signed entity, signed once, and, on first need, that entity
// encrypted once under a session key.
type artefact struct {
	ready  chan struct{} // closed when entity or err is set
	entity []byte
	err    error

	sealOnce sync.Once
	sealed   *pgp.Sealed
	sealErr  error
}

// seal encrypts the entity once, however many goroutines ask.
func (a *artefact) seal() (*pgp.Sealed, error) {
	a.sealOnce.Do(func() { a.sealed, a.sealErr = pgp.Seal(a.entity) })
	return a.sealed, a.sealErr
}

// artefacts is a small LRU of artefacts by alert id and format. Concurrent
// requests for a missing key wait for one build (single flight), so
// any number of jobs for one alert cause one signature. A failed build is
// forgotten, so the next job tries again.
type artefacts struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *cacheEntry, most recent first
	items map[string]*list.Element
}

type cacheEntry struct {
	key string
	a   *artefact
}

func newArtefacts(max int) *artefacts {
	return &artefacts{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

// get returns the artefact for key, building it with build if absent.
func (c *artefacts) get(ctx context.Context, key string, build func() ([]byte, error)) (*artefact, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		a := el.Value.(*cacheEntry).a
		c.mu.Unlock()
		select {
		case <-a.ready:
			return a, a.err
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	a := &artefact{ready: make(chan struct{})}
	el := c.ll.PushFront(&cacheEntry{key: key, a: a})
	c.items[key] = el
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
	c.mu.Unlock()

	a.entity, a.err = build()
	close(a.ready)
	if a.err != nil {
		c.mu.Lock()
		if cur, ok := c.items[key]; ok && cur == el {
			c.ll.Remove(el)
			delete(c.items, key)
		}
		c.mu.Unlock()
	}
	return a, a.err
}
