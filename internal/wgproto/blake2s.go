package wgproto

import "encoding/binary"

//go:generate go run gen_blake2s.go

// This file is the small part of BLAKE2s (RFC 7693) that mac1 needs: a keyed
// BLAKE2s-128 whose key block has been compressed ahead of time, and an unkeyed
// BLAKE2s-256 to derive the key. It is checked against golang.org/x/crypto/blake2s
// in the tests; a private copy lets a MAC1Key keep the state after the key block,
// which saves a third of the work of every check, and keeps x/crypto out of the
// gateway binary.

// The BLAKE2s initialisation vector (the SHA-256 IV).
const (
	iv0 uint32 = 0x6a09e667
	iv1 uint32 = 0xbb67ae85
	iv2 uint32 = 0x3c6ef372
	iv3 uint32 = 0xa54ff53a
	iv4 uint32 = 0x510e527f
	iv5 uint32 = 0x9b05688c
	iv6 uint32 = 0x1f83d9ab
	iv7 uint32 = 0x5be0cd19
)

const (
	blockSize = 64         // BLAKE2s block size in bytes
	lastBlock = 0xffffffff // finalisation flag f0 of the final block
)

// initState returns the BLAKE2s state for a digest of outLen bytes with a key of
// keyLen bytes (parameter block: fanout 1, depth 1, everything else zero).
func initState(outLen, keyLen int) [8]uint32 {
	return [8]uint32{
		iv0 ^ 0x01010000 ^ uint32(keyLen)<<8 ^ uint32(outLen),
		iv1, iv2, iv3, iv4, iv5, iv6, iv7,
	}
}

// loadBlock reads up to one block of little-endian words from b and pads the
// rest of the block with zeros.
func loadBlock(m *[16]uint32, b []byte) {
	if len(b) >= blockSize {
		b = b[:blockSize]
		for i := range m {
			m[i] = binary.LittleEndian.Uint32(b[4*i:])
		}
		return
	}
	var buf [blockSize]byte
	copy(buf[:], b)
	for i := range m {
		m[i] = binary.LittleEndian.Uint32(buf[4*i:])
	}
}

// hashTail absorbs msg into h, whose counter stands at t bytes, and finalises. msg
// must not be empty: a keyed hash of an empty message finalises the key block
// itself, which hashTail cannot do on a state past the key block.
func hashTail(h *[8]uint32, t uint32, msg []byte) {
	var m [16]uint32
	for len(msg) > blockSize {
		loadBlock(&m, msg)
		t += blockSize
		compress(h, &m, t, 0)
		msg = msg[blockSize:]
	}
	loadBlock(&m, msg)
	t += uint32(len(msg))
	compress(h, &m, t, lastBlock)
}

// keyedState returns the state of a keyed BLAKE2s with an outLen-byte digest after
// its key block (counter 64). key must be 1..32 bytes.
func keyedState(key []byte, outLen int) [8]uint32 {
	h := initState(outLen, len(key))
	var m [16]uint32
	loadBlock(&m, key)
	compress(&h, &m, blockSize, 0)
	return h
}

// sum256 is the unkeyed BLAKE2s-256 of a and b concatenated, for key derivation.
// Together they must be 1..64 bytes.
func sum256(a, b []byte) [32]byte {
	var buf [blockSize]byte
	n := copy(buf[:], a)
	n += copy(buf[n:], b)
	h := initState(32, 0)
	var m [16]uint32
	loadBlock(&m, buf[:])
	compress(&h, &m, uint32(n), lastBlock)
	var out [32]byte
	for i, w := range h {
		binary.LittleEndian.PutUint32(out[4*i:], w)
	}
	return out
}
