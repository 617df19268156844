package wgproto

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/device"
)

func randomInitiation(t testing.TB, pub [32]byte) []byte {
	msg := make([]byte, InitiationSize)
	msg[0] = 1
	if _, err := rand.Read(msg[4:InitiationMAC1Offset]); err != nil {
		t.Fatal(err)
	}
	k := NewMAC1Key(pub)
	mac := k.Compute(msg)
	copy(msg[InitiationMAC1Offset:], mac[:])
	return msg
}

// A cookie reply the gateway writes is accepted by wireguard-go's own initiator
// code, and the mac2 that initiator then computes is the one CheckMAC2 expects.
func TestCookieReplyAcceptedByWireGuardGo(t *testing.T) {
	var pub [32]byte
	rand.Read(pub[:])
	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(pub))
	msg := randomInitiation(t, pub)
	gen.AddMacs(msg) // as the client sends it: remembers mac1, no cookie yet
	if !bytes.Equal(msg[InitiationMAC2Offset:], make([]byte, 16)) {
		t.Fatal("mac2 set without a cookie")
	}

	var secretBytes [32]byte
	rand.Read(secretBytes[:])
	secret := NewCookieSecret(secretBytes)
	src := netip.MustParseAddrPort("192.0.2.7:40000")
	cookie := secret.Cookie(src)
	var nonce [24]byte
	rand.Read(nonce[:])
	var reply [CookieReplySize]byte
	if !NewCookieSealer(pub).Reply(&reply, msg, &cookie, &nonce) {
		t.Fatal("Reply refused an initiation")
	}
	if typ, ok := Type(reply[:]); !ok || typ != MessageCookieReply || Receiver(reply[:]) != Sender(msg) {
		t.Fatalf("reply type %v/%v, receiver %d want %d", typ, ok, Receiver(reply[:]), Sender(msg))
	}
	var parsed device.MessageCookieReply
	if err := binary.Read(bytes.NewReader(reply[:]), binary.LittleEndian, &parsed); err != nil {
		t.Fatal(err)
	}
	if !gen.ConsumeReply(&parsed) {
		t.Fatal("wireguard-go could not decrypt the cookie reply")
	}
	next := randomInitiation(t, pub)
	gen.AddMacs(next)
	if !CheckMAC2(next, &cookie) {
		t.Fatal("mac2 of wireguard-go's next initiation does not check")
	}
	other := secret.Cookie(netip.MustParseAddrPort("192.0.2.7:40001"))
	if CheckMAC2(next, &other) {
		t.Fatal("mac2 checks with the cookie of another port")
	}
	// A reply bound to another mac1 (an older initiation) is refused.
	var stale [CookieReplySize]byte
	NewCookieSealer(pub).Reply(&stale, randomInitiation(t, pub), &cookie, &nonce)
	binary.Read(bytes.NewReader(stale[:]), binary.LittleEndian, &parsed)
	if gen.ConsumeReply(&parsed) {
		t.Fatal("wireguard-go accepted a cookie reply bound to another mac1")
	}
	// Replying with another server's key is refused as well.
	var pub2 [32]byte
	rand.Read(pub2[:])
	NewCookieSealer(pub2).Reply(&stale, next, &cookie, &nonce)
	binary.Read(bytes.NewReader(stale[:]), binary.LittleEndian, &parsed)
	if gen.ConsumeReply(&parsed) {
		t.Fatal("wireguard-go accepted a cookie reply sealed with another key")
	}
}

// The gateway reads the cookie a wireguard-go responder under load hands out and
// computes the mac2 that responder then accepts.
func TestOpenWireGuardGoCookieReply(t *testing.T) {
	var pub [32]byte
	rand.Read(pub[:])
	var checker device.CookieChecker
	checker.Init(device.NoisePublicKey(pub))
	msg := randomInitiation(t, pub)
	src, _ := netip.MustParseAddrPort("127.0.0.1:5555").MarshalBinary()
	r, err := checker.CreateReply(msg, Sender(msg), src)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	binary.Write(&buf, binary.LittleEndian, r)
	mac1 := MAC1(msg)
	sealer := NewCookieSealer(pub)
	cookie, ok := sealer.Open(buf.Bytes(), &mac1)
	if !ok {
		t.Fatal("cannot open wireguard-go's cookie reply")
	}
	next := randomInitiation(t, pub)
	if checker.CheckMAC2(next, src) {
		t.Fatal("mac2 valid before it was set")
	}
	if !SetMAC2(next, &cookie) || !checker.CheckMAC2(next, src) {
		t.Fatal("wireguard-go rejects the mac2 computed from its cookie")
	}
	if !checker.CheckMAC1(next) {
		t.Fatal("setting mac2 broke mac1")
	}
	// Wrong additional data or a flipped bit: refused.
	other := MAC1(next)
	if _, ok := sealer.Open(buf.Bytes(), &other); ok {
		t.Fatal("opened with the mac1 of another message")
	}
	b := bytes.Clone(buf.Bytes())
	b[40] ^= 1
	if _, ok := sealer.Open(b, &mac1); ok {
		t.Fatal("opened a tampered reply")
	}
}

