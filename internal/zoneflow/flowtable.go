package zoneflow

import (
	"math/rand/v2"
	"unsafe"
)

// flowTable is the per-flow memory: flow states (each with its key) in a
// chunked slab, found through an open-addressing index of slab positions.
// Nothing in it is a pointer the GC scans, and nothing is allocated per flow:
// a million flows take 48 MB of slab plus an 8 MiB index, where a Go map of
// key to slab position took about 28 bytes a flow on top of a 40-byte state.
//
// The kernel dumps its table in hash-bucket order, the same order every time
// (new entries join their bucket's chain; nothing moves unless the table is
// resized), and flows first seen in a dump get consecutive slab positions. So
// the next entry of a dump is most often the slab entry after the previous
// one: find checks that guess before it hashes, which turns a steady dump into
// a walk along the slab.
type flowTable struct {
	chunks [][]flowState
	n      uint32   // slab positions handed out
	free   []uint32 // positions of removed flows, reused first
	live   int

	// index holds slab position + 1 (0: empty), linear probing, at most 3/4
	// full, its length a power of two.
	index []uint32
	seed  uint64
}

const (
	slabChunkBits = 14
	slabChunk     = 1 << slabChunkBits

	minIndex = 1 << 10
)

func newFlowTable() *flowTable {
	return &flowTable{index: make([]uint32, minIndex), seed: rand.Uint64() | 1}
}

func (t *flowTable) len() int { return t.live }

// at is the state at slab position i (< t.n).
func (t *flowTable) at(i uint32) *flowState {
	return &t.chunks[i>>slabChunkBits][i&(slabChunk-1)]
}

// bytes is the memory the table holds: slab chunks, free list and index.
func (t *flowTable) bytes() uint64 {
	return uint64(len(t.chunks))*slabChunk*uint64(unsafe.Sizeof(flowState{})) +
		uint64(cap(t.free))*4 + uint64(len(t.index))*4
}

func (t *flowTable) hash(k flowKey) uint64 {
	h := uint64(k.id) | uint64(k.sport)<<32 | uint64(k.dport)<<48
	h ^= t.seed
	h *= 0x9e3779b97f4a7c15
	h ^= (uint64(k.zone) | uint64(k.proto)<<16) * 0xff51afd7ed558ccd
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

// find returns the slab position of k's flow. guess is a position to try
// first (any value; see flowTable).
func (t *flowTable) find(k flowKey, guess uint32) (uint32, bool) {
	if guess < t.n {
		if st := t.at(guess); st.status != stFree && st.key() == k {
			return guess, true
		}
	}
	mask := uint64(len(t.index) - 1)
	for s := t.hash(k) & mask; ; s = (s + 1) & mask {
		v := t.index[s]
		if v == 0 {
			return 0, false
		}
		if t.at(v-1).key() == k {
			return v - 1, true
		}
	}
}

// insert adds k (which the table must not hold) with a zeroed state and
// returns its slab position.
func (t *flowTable) insert(k flowKey) uint32 {
	if (t.live+1)*4 > len(t.index)*3 {
		t.grow()
	}
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		if int(t.n>>slabChunkBits) == len(t.chunks) {
			t.chunks = append(t.chunks, make([]flowState, slabChunk))
		}
		i = t.n
		t.n++
	}
	st := t.at(i)
	*st = flowState{}
	st.setKey(k)
	t.place(k, i)
	t.live++
	return i
}

func (t *flowTable) place(k flowKey, i uint32) {
	mask := uint64(len(t.index) - 1)
	s := t.hash(k) & mask
	for t.index[s] != 0 {
		s = (s + 1) & mask
	}
	t.index[s] = i + 1
}

func (t *flowTable) grow() {
	old := t.index
	t.index = make([]uint32, 2*len(old))
	for _, v := range old {
		if v != 0 {
			t.place(t.at(v-1).key(), v-1)
		}
	}
}

// remove drops the flow at slab position i: its index slot is emptied and the
// slots after it in the probe run shifted back (no tombstones in the index).
func (t *flowTable) remove(i uint32) {
	st := t.at(i)
	mask := uint64(len(t.index) - 1)
	s := t.hash(st.key()) & mask
	for t.index[s] != i+1 {
		s = (s + 1) & mask
	}
	for {
		t.index[s] = 0
		j := s
		for {
			j = (j + 1) & mask
			v := t.index[j]
			if v == 0 {
				st.status = stFree
				t.free = append(t.free, i)
				t.live--
				return
			}
			// The entry at j may move to s unless its home slot lies
			// cyclically in (s, j].
			h := t.hash(t.at(v-1).key()) & mask
			if (j > s && (h <= s || h > j)) || (j < s && h <= s && h > j) {
				t.index[s] = v
				s = j
				break
			}
		}
	}
}

// all calls fn with every flow's slab position, in slab order; fn may remove
// the flow it is given.
func (t *flowTable) all(fn func(i uint32, st *flowState)) {
	for i := uint32(0); i < t.n; i++ {
		if st := t.at(i); st.status != stFree {
			fn(i, st)
		}
	}
}
