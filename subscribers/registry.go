package subscribers

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"

	"github.com/herald-alerts/herald/alerts"
)

// Registry is the current set of subscribers, safe for concurrent use. It
// keeps an index from sector slug to subscribers so that Candidates costs
// O(matches), not O(all partners).
//
// It holds the kinds of record the compacted subscribers topic does: each
// partner's record as an administrator wrote it; the state Herald records
// for single endpoints (EndpointState, under EndpointKey: a webhook that
// answered 410 Gone is disabled); and the partner's own OpenPGP key for an
// address (KeyOverlay, under KeyOverlayKey) and secrets for a webhook
// (SecretsOverlay, under SecretsOverlayKey). Get, List and Candidates
// return the effective record: the partner's record with its endpoint
// states and overlays applied on top (a webhook is disabled when the
// record says so or when its latest state does; an address the record
// still lists has the partner's key, a webhook whose URL it still lists
// with the secrets the partner's list was made over has the partner's
// secrets; each only in the incarnation it was made against: InForce).
// Record returns the record as written. No
// kind ever rewrites another, so an administrator's change, a worker's 410
// and a partner's new key all stand whatever their order. Of a partner's
// changes of one key or webhook's secrets, each made from the one in
// force, the registry takes each only if it was made after the one it
// holds (KeyOverlay.Seq), so that of two made at once from the same one
// the first read stands, in every process alike.
//
// Records are immutable once stored, and a record returned is never
// modified. Put keeps the caller's record as it is (and Get returns it
// while no endpoint state or overlay changes it); the records Apply reads from the
// topic are kept packed, about a third of their decoded size and nothing
// for the garbage collector to scan, and each Get, List or Candidates
// returns a new copy of them (equal records; callers must not rely on
// getting the same pointer twice).
type Registry struct {
	mu sync.RWMutex
	// recs holds every record as written, by slot; a deleted record's
	// slot is zero and listed in free, for the next new id.
	recs []stored
	free []int32
	// ids finds an id's slot in recs.
	ids idIndex
	// eff holds the effective record, by slot, where endpoint states or
	// overlays change the record.
	eff map[int32]stored
	// bySector lists the slots of the records in each sector, each once,
	// in order: a slot is found by binary search, and new slots (the
	// next after the last) are appended.
	bySector map[string][]int32

	// states holds the latest endpoint state by subscriber id and URL,
	// also for subscribers that have no record (deleted, or not read
	// yet: the two kinds of key lie on different partitions).
	states map[string]map[string]EndpointState
	// keys and secrets hold the partner's own overlays by subscriber id,
	// and by lower-cased address or by URL; like states, also for
	// subscribers without a record, and for addresses and URLs the
	// record no longer lists (they change nothing until it lists them
	// again).
	keys    map[string]map[string]KeyOverlay
	secrets map[string]map[string]SecretsOverlay
	// reads holds what was read under each overlay key (OverlayRevision,
	// NextKeySeq), for every key ever read: kept across a tombstone, as
	// revs is.
	reads map[string]overlayRead
	// revs counts changes per endpoint key (see EndpointRevision); it
	// keeps counting across a tombstone.
	revs map[string]uint64
	seq  uint64
	// rev counts changes of any record, endpoint state or overlay
	// (Revision).
	rev uint64
}

// A registry of a hundred thousand partners kept its records in maps
// keyed by id (the records as written, and a set of ids per sector): about
// 90 bytes a partner of map entries and keys besides the packed records.
// It keeps them in one slice of records instead, found by id through an
// open-addressing table of slot numbers (idIndex, whose keys are the
// records' own ids), with a sorted slice of slot numbers per sector:
// about 40 bytes a partner, and the table and the sectors' slices hold no
// pointers for the garbage collector to follow.

// stored is one record as the registry keeps it: the caller's record
// (Put), or a record read from the topic (Apply), packed.
type stored struct {
	s *Subscriber
	p string
}

// record returns the stored record (a new copy of a packed one), or nil.
func (x stored) record() *Subscriber {
	if x.s != nil || x.p == "" {
		return x.s
	}
	return unpack(x.p)
}

// id returns the id of the stored record without unpacking it.
func (x stored) id() string {
	if x.s != nil {
		return x.s.ID
	}
	u := unpacker{p: x.p}
	return u.string()
}

