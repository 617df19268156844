package wggateway

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/crypto/blake2s"
)

// Reference construction of WireGuard messages, independent of internal/wgproto:
// mac1 = BLAKE2s-128(key = BLAKE2s-256("mac1----" || responder public key), msg[:116]).
func mac1For(pub [32]byte, msg []byte, off int) {
	k := blake2s.Sum256(append([]byte("mac1----"), pub[:]...))
	h, _ := blake2s.New128(k[:])
	h.Write(msg[:off])
	copy(msg[off:off+16], h.Sum(nil))
}

func initiation(pub [32]byte, sender uint32) []byte {
	m := make([]byte, 148)
	m[0] = 1
	binary.LittleEndian.PutUint32(m[4:8], sender)
	rand.Read(m[8:116])
	mac1For(pub, m, 116)
	return m
}

func response(sender, receiver uint32) []byte {
	m := make([]byte, 92)
	m[0] = 2
	binary.LittleEndian.PutUint32(m[4:8], sender)
	binary.LittleEndian.PutUint32(m[8:12], receiver)
	rand.Read(m[12:76])
	return m
}

func cookieReply(receiver uint32) []byte {
	m := make([]byte, 64)
	m[0] = 3
	binary.LittleEndian.PutUint32(m[4:8], receiver)
	rand.Read(m[8:])
	return m
}

func transport(receiver uint32, n int) []byte {
	m := make([]byte, 32+n)
	m[0] = 4
	binary.LittleEndian.PutUint32(m[4:8], receiver)
	rand.Read(m[8:])
	return m
}

func key(i int) [32]byte {
	var k [32]byte
	k[0], k[1] = byte(i), 0xAA
	return k
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// fixture is a shard with n backends and no sockets.
type fixture struct {
	t  *testing.T
	tb *table
	sh *shard
}

func newFixture(t *testing.T, nBackends int, cfg shardConfig) *fixture {
	var bs []Backend
	for i := 0; i < nBackends; i++ {
		bs = append(bs, Backend{Name: fmt.Sprintf("b%d", i), PublicKey: key(i), Endpoint: ap(fmt.Sprintf("10.0.0.%d:51820", i+1))})
	}
	if cfg.maxSessions == 0 {
		cfg.maxSessions = 1000
	}
	if cfg.maxUpstreams == 0 {
		cfg.maxUpstreams = 4
	}
	if cfg.pendingTimeout == 0 {
		cfg.pendingTimeout = 15e9
	}
	if cfg.idleTimeout == 0 {
		cfg.idleTimeout = 180e9
	}
	return &fixture{t: t, tb: newTable(bs, nil), sh: newShard(cfg)}
}

// client sends pkt from src; it returns the upstream and destination, or the drop.
func (f *fixture) client(src string, pkt []byte, now int64) (*upstream, netip.AddrPort, dropReason) {
	var route *backendState
	if isInitiation(pkt) {
		route = f.tb.route(pkt, f.sh.lastRoute[ap(src)])
	}
	return f.sh.fromClient(ap(src), pkt, route, now)
}

// handshake runs initiation + response for client src and backend i, returning
// the upstream used and the backend's index.
func (f *fixture) handshake(src string, i int, clientIdx, backendIdx uint32, now int64) *upstream {
	f.t.Helper()
	up, dst, r := f.client(src, initiation(key(i), clientIdx), now)
	if r != forwarded || dst != f.tb.backends[i].Endpoint {
		f.t.Fatalf("initiation from %s to b%d: %v -> %v", src, i, dst, dropReasonNames[r])
	}
	to, r := f.sh.fromBackend(up, f.tb.backends[i].Endpoint, response(backendIdx, clientIdx), now)
	if r != forwarded || to != ap(src) {
		f.t.Fatalf("response of b%d for %s went to %v (%s)", i, src, to, dropReasonNames[r])
	}
	return up
}

func TestRoutingByMAC1AndSessions(t *testing.T) {
	f := newFixture(t, 3, shardConfig{})
	up := f.handshake("192.0.2.1:1000", 2, 111, 222, 1)
	// Data both ways follows the session.
	u, dst, r := f.client("192.0.2.1:1000", transport(222, 100), 2)
	if r != forwarded || u != up || dst != ap("10.0.0.3:51820") {
		t.Fatalf("client transport: %v %v %s", u, dst, dropReasonNames[r])
	}
	to, r := f.sh.fromBackend(up, ap("10.0.0.3:51820"), transport(111, 100), 3)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("backend transport: %v %s", to, dropReasonNames[r])
	}
	// An initiation for an unknown key is dropped.
	var unknown [32]byte
	unknown[5] = 9
	if _, _, r := f.client("192.0.2.9:1", initiation(unknown, 5), 4); r != dropNoBackend {
		t.Fatalf("unknown key: %s", dropReasonNames[r])
	}
	// Garbage is dropped as malformed, from either side.
	if _, _, r := f.client("192.0.2.1:1000", []byte{4, 0, 0}, 5); r != dropMalformed {
		t.Fatalf("short packet: %s", dropReasonNames[r])
	}
	if _, r := f.sh.fromBackend(up, ap("10.0.0.3:51820"), []byte{9, 0, 0, 0}, 5); r != dropMalformed {
		t.Fatalf("backend garbage: %s", dropReasonNames[r])
	}
	ss := f.sh.byPair[sessionKey{ap("192.0.2.1:1000"), f.tb.backends[2]}]
	if ss == nil || !ss.established || ss.counts[toBackend].packets != 2 || ss.counts[toClient].packets != 2 {
		t.Fatalf("session counters: %+v", ss)
	}
	if f.tb.backends[2].handshakes.Load() != 1 {
		t.Fatal("handshake not counted")
	}
}

