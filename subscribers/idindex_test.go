package subscribers

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/herald-alerts/herald/alerts"
)

// checkRegistry compares r with want (id → sectors of the record put
// last): every id is found in its slot, every other id is not, the sector
// index lists each record once under each of its sectors and nothing
// else, and Len, List and Candidates agree (List and Candidates only
// when records, for they unpack every record: slow under -race).
func checkRegistry(t *testing.T, r *Registry, want map[string][]string, absent []string, records bool) {
	t.Helper()
	require.Equal(t, len(want), r.Len())
	require.Equal(t, len(want), r.ids.n)
	for id := range want {
		slot, ok := r.ids.find(r.recs, id)
		require.True(t, ok, id)
		require.Equal(t, id, r.recs[slot].id())
	}
	for _, id := range absent {
		if _, live := want[id]; live {
			continue
		}
		_, ok := r.ids.find(r.recs, id)
		require.False(t, ok, id)
		require.Nil(t, r.Get(id), id)
	}
	bySector := map[string][]string{}
	for id, secs := range want {
		for i, sec := range secs {
			if !slices.Contains(secs[:i], sec) {
				bySector[sec] = append(bySector[sec], id)
			}
		}
	}
	require.Equal(t, len(bySector), len(r.bySector), "sectors indexed")
	for sec, ids := range bySector {
		slices.Sort(ids)
		require.True(t, slices.IsSorted(r.bySector[sec]), "the slots of %s in order", sec)
		var got []string
		for _, slot := range r.bySector[sec] {
			got = append(got, r.recs[slot].id())
		}
		slices.Sort(got)
		require.Equal(t, ids, got, sec)
		if !records {
			continue
		}
		subs, missing := r.Candidates(&alerts.Alert{Audience: alerts.Audience{Sectors: []string{sec}}})
		require.Empty(t, missing)
		require.Len(t, subs, len(ids), sec)
		for i, s := range subs {
			require.Equal(t, ids[i], s.ID)
		}
	}
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if !records {
		return
	}
	list := r.List()
	require.Len(t, list, len(ids))
	for i, s := range list {
		require.Equal(t, ids[i], s.ID)
		require.Equal(t, want[s.ID], s.Sectors)
	}
}

// TestRegistryIndexRandom puts, re-puts with other sectors, deletes and
// re-adds records at random, packed and as written, and checks the
// registry's index against a map after each step of a few hundred.
func TestRegistryIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sectors := []string{"care", "retail", "textiles", "agriculture"}
	r := NewRegistry()
	want := map[string][]string{}
	var seen []string
	for step := range 3000 {
		id := fmt.Sprintf("p-%d", rng.IntN(300))
		seen = append(seen, id)
		switch rng.IntN(4) {
		case 0:
			got := r.Delete(id)
			_, had := want[id]
			require.Equal(t, had, got, id)
			delete(want, id)
		default:
			var secs []string
			for range rng.IntN(4) {
				secs = append(secs, sectors[rng.IntN(len(sectors))]) // duplicates too
			}
			s := &Subscriber{ID: id, Name: id, Kind: KindNGO, Sectors: secs, Clearance: alerts.TLPGreen}
			if rng.IntN(2) == 0 {
				r.putPacked(s)
			} else {
				r.Put(s)
			}
			want[id] = secs
		}
		if step%50 == 0 || step > 2950 {
			checkRegistry(t, r, want, seen, true)
		}
	}
}

// TestRegistryIndex100k: a hundred thousand partners, a tenth of them
// deleted, another tenth moved to other sectors, and the deleted ones
// added again.
func TestRegistryIndex100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 partners")
	}
	const n = 100_000
	sectors := []string{"care", "retail", "textiles", "agriculture", "hospitality"}
	r := NewRegistry()
	want := map[string][]string{}
	put := func(i int, sec string) {
		id := fmt.Sprintf("p-%06d", i)
		r.putPacked(&Subscriber{ID: id, Kind: KindBusiness, Sectors: []string{sec}})
		want[id] = []string{sec}
	}
	for i := range n {
		put(i, sectors[i%len(sectors)])
	}
	checkRegistry(t, r, want, []string{"p-100000", "ghost"}, false)
	var gone []string
	for i := 0; i < n; i += 10 {
		id := fmt.Sprintf("p-%06d", i)
		require.True(t, r.Delete(id))
		delete(want, id)
		gone = append(gone, id)
	}
	for i := 5; i < n; i += 10 {
		put(i, sectors[(i+1)%len(sectors)])
	}
	checkRegistry(t, r, want, gone, false)
	for i := 0; i < n; i += 10 {
		put(i, "care")
	}
	checkRegistry(t, r, want, nil, true)
	require.Empty(t, r.free, "the deleted slots are used again")
	require.Len(t, r.recs, n)
}

// TestRegistryEndpointStateFollowsSlot: a record deleted and another added
// in its slot does not inherit its endpoint state's effective record.
func TestRegistryEndpointStateFollowsSlot(t *testing.T) {
	r := NewRegistry()
	hook := func(id string) *Subscriber {
		return &Subscriber{ID: id, Sectors: []string{"care"}, Webhooks: []Webhook{{URL: "https://h.example/x"}}}
	}
	r.putPacked(hook("a"))
	r.PutEndpoint(EndpointState{Subscriber: "a", URL: "https://h.example/x", Disabled: true})
	require.True(t, r.Get("a").Webhooks[0].Disabled)
	require.True(t, r.Delete("a"))
	r.putPacked(hook("b")) // a's slot
	require.False(t, r.Get("b").Webhooks[0].Disabled)
	r.putPacked(hook("a"))
	require.True(t, r.Get("a").Webhooks[0].Disabled, "a's endpoint state stands when a comes back")
	require.False(t, r.Get("b").Webhooks[0].Disabled)
}
