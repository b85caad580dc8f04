package subscribers

import "hash/maphash"

// idIndex finds a record's slot by its id: an open-addressing hash table
// (linear probing, at most half full) of slot numbers plus one, 0 for an
// empty entry. It keeps no keys of its own: the id of the record in a
// slot is read from the record (stored.id), so that a hundred thousand
// partners cost it 4 to 8 bytes each and nothing for the garbage
// collector to scan.
type idIndex struct {
	seed  maphash.Seed
	table []int32
	n     int // entries in table
}

// home returns the entry where id's probe sequence starts.
func (x *idIndex) home(id string) int {
	return int(maphash.String(x.seed, id) & uint64(len(x.table)-1))
}

// lookup returns the entry of id in the table (or the empty entry where it
// would go) and its slot.
func (x *idIndex) lookup(recs []stored, id string) (entry int, slot int32, ok bool) {
	if len(x.table) == 0 {
		return -1, 0, false
	}
	mask := len(x.table) - 1
	for i := x.home(id); ; i = (i + 1) & mask {
		e := x.table[i]
		if e == 0 {
			return i, 0, false
		}
		if recs[e-1].id() == id {
			return i, e - 1, true
		}
	}
}

// find returns the slot of the record with id.
func (x *idIndex) find(recs []stored, id string) (int32, bool) {
	_, slot, ok := x.lookup(recs, id)
	return slot, ok
}

// insert adds slot, whose record's id is not in the table yet.
func (x *idIndex) insert(recs []stored, slot int32) {
	if (x.n+1)*2 > len(x.table) {
		x.grow(recs)
	}
	i, _, ok := x.lookup(recs, recs[slot].id())
	if ok {
		panic("subscribers: an id indexed twice")
	}
	x.table[i] = slot + 1
	x.n++
}

// grow doubles the table and enters every slot again.
func (x *idIndex) grow(recs []stored) {
	old := x.table
	x.table = make([]int32, max(16, 2*len(old)))
	mask := len(x.table) - 1
	for _, e := range old {
		if e == 0 {
			continue
		}
		i := x.home(recs[e-1].id())
		for x.table[i] != 0 {
			i = (i + 1) & mask
		}
		x.table[i] = e
	}
}

// remove takes id out of the table, while its record is still in recs.
// The entries after it in its run move back, so that no probe sequence
// is broken (backward-shift deletion; no tombstones).
func (x *idIndex) remove(recs []stored, id string) {
	i, _, ok := x.lookup(recs, id)
	if !ok {
		return
	}
	x.table[i] = 0
	x.n--
	mask := len(x.table) - 1
	for j := (i + 1) & mask; x.table[j] != 0; j = (j + 1) & mask {
		k := x.home(recs[x.table[j]-1].id())
		// The entry at j stays if its home lies cyclically in (i, j].
		if i <= j {
			if i < k && k <= j {
				continue
			}
		} else if i < k || k <= j {
			continue
		}
		x.table[i] = x.table[j]
		x.table[j] = 0
		i = j
	}
}
