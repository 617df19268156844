package wgproto

import "encoding/binary"

// Router finds which of a fixed set of servers a handshake initiation is meant
// for, by checking its mac1 against each server's public key. It is immutable
// after NewRouter and safe for concurrent use.
//
// On amd64 the scan checks 16 keys at a time with AVX-512, or 8 with AVX2: every
// key hashes the same message, one key per SIMD lane. On an AMD EPYC (Zen 4) a
// key costs about 25 ns with AVX-512, 40 ns with AVX2 and 300 ns in plain Go, so
// a scan of 1000 keys takes 25 to 40 µs where there is AVX2. A right hint costs
// one plain check.
type Router struct {
	keys   []MAC1Key // one per server, in the order given to NewRouter
	groups []lanes16 // the same key states, transposed for the SIMD scan
	impl   impl
}

// lanes16 holds the keyed BLAKE2s states of 16 keys transposed: word w of the
// state of key 16*g+j is groups[g][w][j], so one vector load gives a word for
// all lanes.
type lanes16 [8][16]uint32

// impl names an implementation of the scan.
type impl int

const (
	implGeneric impl = iota // one key at a time, in Go
	implAVX2                // 8 keys at a time
	implAVX512              // 16 keys at a time
)

// NewRouter returns a Router for the servers with the given static public keys;
// Match reports a server by its index in keys. Keys may repeat; Match then
// reports the first.
func NewRouter(keys [][KeySize]byte) *Router {
	return newRouter(keys, bestImpl())
}

// newRouter is NewRouter with a chosen implementation, for tests and benchmarks.
func newRouter(keys [][KeySize]byte, x impl) *Router {
	r := &Router{keys: make([]MAC1Key, len(keys)), impl: x}
	for i, k := range keys {
		r.keys[i] = NewMAC1Key(k)
	}
	if x == implGeneric || len(keys) == 0 {
		return r
	}
	// Lanes past the last key repeat the last key, so they can only match where
	// that key matches first.
	r.groups = make([]lanes16, (len(keys)+15)/16)
	for g := range r.groups {
		for j := range 16 {
			k := &r.keys[min(16*g+j, len(keys)-1)]
			for w := range 8 {
				r.groups[g][w][j] = k.h[w]
			}
		}
	}
	return r
}

// Len returns the number of keys. A nil Router has none.
func (r *Router) Len() int {
	if r == nil {
		return 0
	}
	return len(r.keys)
}

// Match returns the index of the key whose mac1 msg carries, or -1 if msg is not
// a valid initiation (see Type) or no key matches. It tries hint first when it
// is a valid index, such as the server the sender's last initiation went to,
// and otherwise checks every key. Match does not allocate.
func (r *Router) Match(msg []byte, hint int) int {
	if t, ok := Type(msg); !ok || t != MessageInitiation || r.Len() == 0 {
		return -1
	}
	if hint >= 0 && hint < len(r.keys) && r.keys[hint].Check(msg) {
		return hint
	}
	if r.impl == implGeneric {
		for i := range r.keys {
			if r.keys[i].Check(msg) {
				return i
			}
		}
		return -1
	}
	var blk [32]uint32
	for w := range InitiationMAC1Offset / 4 {
		blk[w] = binary.LittleEndian.Uint32(msg[4*w:])
	}
	var mac [4]uint32
	for w := range mac {
		mac[w] = binary.LittleEndian.Uint32(msg[InitiationMAC1Offset+4*w:])
	}
	if i := matchSIMD(r.impl, r.groups, len(r.keys), &blk, &mac); i < len(r.keys) {
		return i
	}
	return -1
}
