package email

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"sync"

	"github.com/herald-alerts/herald/internal/delivery"
)

// contentKey returns the key under which the rendering of job is cached:
// a SHA-256 over everything the rendering depends on, each part
// length-prefixed: the exact alert content (alertBytes), the mode, the
// alerts the target holds, the issuer name and, for a key notice, what it
// says of the target's key (ks). Never the alert id alone:
// two different alerts published under one id must never share a
// rendering (issue 10).
func contentKey(job *delivery.Job, issuer string, ks keyState) ([32]byte, error) {
	alert, err := alertBytes(job)
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field(alert)
	field([]byte(job.Mode))
	field([]byte(issuer))
	field(binary.BigEndian.AppendUint64(nil, uint64(len(job.Held))))
	for _, held := range job.Held {
		field([]byte(held.ID))
		field([]byte(held.Title))
	}
	field([]byte(ks.fingerprint))
	field([]byte(ks.why)) // usable follows from the two
	var key [32]byte
	h.Sum(key[:0])
	return key, nil
}

// alertBytes returns the bytes that identify the content of job's alert:
// the SHA-256 of the alert bytes the job carries (set by
// delivery.DecodeJob), or, for a job built in memory, its JSON encoding.
func alertBytes(job *delivery.Job) ([]byte, error) {
	if job.AlertDigest != ([32]byte{}) {
		return job.AlertDigest[:], nil
	}
	return json.Marshal(job.Alert)
}

// rendering is one cached content, ready when ready is closed.
type rendering struct {
	ready chan struct{}
	c     *content
	err   error
}

// renderings is a small LRU of contents by contentKey. Concurrent requests
// for a missing key wait for one build (single flight), so any number of
// jobs for the same content cause one rendering. A failed build is
// forgotten, so the next job tries again.
type renderings struct {
	mu    sync.Mutex
	max   int
	ll    *list.List // of *cacheEntry, most recent first
	items map[[32]byte]*list.Element
}

type cacheEntry struct {
	key [32]byte
	r   *rendering
}

func newRenderings(max int) *renderings {
	return &renderings{max: max, ll: list.New(), items: map[[32]byte]*list.Element{}}
}

// get returns the content for key, building it with build if absent.
func (c *renderings) get(ctx context.Context, key [32]byte, build func() (*content, error)) (*content, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		c.ll.MoveToFront(el)
		r := el.Value.(*cacheEntry).r
		c.mu.Unlock()
		select {
		case <-r.ready:
			return r.c, r.err
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	r := &rendering{ready: make(chan struct{})}
	el := c.ll.PushFront(&cacheEntry{key: key, r: r})
	c.items[key] = el
	for c.ll.Len() > c.max {
		old := c.ll.Back()
		c.ll.Remove(old)
		delete(c.items, old.Value.(*cacheEntry).key)
	}
	c.mu.Unlock()

	r.c, r.err = build()
	close(r.ready)
	if r.err != nil {
		c.mu.Lock()
		if cur, ok := c.items[key]; ok && cur == el {
			c.ll.Remove(el)
			delete(c.items, key)
		}
		c.mu.Unlock()
	}
	return r.c, r.err
}