// sectors returns the sectors of the stored record.
func (x stored) sectors() []string {
	if x.s != nil {
		return x.s.Sectors
	}
	return unpackSectors(x.p)
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		ids:      idIndex{seed: maphash.MakeSeed()},
		eff:      map[int32]stored{},
		bySector: map[string][]int32{},
		states:   map[string]map[string]EndpointState{},
		keys:     map[string]map[string]KeyOverlay{},
		secrets:  map[string]map[string]SecretsOverlay{},
		reads:    map[string]overlayRead{},
		revs:     map[string]uint64{},
	}
}

// Put adds or replaces a subscriber's record, keeping s itself (see
// Registry). The endpoint states and overlays of the subscriber stay in
// force on top of it.
func (r *Registry) Put(s *Subscriber) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(s.ID, s.Sectors, stored{s: s})
}

// putPacked adds or replaces a subscriber's record, packed.
func (r *Registry) putPacked(s *Subscriber) {
	p := pack(s)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(s.ID, s.Sectors, stored{p: p})
}

// putLocked stores x, the record of id in sectors, and indexes it.
func (r *Registry) putLocked(id string, sectors []string, x stored) {
	r.rev++
	slot, ok := r.ids.find(r.recs, id)
	switch {
	case ok:
		if old := r.recs[slot].sectors(); !slices.Equal(old, sectors) {
			r.unindexLocked(slot, old)
			r.indexLocked(slot, sectors)
		}
		r.recs[slot] = x
	default:
		if n := len(r.free); n > 0 {
			slot = r.free[n-1]
			r.free = r.free[:n-1]
			r.recs[slot] = x
		} else {
			slot = int32(len(r.recs))
			r.recs = append(r.recs, x)
		}
		r.ids.insert(r.recs, slot)
		r.indexLocked(slot, sectors)
	}
	r.rebuildLocked(id, slot)
}

// Delete removes a subscriber's record; it reports whether there was one.
// Its endpoint states and overlays are kept, as the topic keeps them
// until their tombstones arrive, and are harmless: they name no partner
// until a record with that id and address or URL is put again.
func (r *Registry) Delete(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	slot, ok := r.ids.find(r.recs, id)
	if !ok {
		return false
	}
	r.rev++
	r.unindexLocked(slot, r.recs[slot].sectors())
	r.ids.remove(r.recs, id)
	r.recs[slot] = stored{}
	r.free = append(r.free, slot)
	delete(r.eff, slot)
	return true
}

// Revision returns a number that changes whenever a record, an endpoint
// state or an overlay changes, so that a reader can tell cheaply whether anything did.
func (r *Registry) Revision() uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rev
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
// endpoint states or the partner's own keys and secrets, or nil. An
// administrator edits this record: putting back the effective record from
// Get would copy an endpoint state into the partner's record, where
// re-enabling the endpoint no longer reaches, and would make the partner's
// key the administrator's.
func (r *Registry) Record(id string) *Subscriber {
	r.mu.RLock()
	var x stored
	if slot, ok := r.ids.find(r.recs, id); ok {
		x = r.recs[slot]
	}
	r.mu.RUnlock()
	return x.record()
}

func (r *Registry) putEndpointLocked(st EndpointState) {
	m := r.states[st.Subscriber]
	if m == nil {
		m = map[string]EndpointState{}
		r.states[st.Subscriber] = m
	}
	m[st.URL] = st
	r.bumpLocked(st.Subscriber, st.URL)
	if slot, ok := r.ids.find(r.recs, st.Subscriber); ok {
		r.rebuildLocked(st.Subscriber, slot)
	}
}

func (r *Registry) clearLocked(subscriber, url string) {
	delete(r.states[subscriber], url)
	if len(r.states[subscriber]) == 0 {
		delete(r.states, subscriber)
	}
	r.bumpLocked(subscriber, url)
	if slot, ok := r.ids.find(r.recs, subscriber); ok {
		r.rebuildLocked(subscriber, slot)
	}
}

func (r *Registry) bumpLocked(subscriber, url string) {
	r.rev++
	r.seq++
	r.revs[EndpointKey(subscriber, url)] = r.seq
}

