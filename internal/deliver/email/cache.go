package email

import (
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"

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

// maxRecipients bounds the parsed key cache; when full it starts afresh.
const maxRecipients = 20_000

// recipients caches parsed partner keys by the hash of their armour.
// Parsing verifies the key's self-signatures, the dominant cost of
// encrypting to a recipient; a cached key is judged again at every use
// (Recipient.At), so expiry and revocation take effect at once, and a key
// that is replaced has a new hash.
type recipients struct {
	mu sync.Mutex
	m  map[[32]byte]*pgp.Recipient
}

func (c *recipients) recipient(armored string, now time.Time) (*pgp.Recipient, error) {
	h := sha256.Sum256([]byte(armored))
	c.mu.Lock()
	r, ok := c.m[h]
	c.mu.Unlock()
	if !ok {
		var err error
		if r, err = pgp.ParseRecipient(armored, now); err != nil {
			return nil, err
		}
		c.mu.Lock()
		if len(c.m) >= maxRecipients {
			clear(c.m)
		}
		c.m[h] = r
		c.mu.Unlock()
	}
	return r.At(now)
}
