//go:build amd64 && gc && !purego

package wgproto

import "golang.org/x/sys/cpu"

//go:generate go run gen_match_amd64.go

// matchAVX512 checks the initiation given as blk (its 116 bytes before mac1 as
// little-endian words, zero-padded) and mac (its mac1) against the lanes of the
// first n groups, 16 lanes at a time. It returns the first matching lane, counted
// from groups[0] lane 0, or -1.
//
//go:noescape
func matchAVX512(groups *lanes16, n int, blk *[32]uint32, mac *[4]uint32) int

// matchAVX2 is matchAVX512 with 8 lanes at a time: n counts halves of groups.
//
//go:noescape
func matchAVX2(groups *lanes16, n int, blk *[32]uint32, mac *[4]uint32) int

// bestImpl is the fastest implementation this CPU runs.
func bestImpl() impl {
	switch {
	case cpu.X86.HasAVX512F:
		return implAVX512
	case cpu.X86.HasAVX2:
		return implAVX2
	}
	return implGeneric
}

// implAvailable reports whether this CPU runs x.
func implAvailable(x impl) bool {
	switch x {
	case implAVX512:
		return cpu.X86.HasAVX512F
	case implAVX2:
		return cpu.X86.HasAVX2
	}
	return x == implGeneric
}

// matchSIMD runs x on groups, covering their first n lanes (n > 0).
func matchSIMD(x impl, groups []lanes16, n int, blk *[32]uint32, mac *[4]uint32) int {
	switch x {
	case implAVX512:
		return matchAVX512(&groups[0], (n+15)/16, blk, mac)
	case implAVX2:
		return matchAVX2(&groups[0], (n+7)/8, blk, mac)
	}
	return -1
}