// rebuildLocked recomputes the effective record of id, in slot, from its
// record, endpoint states and overlays.
func (r *Registry) rebuildLocked(id string, slot int32) {
	delete(r.eff, slot)
	raw := r.recs[slot]
	states, keys, secrets := r.states[id], r.keys[id], r.secrets[id]
	if len(states) == 0 && len(keys) == 0 && len(secrets) == 0 {
		return
	}
	s := raw.record()
	e := effective(s, states, keys, secrets)
	switch {
	case e == s:
	case raw.s != nil:
		r.eff[slot] = stored{s: e}
	default:
		r.eff[slot] = stored{p: pack(e)}
	}
}

// effective returns s with its endpoint states and overlays applied: s
// itself when they change nothing, else a copy with its own email and
// webhook slices. keys is by lower-cased address, states and secrets by
// URL; an overlay not in force over s (KeyOverlay.InForce,
// SecretsOverlay.InForce) changes nothing.
func effective(s *Subscriber, states map[string]EndpointState, keys map[string]KeyOverlay, secrets map[string]SecretsOverlay) *Subscriber {
	var cp *Subscriber
	cloned := func() *Subscriber {
		if cp == nil {
			c := *s
			c.Email = slices.Clone(s.Email)
			c.Webhooks = slices.Clone(s.Webhooks)
			cp = &c
		}
		return cp
	}
	for i, e := range s.Email {
		if o, ok := keys[strings.ToLower(e.Address)]; ok && o.over(s, e) && o.PGPKey != e.PGPKey {
			cloned().Email[i].PGPKey = o.PGPKey
		}
	}
	for i, w := range s.Webhooks {
		if o, ok := secrets[w.URL]; ok && o.over(s, w) && !slices.Equal(o.Secrets, w.Secrets) {
			cloned().Webhooks[i].Secrets = slices.Clone(o.Secrets)
		}
		if st, ok := states[w.URL]; ok && st.Disabled && !w.Disabled {
			cloned().Webhooks[i].Disabled = true
		}
	}
	if cp == nil {
		return s
	}
	return cp
}

// indexLocked adds slot to the index of each of sectors, once.
func (r *Registry) indexLocked(slot int32, sectors []string) {
	for i, sec := range sectors {
		if slices.Contains(sectors[:i], sec) {
			continue
		}
		l := r.bySector[sec]
		if j, found := slices.BinarySearch(l, slot); !found {
			r.bySector[sec] = slices.Insert(l, j, slot)
		}
	}
}

// unindexLocked removes slot from the index of each of sectors, the
// sectors it was indexed with.
func (r *Registry) unindexLocked(slot int32, sectors []string) {
	for i, sec := range sectors {
		if slices.Contains(sectors[:i], sec) {
			continue
		}
		l := r.bySector[sec]
		j, found := slices.BinarySearch(l, slot)
		if !found {
			continue
		}
		l = slices.Delete(l, j, j+1)
		switch {
		case len(l) == 0:
			delete(r.bySector, sec)
		case cap(l) >= 64 && len(l) < cap(l)/4:
			r.bySector[sec] = slices.Clone(l)
		default:
			r.bySector[sec] = l
		}
	}
}

// currentLocked returns the effective record in slot as stored.
func (r *Registry) currentLocked(slot int32) stored {
	if x, ok := r.eff[slot]; ok {
		return x
	}
	return r.recs[slot]
}

// Get returns the effective record of the subscriber with id, or nil.
func (r *Registry) Get(id string) *Subscriber {
	r.mu.RLock()
	var x stored
	if slot, ok := r.ids.find(r.recs, id); ok {
		x = r.currentLocked(slot)
	}
	r.mu.RUnlock()
	return x.record()
}

// Len returns the number of subscribers.
func (r *Registry) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.ids.n
}

// List returns the effective record of every subscriber, sorted by id.
func (r *Registry) List() []*Subscriber {
	return records(r.all())
}

// Each calls fn with the effective record of every subscriber, sorted by
// id, one after the other: unlike List, it never holds them all at once
// (the packed records are unpacked one at a time). fn runs without the
// registry's lock.
func (r *Registry) Each(fn func(*Subscriber)) {
	xs := r.all()
	slices.SortFunc(xs, func(a, b idStored) int { return strings.Compare(a.id, b.id) })
	for _, x := range xs {
		fn(x.x.record())
	}
}

