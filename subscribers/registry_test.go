package subscribers_test

import (
	"fmt"
	"sync"
	"testing"

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
					r.Put(sub(id, sectors[i%3], sectors[(i+w)%3]))
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
	wg.Wait()
	for _, s := range r.List() {
		assert.Same(t, s, r.Get(s.ID))
	}
}
