package subscribers

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/herald-alerts/herald/alerts"
)

// Registry is the current set of subscribers, safe for concurrent use. It
// keeps an index from sector slug to subscribers so that Candidates costs
// O(matches), not O(all partners).
//
// It holds two kinds of record, as the compacted subscribers topic does:
// each partner's record as an administrator wrote it, and the state Herald
// records for single endpoints (EndpointState, under
// EndpointKey: a webhook that answered 410 Gone is disabled). Get,
// List and Candidates return the effective record: the partner's record
// with its endpoint states applied on top (a webhook is disabled when the
// record says so or when its latest state does). Neither kind ever
// rewrites the other, so an administrator's change and a worker's 410
// both stand whatever their order.
//
// Records are immutable once stored: Put stores the caller's pointer and
// never mutates it, and an effective record that differs from the stored
// one is a new copy, rebuilt whenever the record or one of its endpoint
// states changes. A record returned earlier is never modified.
type Registry struct {
	mu       sync.RWMutex
	raw      map[string]*Subscriber // as written, by id
	byID     map[string]*Subscriber // effective, by id
	bySector map[string]map[string]*Subscriber

	// states holds the latest endpoint state by subscriber id and URL,
	// also for subscribers that have no record (deleted, or not read
	// yet: the two kinds of key lie on different partitions).
	states map[string]map[string]EndpointState
	// revs counts changes per endpoint key (see EndpointRevision); it
	// keeps counting across a tombstone.
	revs map[string]uint64
	seq  uint64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		raw:      map[string]*Subscriber{},
		byID:     map[string]*Subscriber{},
		bySector: map[string]map[string]*Subscriber{},
		states:   map[string]map[string]EndpointState{},
		revs:     map[string]uint64{},
	}
}

// Put adds or replaces a subscriber's record. The endpoint states of the
// subscriber stay in force on top of it.
func (r *Registry) Put(s *Subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.raw[s.ID] = s
	r.rebuildLocked(s.ID)
}

// Delete removes a subscriber's record; it reports whether there was one.
// Its endpoint states are kept, as the topic keeps them, and are harmless:
// they name no partner until a record with that id and URL is put again.
func (r *Registry) Delete(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.raw[id]; !ok {
		return false
	}
	delete(r.raw, id)
	r.rebuildLocked(id)
	return true
}

// PutEndpoint records st as the latest state of its endpoint (st.URL of
// subscriber st.Subscriber), in force on top of the partner's record:
// Disabled true disables the webhook with that URL, false lifts a
// disabling state (an administrator re-enabling the endpoint; a Disabled
// flag in the partner's own record stays until the record is put again
// without it).
func (r *Registry) PutEndpoint(st EndpointState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putEndpointLocked(st)
}

// EndpointRevision returns a number that changes whenever the state of
// subscriber's endpoint url changes in the registry (0 if it never had
// one). With PutEndpointIf it lets a writer apply its own state at once
// without undoing a later one the registry has read meanwhile.
func (r *Registry) EndpointRevision(subscriber, url string) uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.revs[EndpointKey(subscriber, url)]
}

// PutEndpointIf is PutEndpoint if the endpoint's revision is still rev, and
// reports whether it applied st. A worker that wrote st to the subscribers
// topic calls it with the revision it read before writing: if the
// registry has since applied any state of that endpoint (its own st, or
// one written after it), the registry's topic order stands.
func (r *Registry) PutEndpointIf(st EndpointState, rev uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.revs[EndpointKey(st.Subscriber, st.URL)] != rev {
		return false
	}
	r.putEndpointLocked(st)
	return true
}

// ClearEndpoint forgets the state of subscriber's endpoint url (what a
// tombstone of its key does); it reports whether there was one.
func (r *Registry) ClearEndpoint(subscriber, url string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.states[subscriber][url]; !ok {
		return false
	}
	r.clearLocked(subscriber, url)
	return true
}

// Endpoint returns the latest state of subscriber's endpoint url, if it
// has one.
func (r *Registry) Endpoint(subscriber, url string) (EndpointState, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	st, ok := r.states[subscriber][url]
	return st, ok
}

// Endpoints returns the latest state of each endpoint of subscriber that
// has one, sorted by URL, whether or not the subscriber has a record.
func (r *Registry) Endpoints(subscriber string) []EndpointState {
	r.mu.RLock()
	out := make([]EndpointState, 0, len(r.states[subscriber]))
	for _, st := range r.states[subscriber] {
		out = append(out, st)
	}
	r.mu.RUnlock()
	slices.SortFunc(out, func(a, b EndpointState) int { return strings.Compare(a.URL, b.URL) })
	return out
}

// Record returns the subscriber's record as it was written, without its
// endpoint states, or nil. An administrator edits this record: putting
// back the effective record from Get would copy an endpoint state into
// the partner's record, where re-enabling the endpoint no longer reaches.
func (r *Registry) Record(id string) *Subscriber {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.raw[id]
}

