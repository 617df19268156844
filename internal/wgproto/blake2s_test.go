package wgproto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"testing"

	"golang.org/x/crypto/blake2s"
)

// ownKeyed is a keyed BLAKE2s of outLen (16 or 32) bytes computed with this
// package's code. key is 1..32 bytes and msg is not empty.
func ownKeyed(key, msg []byte, outLen int) []byte {
	h := keyedState(key, outLen)
	hashTail(&h, blockSize, msg)
	out := make([]byte, 32)
	for i, w := range h {
		binary.LittleEndian.PutUint32(out[4*i:], w)
	}
	return out[:outLen]
}

// refKeyed is ownKeyed computed with x/crypto.
func refKeyed(t testing.TB, key, msg []byte, outLen int) []byte {
	t.Helper()
	newHash := blake2s.New256
	if outLen == 16 {
		newHash = blake2s.New128
	}
	h, err := newHash(key)
	if err != nil {
		t.Fatal(err)
	}
	h.Write(msg)
	return h.Sum(nil)
}

func TestSum256(t *testing.T) {
	// RFC 7693, appendix B.
	want, _ := hex.DecodeString("508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982")
	if got := sum256([]byte("ab"), []byte("c")); !bytes.Equal(got[:], want) {
		t.Errorf("BLAKE2s-256(abc) = %x, want %x", got, want)
	}
	data := make([]byte, blockSize)
	for i := range data {
		data[i] = byte(i*13 + 5)
	}
	for n := 1; n <= blockSize; n++ {
		for _, split := range []int{0, n / 2, n} {
			if got, want := sum256(data[:split], data[split:n]), blake2s.Sum256(data[:n]); got != want {
				t.Fatalf("sum256 of %d bytes split at %d = %x, want %x", n, split, got, want)
			}
		}
	}
}

func TestKeyedAgainstXCrypto(t *testing.T) {
	data := make([]byte, 300)
	for i := range data {
		data[i] = byte(i*31 + 7)
	}
	for _, keyLen := range []int{1, 16, 31, 32} {
		for _, outLen := range []int{16, 32} {
			for n := 1; n <= len(data); n++ {
				key, msg := data[len(data)-keyLen:], data[:n]
				if got, want := ownKeyed(key, msg, outLen), refKeyed(t, key, msg, outLen); !bytes.Equal(got, want) {
					t.Fatalf("key %d bytes, out %d bytes, message %d bytes: %x, want %x", keyLen, outLen, n, got, want)
				}
			}
		}
	}
}

// FuzzBLAKE2s checks this package's BLAKE2s against x/crypto on arbitrary keys
// and messages.
func FuzzBLAKE2s(f *testing.F) {
	f.Add([]byte("k"), []byte("m"), true)
	f.Add(bytes.Repeat([]byte{0xff}, 32), bytes.Repeat([]byte{0xaa}, 116), true)
	f.Add(bytes.Repeat([]byte{1}, 40), bytes.Repeat([]byte{2}, 64), false)
	f.Add([]byte{}, bytes.Repeat([]byte{3}, 129), false)
	f.Fuzz(func(t *testing.T, key, msg []byte, short bool) {
		if len(msg) == 0 {
			return
		}
		if len(msg) <= blockSize {
			if got, want := sum256(msg, nil), blake2s.Sum256(msg); got != want {
				t.Fatalf("sum256(%x) = %x, want %x", msg, got, want)
			}
		}
		if len(key) == 0 || len(key) > 32 {
			return
		}
		outLen := 32
		if short {
			outLen = 16
		}
		if got, want := ownKeyed(key, msg, outLen), refKeyed(t, key, msg, outLen); !bytes.Equal(got, want) {
			t.Fatalf("keyed(%x, %x) = %x, want %x", key, msg, got, want)
		}
	})
}