func TestSpoofedPacketsNeverRedirect(t *testing.T) {
	f := newFixture(t, 2, shardConfig{})
	up := f.handshake("192.0.2.1:1000", 0, 1, 2, 1)
	// A packet with the session's index from another address: dropped, and the
	// session's client address stays.
	if _, _, r := f.client("198.51.100.7:1000", transport(2, 10), 2); r != dropNoSession {
		t.Fatalf("spoofed transport: %s", dropReasonNames[r])
	}
	if _, _, r := f.client("192.0.2.1:1001", transport(2, 10), 2); r != dropNoSession {
		t.Fatalf("other port: %s", dropReasonNames[r])
	}
	to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), transport(1, 10), 3)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("return traffic redirected to %v (%s)", to, dropReasonNames[r])
	}
	// A packet on the upstream socket from an address that is not the backend.
	if _, r := f.sh.fromBackend(up, ap("10.0.0.99:51820"), transport(1, 10), 3); r != dropNoSession {
		t.Fatalf("foreign source on upstream: %s", dropReasonNames[r])
	}
	// Another backend's endpoint on this upstream has no session either.
	if _, r := f.sh.fromBackend(up, ap("10.0.0.2:51820"), transport(1, 10), 3); r != dropNoSession {
		t.Fatalf("other backend on upstream: %s", dropReasonNames[r])
	}
}

func TestReplayedInitiationDisturbsNobody(t *testing.T) {
	f := newFixture(t, 1, shardConfig{})
	init := initiation(key(0), 7)
	up, _, r := f.sh.fromClient(ap("192.0.2.1:1000"), init, f.tb.route(init, nil), 1)
	if r != forwarded {
		t.Fatal(dropReasonNames[r])
	}
	// The replay from another address gets its own upstream socket: the backend's
	// answer (there is none for a replay, WireGuard rejects old timestamps) could
	// never reach the original client's session.
	up2, _, r := f.sh.fromClient(ap("203.0.113.5:4444"), init, f.tb.route(init, nil), 2)
	if r != forwarded || up2 == up {
		t.Fatalf("replay: %s, same upstream %v", dropReasonNames[r], up2 == up)
	}
	to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), response(9, 7), 3)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("response after replay went to %v", to)
	}
	// The replay's pending session expires; the real one stays.
	f.sh.sweep(3 + f.sh.cfg.pendingTimeout + 1)
	if len(f.sh.byPair) != 1 || f.sh.nSessions != 1 || up2.sessions[ap("10.0.0.1:51820")] != nil {
		t.Fatalf("after sweep: %d sessions", len(f.sh.byPair))
	}
	if _, _, r := f.client("192.0.2.1:1000", transport(9, 1), 4); r != forwarded {
		t.Fatalf("real session broken: %s", dropReasonNames[r])
	}
}

func TestIndexCollisions(t *testing.T) {
	f := newFixture(t, 2, shardConfig{})
	// Two clients pick the same index towards the same backend, and two backends
	// pick the same index for their clients: each packet still finds its session.
	upA := f.handshake("192.0.2.1:1000", 0, 42, 77, 1)
	upB := f.handshake("192.0.2.2:1000", 0, 42, 77, 1)
	upC := f.handshake("192.0.2.3:1000", 1, 42, 77, 1)
	if upA == upB {
		t.Fatal("two clients of one backend share an upstream socket")
	}
	for _, c := range []struct {
		src string
		up  *upstream
		be  string
	}{{"192.0.2.1:1000", upA, "10.0.0.1:51820"}, {"192.0.2.2:1000", upB, "10.0.0.1:51820"}, {"192.0.2.3:1000", upC, "10.0.0.2:51820"}} {
		u, dst, r := f.client(c.src, transport(77, 1), 2)
		if r != forwarded || u != c.up || dst != ap(c.be) {
			t.Fatalf("%s: %v %v %s", c.src, u, dst, dropReasonNames[r])
		}
		to, r := f.sh.fromBackend(c.up, ap(c.be), transport(42, 1), 2)
		if r != forwarded || to != ap(c.src) {
			t.Fatalf("%s back: %v %s", c.src, to, dropReasonNames[r])
		}
	}
}

