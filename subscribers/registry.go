package subscribers

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/herald-alerts/herald/alerts"
)

// Registry is the current set of subscribers, safe for concurrent use. It
// keeps an index from sector slug to subscribers so that Candidates costs
// O(matches), not O(all partners). Records are immutable once stored: Put
// replaces the pointer, never mutates it.
type Registry struct {
	mu       sync.RWMutex
	byID     map[string]*Subscriber
	bySector map[string]map[string]*Subscriber
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byID: map[string]*Subscriber{}, bySector: map[string]map[string]*Subscriber{}}
}

// Put adds or replaces a subscriber.
func (r *Registry) Put(s *Subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(s.ID)
	r.byID[s.ID] = s
	for _, sec := range s.Sectors {
		m := r.bySector[sec]
		if m == nil {
			m = map[string]*Subscriber{}
			r.bySector[sec] = m
		}
		m[s.ID] = s
	}
}

// Delete removes a subscriber; it reports whether there was one.
func (r *Registry) Delete(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removeLocked(id)
}

func (r *Registry) removeLocked(id string) bool {
	old, ok := r.byID[id]
	if !ok {
		return false
	}
	delete(r.byID, id)
	for _, sec := range old.Sectors {
		delete(r.bySector[sec], id)
		if len(r.bySector[sec]) == 0 {
			delete(r.bySector, sec)
		}
	}
	return true
}

// Get returns the subscriber with id, or nil.
func (r *Registry) Get(id string) *Subscriber {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byID[id]
}

// Len returns the number of subscribers.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byID)
}

// List returns every subscriber, sorted by id.
func (r *Registry) List() []*Subscriber {
	r.mu.RLock()
	out := make([]*Subscriber, 0, len(r.byID))
	for _, s := range r.byID {
		out = append(out, s)
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Candidates returns the subscribers an alert could reach: those sharing
// one of its sectors and those it names, each once, sorted by id. Every
// other subscriber is outside the audience by rule 2 of PRODUCT.md §3 and
// needs no evaluation. Named ids that are not registered are returned in
// missing.
func (r *Registry) Candidates(a *alerts.Alert) (subs []*Subscriber, missing []string) {
	r.mu.RLock()
	n := 0
	for _, sec := range a.Audience.Sectors {
		n += len(r.bySector[sec])
	}
	seen := make(map[string]struct{}, n+len(a.Audience.Subscribers))
	subs = make([]*Subscriber, 0, n+len(a.Audience.Subscribers))
	for _, sec := range a.Audience.Sectors {
		for id, s := range r.bySector[sec] {
			if _, dup := seen[id]; !dup {
				seen[id] = struct{}{}
				subs = append(subs, s)
			}
		}
	}
	for _, id := range a.Audience.Subscribers {
		if _, dup := seen[id]; dup {
			continue
		}
		if s, ok := r.byID[id]; ok {
			seen[id] = struct{}{}
			subs = append(subs, s)
		} else if !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	r.mu.RUnlock()
	slices.SortFunc(subs, func(x, y *Subscriber) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	return subs, missing
}

// Apply folds one record of the compacted subscribers topic into the
// registry: an empty value (a tombstone) deletes key; anything else must be
// a subscriber record whose id is key.
func (r *Registry) Apply(key, value []byte) error {
	if len(value) == 0 {
		r.Delete(string(key))
		return nil
	}
	s, err := Decode(value)
	if err != nil {
		return err
	}
	if s.ID != string(key) {
		return fmt.Errorf("subscriber record %q is stored under key %q", s.ID, key)
	}
	s.Normalize()
	r.Put(s)
	return nil
}
