//go:build !purego

package wgproto

// purego: the generic paths of this package and of x/crypto are built (make purego).
const purego = false