// all returns the effective record of every subscriber as stored,
// unsorted.
func (r *Registry) all() []idStored {
	r.mu.RLock()
	defer r.mu.RUnlock()
	xs := make([]idStored, 0, r.ids.n)
	for slot, raw := range r.recs {
		if raw.s == nil && raw.p == "" {
			continue // deleted
		}
		xs = append(xs, idStored{raw.id(), r.currentLocked(int32(slot))})
	}
	return xs
}

// idStored is a stored record with its id.
type idStored struct {
	id string
	x  stored
}

// records sorts xs by id and returns their records.
func records(xs []idStored) []*Subscriber {
	slices.SortFunc(xs, func(a, b idStored) int { return strings.Compare(a.id, b.id) })
	out := make([]*Subscriber, len(xs))
	for i, x := range xs {
		out[i] = x.x.record()
	}
	return out
}

// Candidates returns the subscribers an alert could reach (their effective
// records): those sharing one of its sectors and those it names, each
// once, sorted by id. Every other subscriber is outside the audience by
// rule 2 of PRODUCT.md §3 and needs no evaluation. Named ids that are not
// registered are returned in missing.
func (r *Registry) Candidates(a *alerts.Alert) (subs []*Subscriber, missing []string) {
	xs, missing := r.candidates(a)
	return records(xs), missing
}

// EachCandidate calls fn with each subscriber Candidates returns, in the
// same order, one after the other: unlike Candidates it never holds them
// all at once (the packed records are unpacked one at a time, and fn may
// drop each). fn runs without the registry's lock. Named ids that are not
// registered are returned in missing.
func (r *Registry) EachCandidate(a *alerts.Alert, fn func(*Subscriber)) (missing []string) {
	xs, missing := r.candidates(a)
	slices.SortFunc(xs, func(a, b idStored) int { return strings.Compare(a.id, b.id) })
	for _, x := range xs {
		fn(x.x.record())
	}
	return missing
}

// candidates returns the stored records of Candidates, unsorted.
func (r *Registry) candidates(a *alerts.Alert) (xs []idStored, missing []string) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, sec := range a.Audience.Sectors {
		n += len(r.bySector[sec])
	}
	slots := make([]int32, 0, n+len(a.Audience.Subscribers))
	for _, sec := range a.Audience.Sectors {
		slots = append(slots, r.bySector[sec]...)
	}
	for _, id := range a.Audience.Subscribers {
		if slot, ok := r.ids.find(r.recs, id); ok {
			slots = append(slots, slot)
		} else if !slices.Contains(missing, id) {
			missing = append(missing, id)
		}
	}
	slices.Sort(slots)
	slots = slices.Compact(slots)
	xs = make([]idStored, len(slots))
	for i, slot := range slots {
		xs[i] = idStored{r.recs[slot].id(), r.currentLocked(slot)}
	}
	return xs, missing
}

// Apply folds one record of the compacted subscribers topic into the
// registry. Under an endpoint key (IsEndpointKey) the value is a
// EndpointState of the endpoint the key names, applied with
// PutEndpoint, and a tombstone (empty value) clears that state. Under an
// overlay key (KeyOverlayKey, SecretsOverlayKey) the value is the
// KeyOverlay or SecretsOverlay the key names, applied with PutKeyOverlay
// or PutSecretsOverlay (which ignore one made before the overlay they
// hold), and a tombstone clears it. Under a record key
// (IsRecordKey) the value is a subscriber record whose id is the key,
// applied with Put, and a tombstone deletes the subscriber. Any other key
// is refused. The caller checks the record's authenticity first.
func (r *Registry) Apply(key, value []byte) error {
	k := string(key)
	switch {
	case IsEndpointKey(k):
		return r.applyEndpoint(k, value)
	case strings.HasPrefix(k, KeyOverlayPrefix):
		return r.applyKeyOverlay(k, value)
	case strings.HasPrefix(k, SecretsOverlayPrefix):
		return r.applySecretsOverlay(k, value)
	case !IsRecordKey(k):
		return fmt.Errorf("subscribers-topic key %q: not a kind of record this version of Herald knows", k)
	}
	if len(value) == 0 {
		r.Delete(k)
		return nil
	}
	s, err := decode(value)
	if err != nil {
		return err
	}
	if s.ID != k {
		return fmt.Errorf("subscriber record %q is stored under key %q", s.ID, key)
	}
	s.Normalize()
	r.putPacked(s)
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
