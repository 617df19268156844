//go:build !amd64 || !gc || purego

package wgproto

// bestImpl is the fastest implementation this CPU runs: without assembly, the
// generic one.
func bestImpl() impl { return implGeneric }

// implAvailable reports whether this CPU runs x.
func implAvailable(x impl) bool { return x == implGeneric }

// matchSIMD is never called without assembly.
func matchSIMD(impl, []lanes16, int, *[32]uint32, *[4]uint32) int { return -1 }
