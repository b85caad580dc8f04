package subscribers_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
	"github.com/herald-alerts/herald/subscribers"
)

func sub(id string, sectors ...string) *subscribers.Subscriber {
	s := &subscribers.Subscriber{ID: id, Name: id, Kind: subscribers.KindNGO, Sectors: sectors, Clearance: alerts.TLPGreen}
	s.Normalize()
	return s
}

func alertFor(sectors []string, named ...string) *alerts.Alert {
	return &alerts.Alert{Audience: alerts.Audience{Sectors: sectors, Subscribers: named}}
}

func ids(subs []*subscribers.Subscriber) []string {
	out := []string{}
	for _, s := range subs {
		out = append(out, s.ID)
	}
	return out
}

func TestRegistry(t *testing.T) {
	r := subscribers.NewRegistry()
	require.Zero(t, r.Len())
	require.Nil(t, r.Get("a"))

	r.Put(sub("c", "care", "cleaning"))
	r.Put(sub("a", "care"))
	r.Put(sub("b", "retail"))
	r.Put(sub("d"))
	require.Equal(t, 4, r.Len())
	assert.Equal(t, []string{"a", "b", "c", "d"}, ids(r.List()))
	assert.Equal(t, "c", r.Get("c").ID)

	t.Run("candidates by sector, each once, sorted", func(t *testing.T) {
		subs, missing := r.Candidates(alertFor([]string{"cleaning", "care"}))
		assert.Equal(t, []string{"a", "c"}, ids(subs))
		assert.Empty(t, missing)
	})
	t.Run("named partners join, unregistered ones are missing", func(t *testing.T) {
		subs, missing := r.Candidates(alertFor([]string{"retail"}, "d", "b", "ghost", "ghost", "zed"))
		assert.Equal(t, []string{"b", "d"}, ids(subs))
		assert.Equal(t, []string{"ghost", "zed"}, missing)
	})
	t.Run("each candidate: the same partners in the same order, one at a time", func(t *testing.T) {
		a := alertFor([]string{"retail", "care"}, "d", "ghost")
		want, wantMissing := r.Candidates(a)
		var got []*subscribers.Subscriber
		missing := r.EachCandidate(a, func(s *subscribers.Subscriber) { got = append(got, s) })
		assert.Equal(t, []string{"a", "b", "c", "d"}, ids(got))
		assert.Equal(t, want, got)
		assert.Equal(t, wantMissing, missing)
		assert.Equal(t, []string{"ghost"}, missing)
	})
	t.Run("no sector matches", func(t *testing.T) {
		subs, missing := r.Candidates(alertFor([]string{"textiles"}))
		assert.Empty(t, subs)
		assert.Empty(t, missing)
	})

	t.Run("re-put moves the partner between sectors", func(t *testing.T) {
		old := r.Get("c")
		r.Put(sub("c", "retail"))
		assert.Equal(t, 4, r.Len())
		subs, _ := r.Candidates(alertFor([]string{"cleaning"}))
		assert.Empty(t, ids(subs), "c left cleaning")
		subs, _ = r.Candidates(alertFor([]string{"care"}))
		assert.Equal(t, []string{"a"}, ids(subs), "c left care")
		subs, _ = r.Candidates(alertFor([]string{"retail"}))
		assert.Equal(t, []string{"b", "c"}, ids(subs))
		assert.NotSame(t, old, r.Get("c"))
		assert.Equal(t, []string{"care", "cleaning"}, old.Sectors, "the old record is not mutated")
	})

	t.Run("re-put with duplicate sectors, then delete", func(t *testing.T) {
		r.Put(sub("e", "care", "care"))
		subs, _ := r.Candidates(alertFor([]string{"care", "care"}))
		assert.Equal(t, []string{"a", "e"}, ids(subs))
		require.True(t, r.Delete("e"))
		subs, _ = r.Candidates(alertFor([]string{"care"}))
		assert.Equal(t, []string{"a"}, ids(subs))
	})

	t.Run("delete", func(t *testing.T) {
		require.True(t, r.Delete("a"))
		require.False(t, r.Delete("a"))
		require.False(t, r.Delete("never"))
		assert.Nil(t, r.Get("a"))
		assert.Equal(t, 3, r.Len())
		subs, missing := r.Candidates(alertFor([]string{"care"}, "a"))
		assert.Empty(t, subs)
		assert.Equal(t, []string{"a"}, missing)
	})
}