func TestCookieReplyAndBackendInitiatedHandshake(t *testing.T) {
	f := newFixture(t, 1, shardConfig{})
	up, _, _ := f.client("192.0.2.1:1000", initiation(key(0), 5), 1)
	// Under load the backend answers with a cookie reply: it goes to the client.
	to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), cookieReply(5), 2)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("cookie reply: %v %s", to, dropReasonNames[r])
	}
	// The client's next initiation (new index, now with mac2) leaves through the
	// same upstream socket, so the cookie (bound to that address) is valid.
	up2, _, r := f.client("192.0.2.1:1000", initiation(key(0), 6), 3)
	if r != forwarded || up2 != up {
		t.Fatalf("retry after cookie used another upstream (%v) %s", up2 != up, dropReasonNames[r])
	}
	f.sh.fromBackend(up, ap("10.0.0.1:51820"), response(50, 6), 4)
	// The backend starts a handshake of its own (rekey): the client answers with a
	// response addressed to the backend's new index.
	to, r = f.sh.fromBackend(up, ap("10.0.0.1:51820"), initiation(key(99), 60), 5)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("backend initiation: %v %s", to, dropReasonNames[r])
	}
	if u, _, r := f.client("192.0.2.1:1000", response(7, 60), 6); r != forwarded || u != up {
		t.Fatalf("client response: %s", dropReasonNames[r])
	}
	// A cookie reply from the client (it is under load) also finds the backend.
	if _, _, r := f.client("192.0.2.1:1000", cookieReply(60), 7); r != forwarded {
		t.Fatalf("client cookie reply: %s", dropReasonNames[r])
	}
}

func TestUpstreamSlotsAndEviction(t *testing.T) {
	f := newFixture(t, 1, shardConfig{maxUpstreams: 2})
	f.handshake("192.0.2.1:1", 0, 1, 101, 1)
	f.handshake("192.0.2.2:1", 0, 2, 102, 1)
	// Both slots hold answered clients: a third client is refused, nobody evicted.
	if _, _, r := f.client("192.0.2.3:1", initiation(key(0), 3), 2); r != dropBackendFull {
		t.Fatalf("third client: %s", dropReasonNames[r])
	}
	if len(f.sh.byPair) != 2 {
		t.Fatal("an answered session was evicted")
	}
	// With one slot pending, a new client evicts the oldest pending one.
	g := newFixture(t, 1, shardConfig{maxUpstreams: 2})
	g.handshake("192.0.2.1:1", 0, 1, 101, 1)
	g.client("192.0.2.2:1", initiation(key(0), 2), 2)
	if _, _, r := g.client("192.0.2.3:1", initiation(key(0), 3), 3); r != forwarded {
		t.Fatalf("pending not evicted: %s", dropReasonNames[r])
	}
	if g.sh.byPair[sessionKey{ap("192.0.2.2:1"), g.tb.backends[0]}] != nil {
		t.Fatal("oldest pending session still there")
	}
	// Session cap.
	h := newFixture(t, 3, shardConfig{maxSessions: 2})
	h.handshake("192.0.2.1:1", 0, 1, 101, 1)
	h.handshake("192.0.2.1:1", 1, 2, 102, 1)
	if _, _, r := h.client("192.0.2.1:1", initiation(key(2), 3), 2); r != dropSessionLimit {
		t.Fatalf("over the cap: %s", dropReasonNames[r])
	}
}

func TestRemovedBackendSessionsEnd(t *testing.T) {
	f := newFixture(t, 2, shardConfig{})
	f.handshake("192.0.2.1:1", 0, 1, 101, 1)
	up1 := f.handshake("192.0.2.2:1", 1, 2, 102, 1)
	// Keep b1 only: b0's sessions end, b1's carry on with their counters.
	keep := f.tb.backends[1].Backend
	f.tb = newTable([]Backend{keep}, f.tb)
	if _, _, r := f.client("192.0.2.1:1", transport(101, 1), 2); r != dropBackendGone {
		t.Fatalf("removed backend: %s", dropReasonNames[r])
	}
	if _, _, r := f.client("192.0.2.2:1", transport(102, 1), 2); r != forwarded {
		t.Fatalf("kept backend: %s", dropReasonNames[r])
	}
	if f.sh.byPair[sessionKey{ap("192.0.2.2:1"), f.tb.backends[0]}] == nil || up1.sessions[keep.Endpoint] == nil {
		t.Fatal("kept backend lost its session")
	}
	f.sh.sweep(3)
	if f.sh.nSessions != 1 {
		t.Fatalf("sessions after sweep: %d", f.sh.nSessions)
	}
	// Idle sessions end too.
	f.sh.sweep(3 + f.sh.cfg.idleTimeout + 1)
	if f.sh.nSessions != 0 || len(f.sh.byClient) != 0 || len(f.sh.lastRoute) != 0 {
		t.Fatalf("after idle sweep: %d sessions, %d indexes, %d routes", f.sh.nSessions, len(f.sh.byClient), len(f.sh.lastRoute))
	}
}
