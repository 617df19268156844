package wgproto

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/blake2s"
	"golang.zx2c4.com/wireguard/device"
)

// randomKey returns a random non-zero 32-byte key.
func randomKey(t testing.TB) [KeySize]byte {
	t.Helper()
	var k [KeySize]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

// newInitiation returns a 148-byte initiation with a random body whose mac1 was
// made by wireguard-go for the responder key pub.
func newInitiation(t testing.TB, pub [KeySize]byte) []byte {
	t.Helper()
	msg := make([]byte, InitiationSize)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	msg[0], msg[1], msg[2], msg[3] = 1, 0, 0, 0
	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(pub))
	gen.AddMacs(msg)
	return msg
}

// newResponse is newInitiation for a 92-byte response, keyed with the
// initiator's key pub.
func newResponse(t testing.TB, pub [KeySize]byte) []byte {
	t.Helper()
	msg := make([]byte, ResponseSize)
	if _, err := rand.Read(msg); err != nil {
		t.Fatal(err)
	}
	msg[0], msg[1], msg[2], msg[3] = 2, 0, 0, 0
	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(pub))
	gen.AddMacs(msg)
	return msg
}

// refCheck is wireguard-go's own mac1 check.
func refCheck(pub [KeySize]byte, msg []byte) bool {
	var c device.CookieChecker
	c.Init(device.NoisePublicKey(pub))
	return c.CheckMAC1(msg)
}

// refCompute computes mac1 with x/crypto's BLAKE2s, the way wireguard-go does.
func refCompute(t testing.TB, pub [KeySize]byte, covered []byte) [MACSize]byte {
	t.Helper()
	key := blake2s.Sum256(append([]byte(labelMAC1), pub[:]...))
	h, err := blake2s.New128(key[:])
	if err != nil {
		t.Fatal(err)
	}
	h.Write(covered)
	var mac [MACSize]byte
	h.Sum(mac[:0])
	return mac
}

func TestMAC1AgainstWireguardGo(t *testing.T) {
	for i := range 50 {
		pub, other := randomKey(t), randomKey(t)
		k, ko := NewMAC1Key(pub), NewMAC1Key(other)
		for _, msg := range [][]byte{newInitiation(t, pub), newResponse(t, pub)} {
			n := InitiationMAC1Offset
			if len(msg) == ResponseSize {
				n = ResponseMAC1Offset
			}
			if !refCheck(pub, msg) {
				t.Fatalf("%d: wireguard-go rejects its own message", i)
			}
			if !k.Check(msg) {
				t.Fatalf("%d: Check rejects a %d-byte message made by wireguard-go", i, len(msg))
			}
			if ko.Check(msg) {
				t.Fatalf("%d: Check accepts a %d-byte message for another key", i, len(msg))
			}
			if got, want := k.Compute(msg), refCompute(t, pub, msg[:n]); got != want {
				t.Fatalf("%d: Compute = %x, want %x", i, got, want)
			}
			for _, bit := range []int{8 * 4, 8*n - 1, 8 * n, 8*(n+MACSize) - 1, 8 * (n / 2)} {
				flipped := append([]byte(nil), msg...)
				flipped[bit/8] ^= 1 << (bit % 8)
				if k.Check(flipped) != refCheck(pub, flipped) || k.Check(flipped) {
					t.Fatalf("%d: Check accepts a %d-byte message with bit %d flipped", i, len(msg), bit)
				}
			}
		}
	}
}

func TestMAC1ZeroKey(t *testing.T) {
	var k MAC1Key
	msg := make([]byte, InitiationSize)
	msg[0] = byte(MessageInitiation)
	// A message whose mac1 is right for the all-zero BLAKE2s state.
	forged := append([]byte(nil), msg...)
	h := k.h
	hashTail(&h, blockSize, forged[:InitiationMAC1Offset])
	for i := range 4 {
		binary.LittleEndian.PutUint32(forged[InitiationMAC1Offset+4*i:], h[i])
	}
	for _, m := range [][]byte{msg, forged} {
		if k.Check(m) {
			t.Error("zero MAC1Key matches a message")
		}
		if got := k.Compute(m); got != ([MACSize]byte{}) {
			t.Errorf("zero MAC1Key: Compute = %x, want zeros", got)
		}
	}
}

func TestMAC1RejectsOtherMessages(t *testing.T) {
	pub := randomKey(t)
	k := NewMAC1Key(pub)
	init := newInitiation(t, pub)
	resp := newResponse(t, pub)
	badReserved := append([]byte(nil), init...)
	badReserved[2] = 1
	long := append(append([]byte(nil), init...), 0)
	cookie := make([]byte, CookieReplySize)
	cookie[0] = byte(MessageCookieReply)
	for name, msg := range map[string][]byte{
		"nil": nil, "short initiation": init[:InitiationSize-1], "long initiation": long,
		"reserved byte": badReserved, "response cut to 64": resp[:64], "cookie reply": cookie,
	} {
		if k.Check(msg) {
			t.Errorf("%s: Check = true", name)
		}
		if got := k.Compute(msg); got != ([MACSize]byte{}) {
			t.Errorf("%s: Compute = %x, want zeros", name, got)
		}
	}
}