func TestCookieAddressForms(t *testing.T) {
	var s [32]byte
	rand.Read(s[:])
	secret := NewCookieSecret(s)
	a := secret.Cookie(netip.MustParseAddrPort("192.0.2.1:51820"))
	if b := secret.Cookie(netip.MustParseAddrPort("[::ffff:192.0.2.1]:51820")); a != b {
		t.Fatal("IPv4-mapped form gets another cookie")
	}
	for _, other := range []string{"192.0.2.2:51820", "192.0.2.1:51821", "[2001:db8::1]:51820"} {
		if secret.Cookie(netip.MustParseAddrPort(other)) == a {
			t.Fatalf("%s shares the cookie of 192.0.2.1:51820", other)
		}
	}
	var s2 [32]byte
	rand.Read(s2[:])
	secret2 := NewCookieSecret(s2)
	if secret2.Cookie(netip.MustParseAddrPort("192.0.2.1:51820")) == a {
		t.Fatal("another secret gives the same cookie")
	}
}

func TestCookieAllocations(t *testing.T) {
	var pub, s [32]byte
	rand.Read(pub[:])
	secret := NewCookieSecret(s)
	sealer := NewCookieSealer(pub)
	msg := randomInitiation(t, pub)
	src := netip.MustParseAddrPort("192.0.2.1:1")
	var reply [CookieReplySize]byte
	var nonce [24]byte
	if n := testing.AllocsPerRun(100, func() {
		c := secret.Cookie(src)
		CheckMAC2(msg, &c)
	}); n != 0 {
		t.Fatalf("%v allocations per mac2 check", n)
	}
	// x/crypto's XChaCha20-Poly1305 allocates its per-nonce cipher state once;
	// its generic (purego) path once more.
	allowed := 1.0
	if purego {
		allowed = 2
	}
	if n := testing.AllocsPerRun(100, func() {
		c := secret.Cookie(src)
		sealer.Reply(&reply, msg, &c, &nonce)
	}); n > allowed {
		t.Fatalf("%v allocations per cookie reply", n)
	}
}

// FuzzCookie: the cookie functions never panic on arbitrary bytes, and Open never
// accepts what Reply did not seal for that mac1.
func FuzzCookie(f *testing.F) {
	var pub [32]byte
	pub[0] = 9
	sealer := NewCookieSealer(pub)
	// Deterministic: fuzz workers rebuild this and must get the same reply.
	msg := make([]byte, InitiationSize)
	msg[0] = 1
	for i := 4; i < InitiationMAC1Offset; i++ {
		msg[i] = byte(i)
	}
	k := NewMAC1Key(pub)
	mac := k.Compute(msg)
	copy(msg[InitiationMAC1Offset:], mac[:])
	var reply [CookieReplySize]byte
	cookie := [CookieSize]byte{1, 2, 3}
	sealer.Reply(&reply, msg, &cookie, &[24]byte{4})
	f.Add(reply[:], msg)
	f.Add(msg, reply[:])
	f.Add([]byte{3, 0, 0, 0}, []byte{1})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		mac1 := MAC1(b)
		got, ok := sealer.Open(a, &mac1)
		// The receiver index is not authenticated (nor is it in WireGuard).
		if ok && (len(a) != CookieReplySize || !bytes.Equal(a[8:], reply[8:]) || got != cookie) {
			t.Fatalf("opened a reply that was never sealed: %x", a)
		}
		CheckMAC2(a, &cookie)
		c := bytes.Clone(a)
		if SetMAC2(c, &cookie) && !CheckMAC2(c, &cookie) {
			t.Fatal("SetMAC2 then CheckMAC2 fails")
		}
		var out [CookieReplySize]byte
		if sealer.Reply(&out, a, &cookie, &[24]byte{}) && Receiver(out[:]) != Sender(a) {
			t.Fatal("reply to the wrong index")
		}
	})
}