// TestRegistryConcurrent runs readers against writers; run with -race.
func TestRegistryConcurrent(t *testing.T) {
	r := subscribers.NewRegistry()
	sectors := []string{"care", "retail", "cleaning"}
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprintf("p%d-%d", w, i%50)
				if i%7 == 0 {
					r.Delete(id)
				} else {
					s := sub(id, sectors[i%3], sectors[(i+w)%3])
					s.Webhooks = []subscribers.Webhook{{URL: "https://" + id + ".example/hook"}}
					r.Put(s)
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 500 {
				subs, _ := r.Candidates(alertFor([]string{"care", "retail"}))
				for _, s := range subs {
					if !s.SharesSector([]string{"care", "retail"}) {
						t.Errorf("candidate %s shares no sector: %v", s.ID, s.Sectors)
						return
					}
				}
				r.List()
				r.Len()
			}
		})
	}
	// Endpoint states come and go under the readers and writers.
	wg.Go(func() {
		for i := range 500 {
			id := fmt.Sprintf("p%d-%d", i%2, i%50)
			st := subscribers.EndpointState{Subscriber: id, URL: "https://" + id + ".example/hook", Disabled: i%3 != 0}
			if i%5 == 0 {
				r.ClearEndpoint(st.Subscriber, st.URL)
			} else {
				r.PutEndpoint(st)
			}
		}
	})
	wg.Wait()
	for _, s := range r.List() {
		assert.Same(t, s, r.Get(s.ID))
	}
}

func partner(id string, urls ...string) *subscribers.Subscriber {
	s := sub(id, "care")
	for _, u := range urls {
		s.Webhooks = append(s.Webhooks, subscribers.Webhook{URL: u, Secrets: []string{secret1}})
	}
	s.Normalize()
	return s
}