func TestMAC1Allocs(t *testing.T) {
	pub := randomKey(t)
	k := NewMAC1Key(pub)
	init, resp := newInitiation(t, pub), newResponse(t, pub)
	if n := testing.AllocsPerRun(100, func() { k.Check(init); k.Check(resp) }); n != 0 {
		t.Errorf("Check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { k.Compute(init) }); n != 0 {
		t.Errorf("Compute allocates %v times", n)
	}
}

// FuzzMAC1 checks Check, Compute and every Router implementation against
// wireguard-go's CookieGenerator and CookieChecker on arbitrary keys and
// messages: as given, shaped into an initiation or a response with a random
// mac1, and with a mac1 that wireguard-go made.
func FuzzMAC1(f *testing.F) {
	f.Add(bytes.Repeat([]byte{9}, 32), bytes.Repeat([]byte{1}, 148), byte(1), true)
	f.Add(bytes.Repeat([]byte{7}, 32), bytes.Repeat([]byte{2}, 92), byte(2), false)
	f.Add([]byte{1}, []byte{1, 0, 0, 0}, byte(0), true)
	f.Add(make([]byte, 32), make([]byte, 200), byte(3), true)
	f.Fuzz(func(t *testing.T, keyBytes, body []byte, shape byte, sign bool) {
		var pub [KeySize]byte
		copy(pub[:], keyBytes)
		k := NewMAC1Key(pub)
		other := pub
		other[0] ^= 1

		// As given.
		_, ok := mac1Offset(body)
		if got, want := k.Check(body), ok && refCheck(pub, body); got != want {
			t.Fatalf("raw %d bytes: Check = %v, wireguard-go %v", len(body), got, want)
		}

		// Shaped into a handshake message.
		size, typ := InitiationSize, MessageInitiation
		if shape&1 == 1 {
			size, typ = ResponseSize, MessageResponse
		}
		msg := make([]byte, size)
		copy(msg, body)
		msg[0], msg[1], msg[2], msg[3] = byte(typ), 0, 0, 0
		if sign {
			var gen device.CookieGenerator
			gen.Init(device.NoisePublicKey(pub))
			gen.AddMacs(msg)
		}
		n, _ := mac1Offset(msg)
		want := refCheck(pub, msg)
		if sign && !want {
			t.Fatal("wireguard-go rejects its own mac1")
		}
		if got := k.Check(msg); got != want {
			t.Fatalf("%v: Check = %v, wireguard-go %v", typ, got, want)
		}
		if got, ref := k.Compute(msg), refCompute(t, pub, msg[:n]); got != ref {
			t.Fatalf("%v: Compute = %x, x/crypto %x", typ, got, ref)
		}
		wantIdx := -1
		if typ == MessageInitiation && want {
			wantIdx = 1
		}
		for name, x := range impls() {
			r := newRouter([][KeySize]byte{other, pub}, x)
			for _, hint := range []int{-1, 0, 1} {
				if got := r.Match(msg, hint); got != wantIdx {
					t.Fatalf("%s: Match(%v, hint %d) = %d, want %d", name, typ, hint, got, wantIdx)
				}
			}
		}
	})
}

// xcryptoMAC1 is the plain way to check mac1: x/crypto's BLAKE2s-128 keyed with
// the derived mac1 key, set up afresh for each check (three compressions).
type xcryptoMAC1 [blake2s.Size]byte

func newXCryptoMAC1(pub [KeySize]byte) xcryptoMAC1 {
	return blake2s.Sum256(append([]byte(labelMAC1), pub[:]...))
}

func (k *xcryptoMAC1) check(msg []byte) bool {
	h, _ := blake2s.New128(k[:])
	h.Write(msg[:InitiationMAC1Offset])
	var mac [MACSize]byte
	return subtle.ConstantTimeCompare(h.Sum(mac[:0]), msg[InitiationMAC1Offset:InitiationMAC2Offset]) == 1
}

func BenchmarkMAC1Check(b *testing.B) {
	pub := randomKey(b)
	k := NewMAC1Key(pub)
	for name, msg := range map[string][]byte{"initiation": newInitiation(b, pub), "response": newResponse(b, pub)} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !k.Check(msg) {
					b.Fatal("no match")
				}
			}
		})
	}
	msg := newInitiation(b, pub)
	b.Run("baseline=xcrypto-New128", func(b *testing.B) {
		x := newXCryptoMAC1(pub)
		b.ReportAllocs()
		for b.Loop() {
			if !x.check(msg) {
				b.Fatal("no match")
			}
		}
	})
	b.Run("baseline=wireguard-go", func(b *testing.B) {
		var c device.CookieChecker
		c.Init(device.NoisePublicKey(pub))
		b.ReportAllocs()
		for b.Loop() {
			if !c.CheckMAC1(msg) {
				b.Fatal("no match")
			}
		}
	})
}