func (r *Registry) putEndpointLocked(st EndpointState) {
	m := r.states[st.Subscriber]
	if m == nil {
		m = map[string]EndpointState{}
		r.states[st.Subscriber] = m
	}
	m[st.URL] = st
	r.bumpLocked(st.Subscriber, st.URL)
	r.rebuildLocked(st.Subscriber)
}

func (r *Registry) clearLocked(subscriber, url string) {
	delete(r.states[subscriber], url)
	if len(r.states[subscriber]) == 0 {
		delete(r.states, subscriber)
	}
	r.bumpLocked(subscriber, url)
	r.rebuildLocked(subscriber)
}

func (r *Registry) bumpLocked(subscriber, url string) {
	r.seq++
	r.revs[EndpointKey(subscriber, url)] = r.seq
}

// rebuildLocked recomputes the effective record of id from its record and
// endpoint states, and re-indexes it.
func (r *Registry) rebuildLocked(id string) {
	r.unindexLocked(id)
	s := r.raw[id]
	if s == nil {
		return
	}
	s = effective(s, r.states[id])
	r.byID[id] = s
	for _, sec := range s.Sectors {
		m := r.bySector[sec]
		if m == nil {
			m = map[string]*Subscriber{}
			r.bySector[sec] = m
		}
		m[id] = s
	}
}

// effective returns s with states applied: s itself when they change
// nothing, else a copy with its own webhook slice.
func effective(s *Subscriber, states map[string]EndpointState) *Subscriber {
	var cp *Subscriber
	for i, w := range s.Webhooks {
		if st, ok := states[w.URL]; !ok || !st.Disabled || w.Disabled {
			continue
		}
		if cp == nil {
			c := *s
			c.Webhooks = slices.Clone(s.Webhooks)
			cp = &c
		}
		cp.Webhooks[i].Disabled = true
	}
	if cp == nil {
		return s
	}
	return cp
}

func (r *Registry) unindexLocked(id string) {
	old, ok := r.byID[id]
	if !ok {
		return
	}
	delete(r.byID, id)
	for _, sec := range old.Sectors {
		delete(r.bySector[sec], id)
		if len(r.bySector[sec]) == 0 {
			delete(r.bySector, sec)
		}
	}
}

// Get returns the effective record of the subscriber with id, or nil.
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

// List returns the effective record of every subscriber, sorted by id.
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

// Candidates returns the subscribers an alert could reach (their effective
// records): those sharing one of its sectors and those it names, each
// once, sorted by id. Every other subscriber is outside the audience by
// rule 2 of PRODUCT.md §3 and needs no evaluation. Named ids that are not
// registered are returned in missing.
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
// registry. Under an endpoint key (IsEndpointKey) the value is a
// EndpointState of the endpoint the key names, applied with
// PutEndpoint, and a tombstone (empty value) clears that state. Under any
// other key the value is a subscriber record whose id is the key, applied
// with Put, and a tombstone deletes the subscriber. The caller checks the
// record's authenticity first.
func (r *Registry) Apply(key, value []byte) error {
	k := string(key)
	if IsEndpointKey(k) {
		return r.applyEndpoint(k, value)
	}
	if len(value) == 0 {
		r.Delete(k)
		return nil
	}
	s, err := Decode(value)
	if err != nil {
		return err
	}
	if s.ID != k {
		return fmt.Errorf("subscriber record %q is stored under key %q", s.ID, key)
	}
	s.Normalize()
	r.Put(s)
	return nil
}

func (r *Registry) applyEndpoint(key string, value []byte) error {
	if len(value) == 0 {
		r.mu.Lock()
		defer r.mu.Unlock()
		// The key names the subscriber and a digest of the URL.
		rest := strings.TrimPrefix(key, EndpointKeyPrefix)
		sub := rest[:max(0, strings.LastIndexByte(rest, '/'))]
		for url := range r.states[sub] {
			if EndpointKey(sub, url) == key {
				r.clearLocked(sub, url)
				return nil
			}
		}
		r.seq++
		r.revs[key] = r.seq // a change all the same, for PutEndpointIf
		return nil
	}
	var st EndpointState
	if err := json.Unmarshal(value, &st); err != nil {
		return fmt.Errorf("endpoint state under key %q: %w", key, err)
	}
	switch {
	case st.Subscriber == "":
		return fmt.Errorf("endpoint state under key %q: subscriber: missing", key)
	case st.URL == "":
		return fmt.Errorf("endpoint state under key %q: url: missing", key)
	case EndpointKey(st.Subscriber, st.URL) != key:
		return fmt.Errorf("endpoint state of subscriber %q and its url is stored under key %q, not its endpoint's key", st.Subscriber, key)
	}
	r.PutEndpoint(st)
	return nil
}