func encode(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func state(sub, url string, disabled bool) subscribers.EndpointState {
	return subscribers.EndpointState{Subscriber: sub, URL: url, Disabled: disabled, Reason: "gone", By: "herald:deliver",
		At: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
}

// applyState applies st to r as the registry follower does: under its
// endpoint's key.
func applyState(t *testing.T, r *subscribers.Registry, st subscribers.EndpointState) {
	t.Helper()
	require.NoError(t, r.Apply([]byte(subscribers.EndpointKey(st.Subscriber, st.URL)), encode(t, st)))
}

func disabled(s *subscribers.Subscriber) []bool {
	out := []bool{}
	for _, w := range s.Webhooks {
		out = append(out, w.Disabled)
	}
	return out
}

const (
	hook1 = "https://one.acme.example/hook"
	hook2 = "https://two.acme.example/hook"
)

// TestRegistryEndpointStates: endpoint states apply on top of the partner's
// record, never into it.
func TestRegistryEndpointStates(t *testing.T) {
	r := subscribers.NewRegistry()
	orig := partner("acme", hook1, hook2)
	require.NoError(t, r.Apply([]byte("acme"), encode(t, orig)))
	before := r.Get("acme")
	assert.Equal(t, []bool{false, false}, disabled(before))

	applyState(t, r, state("acme", hook1, true))
	got := r.Get("acme")
	assert.Equal(t, []bool{true, false}, disabled(got), "the state disables its endpoint only")
	assert.Equal(t, []bool{false, false}, disabled(before), "what Get returned before is not mutated")
	assert.Equal(t, []bool{false, false}, disabled(r.Record("acme")), "the partner's record is not rewritten")
	assert.Equal(t, orig.Email, got.Email)
	assert.Equal(t, orig.Clearance, got.Clearance)
	assert.Equal(t, got, r.List()[0], "List returns the effective record")
	subs, _ := r.Candidates(alertFor([]string{"care"}))
	require.Len(t, subs, 1)
	assert.Equal(t, got, subs[0], "Candidates returns the effective record")
	st, ok := r.Endpoint("acme", hook1)
	require.True(t, ok)
	assert.Equal(t, "herald:deliver", st.By)
	assert.Equal(t, []subscribers.EndpointState{state("acme", hook1, true)}, r.Endpoints("acme"))

	t.Run("an administrator's record stands beside the state, whatever the order", func(t *testing.T) {
		suspended := partner("acme", hook1, hook2)
		suspended.Status = subscribers.StatusSuspended
		for name, steps := range map[string][]func(*subscribers.Registry){
			"state then suspension": {
				func(r *subscribers.Registry) { applyState(t, r, state("acme", hook1, true)) },
				func(r *subscribers.Registry) { require.NoError(t, r.Apply([]byte("acme"), encode(t, suspended))) },
			},
			"suspension then state": {
				func(r *subscribers.Registry) { require.NoError(t, r.Apply([]byte("acme"), encode(t, suspended))) },
				func(r *subscribers.Registry) { applyState(t, r, state("acme", hook1, true)) },
			},
		} {
			t.Run(name, func(t *testing.T) {
				r := subscribers.NewRegistry()
				r.Put(partner("acme", hook1, hook2))
				for _, step := range steps {
					step(r)
				}
				s := r.Get("acme")
				assert.Equal(t, subscribers.StatusSuspended, s.Status)
				assert.Equal(t, []bool{true, false}, disabled(s))
			})
		}
	})

	t.Run("re-enable", func(t *testing.T) {
		disabledOnes := r.Get("acme")
		applyState(t, r, state("acme", hook1, false))
		assert.Equal(t, []bool{false, false}, disabled(r.Get("acme")))
		assert.Equal(t, []bool{true, false}, disabled(disabledOnes), "not mutated")
		st, ok := r.Endpoint("acme", hook1)
		require.True(t, ok, "the latest state is kept")
		assert.False(t, st.Disabled)
	})

	t.Run("a tombstone of the endpoint key clears the state", func(t *testing.T) {
		applyState(t, r, state("acme", hook2, true))
		assert.Equal(t, []bool{false, true}, disabled(r.Get("acme")))
		require.NoError(t, r.Apply([]byte(subscribers.EndpointKey("acme", hook2)), nil))
		assert.Equal(t, []bool{false, false}, disabled(r.Get("acme")))
		_, ok := r.Endpoint("acme", hook2)
		assert.False(t, ok)
		// A tombstone of a key never seen changes nothing.
		require.NoError(t, r.Apply([]byte(subscribers.EndpointKey("acme", "https://never.example/")), nil))
		require.NoError(t, r.Apply([]byte(subscribers.EndpointKey("nobody", hook2)), nil))
		assert.Equal(t, []bool{false, false}, disabled(r.Get("acme")))
	})

	t.Run("the record's own flag stays until the record is put without it", func(t *testing.T) {
		flagged := partner("acme", hook1, hook2)
		flagged.Webhooks[1].Disabled = true
		r.Put(flagged)
		applyState(t, r, state("acme", hook2, false))
		assert.Equal(t, []bool{false, true}, disabled(r.Get("acme")))
		assert.Same(t, flagged, r.Get("acme"), "no state changes it: the record itself")
		r.Put(partner("acme", hook1, hook2))
		assert.Equal(t, []bool{false, false}, disabled(r.Get("acme")))
	})

	t.Run("a state for a URL the record does not have changes nothing", func(t *testing.T) {
		applyState(t, r, state("acme", "https://old.acme.example/hook", true))
		assert.Equal(t, []bool{false, false}, disabled(r.Get("acme")))
		assert.Same(t, r.Record("acme"), r.Get("acme"))
	})

	t.Run("deleting a subscriber leaves its states harmless", func(t *testing.T) {
		applyState(t, r, state("acme", hook1, true))
		require.NoError(t, r.Apply([]byte("acme"), nil))
		assert.Nil(t, r.Get("acme"))
		assert.Nil(t, r.Record("acme"))
		assert.Zero(t, r.Len())
		assert.Empty(t, r.List())
		subs, missing := r.Candidates(alertFor([]string{"care"}, "acme"))
		assert.Empty(t, subs)
		assert.Equal(t, []string{"acme"}, missing)
		// A state read before (or without) its partner's record names no
		// partner.
		applyState(t, r, state("ghost", hook1, true))
		assert.Nil(t, r.Get("ghost"))
		assert.Zero(t, r.Len())
		// The topic keeps the states, so a record put again under the id
		// finds them, as a process reading the topic from the start would.
		r.Put(partner("acme", hook1, hook2))
		assert.Equal(t, []bool{true, false}, disabled(r.Get("acme")))
	})
}

func TestRegistryApplyRefusesMisfiledRecords(t *testing.T) {
	r := subscribers.NewRegistry()
	r.Put(partner("acme", hook1))
	st := state("acme", hook1, true)
	for name, tc := range map[string]struct {
		key   string
		value []byte
		want  string
	}{
		"a state under another endpoint's key": {subscribers.EndpointKey("acme", hook2), encode(t, st), "not its endpoint's key"},
		"a state under another partner's key":  {subscribers.EndpointKey("other", hook1), encode(t, st), "not its endpoint's key"},
		"a state under the partner's key":      {"acme", encode(t, st), "unknown field"},
		"a partner record under an endpoint key": {subscribers.EndpointKey("acme", hook1),
			encode(t, partner("acme", hook1)), "subscriber: missing"},
		"a state without url": {subscribers.EndpointKey("acme", ""), encode(t, state("acme", "", true)), "url: missing"},
		"not JSON":            {subscribers.EndpointKey("acme", hook1), []byte("{"), "endpoint state under key"},
	} {
		t.Run(name, func(t *testing.T) {
			err := r.Apply([]byte(tc.key), tc.value)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, []bool{false}, disabled(r.Get("acme")), "nothing applied")
		})
	}
}

// TestRegistryPutEndpointIf: a worker's own state is applied at once only
// while the registry has applied no state of that endpoint since the worker
// read its revision, so that a later state read from the topic stands.
func TestRegistryPutEndpointIf(t *testing.T) {
	r := subscribers.NewRegistry()
	r.Put(partner("acme", hook1))
	rev := r.EndpointRevision("acme", hook1)
	assert.Zero(t, rev)
	require.True(t, r.PutEndpointIf(state("acme", hook1, true), rev))
	assert.Equal(t, []bool{true}, disabled(r.Get("acme")))

	// The worker's write, then an administrator's re-enable, both read by
	// the registry before the worker's callback: the re-enable stands.
	rev = r.EndpointRevision("acme", hook1)
	applyState(t, r, state("acme", hook1, true))
	applyState(t, r, state("acme", hook1, false))
	require.False(t, r.PutEndpointIf(state("acme", hook1, true), rev))
	assert.Equal(t, []bool{false}, disabled(r.Get("acme")))

	// A tombstone is a change too.
	rev = r.EndpointRevision("acme", hook1)
	require.NoError(t, r.Apply([]byte(subscribers.EndpointKey("acme", hook1)), nil))
	assert.False(t, r.PutEndpointIf(state("acme", hook1, true), rev))
	rev = r.EndpointRevision("acme", hook1)
	require.True(t, r.ClearEndpoint("acme", hook1) == false, "already cleared")
	assert.True(t, r.PutEndpointIf(state("acme", hook1, true), rev))
	assert.True(t, r.ClearEndpoint("acme", hook1))
	assert.Equal(t, []bool{false}, disabled(r.Get("acme")))
}

// TestRegistryRevisionAndEach: every change moves the revision, and Each
// hands out what List returns, one record at a time.
func TestRegistryRevisionAndEach(t *testing.T) {
	r := subscribers.NewRegistry()
	rev := r.Revision()
	moved := func(what string) {
		t.Helper()
		now := r.Revision()
		assert.NotEqual(t, rev, now, what)
		rev = now
	}
	r.Put(sub("b", "care"))
	moved("put")
	require.NoError(t, r.Apply([]byte("a"), encode(t, sub("a", "retail"))))
	moved("apply")
	r.PutEndpoint(subscribers.EndpointState{Subscriber: "a", URL: "https://a.example/h", Disabled: true})
	moved("endpoint state")
	r.ClearEndpoint("a", "https://a.example/h")
	moved("endpoint state cleared")
	assert.False(t, r.Delete("nobody"))
	assert.Equal(t, rev, r.Revision(), "nothing deleted")
	var each []*subscribers.Subscriber
	r.Each(func(s *subscribers.Subscriber) { each = append(each, s) })
	assert.Equal(t, r.List(), each)
	assert.Equal(t, []string{"a", "b"}, ids(each))
	require.True(t, r.Delete("b"))
	moved("delete")
}
