package wggateway

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"golang.org/x/crypto/blake2s"

	"github.com/trellis-garden/trellis/internal/wgproto"
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
	if cfg.press == nil {
		cfg.press = newPressure(CookiesAuto, 1<<30) // pressure only where a test asks for it
	}
	return &fixture{t: t, tb: newTable(bs, nil), sh: newShard(cfg)}
}

// client sends pkt from src; it returns the upstream and destination, or the drop.
func (f *fixture) client(src string, pkt []byte, now int64) (*upstream, netip.AddrPort, dropReason) {
	var route *backendState
	if isInitiation(pkt) {
		route = f.tb.route(pkt, f.sh.lastRoute[ap(src)])
	}
	return f.sh.fromClient(ap(src), pkt, route, false, now)
}

// provenClient sends pkt from src as if its initiation carried a valid gateway
// mac2 (the source is known to receive at its address).
func (f *fixture) provenClient(src string, pkt []byte, now int64) (*upstream, netip.AddrPort, dropReason) {
	var route *backendState
	if isInitiation(pkt) {
		route = f.tb.route(pkt, f.sh.lastRoute[ap(src)])
	}
	return f.sh.fromClient(ap(src), pkt, route, true, now)
}

// handshake runs initiation + response for client src and backend i, returning
// the upstream used and the backend's index.
func (f *fixture) handshake(src string, i int, clientIdx, backendIdx uint32, now int64) *upstream {
	f.t.Helper()
	up, dst, r := f.provenClient(src, initiation(key(i), clientIdx), now)
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
	if ss == nil || ss.state != transported || ss.counts[toBackend].packets != 2 || ss.counts[toClient].packets != 2 {
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
	up, _, r := f.sh.fromClient(ap("192.0.2.1:1000"), init, f.tb.route(init, nil), false, 1)
	if r != forwarded {
		t.Fatal(dropReasonNames[r])
	}
	// The replay from another address gets its own upstream socket: the backend's
	// answer (there is none for a replay, WireGuard rejects old timestamps) could
	// never reach the original client's session.
	up2, _, r := f.sh.fromClient(ap("203.0.113.5:4444"), init, f.tb.route(init, nil), false, 2)
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
	first := initiation(key(0), 5)
	up, _, _ := f.client("192.0.2.1:1000", first, 1)
	ss := f.sh.byPair[sessionKey{ap("192.0.2.1:1000"), f.tb.backends[0]}]
	// Under load the backend answers with a cookie reply for the address of the
	// upstream socket. The gateway keeps it (the client holds the gateway's
	// cookie, and a client keeps one at a time); the session stays pending.
	cookie := [16]byte{7, 7, 7}
	var reply [wgproto.CookieReplySize]byte
	wgproto.NewCookieSealer(key(0)).Reply(&reply, first, &cookie, &[24]byte{1})
	if _, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), reply[:], 2); r != dropCookieTaken {
		t.Fatalf("backend cookie reply: %s", dropReasonNames[r])
	}
	if ss.state != pending || ss.cookie != cookie {
		t.Fatalf("after a cookie reply: state %d, cookie %x", ss.state, ss.cookie)
	}
	// Forged cookie replies (random bytes, or for another index) change nothing.
	if _, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), cookieReply(5), 2); r != dropUnmatched {
		t.Fatalf("forged cookie reply: %s", dropReasonNames[r])
	}
	if _, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), cookieReply(6), 2); r != dropUnmatched {
		t.Fatalf("cookie reply for an index never sent: %s", dropReasonNames[r])
	}
	// The client's next initiation (new index) leaves through the same upstream
	// socket, with the mac2 of the backend's cookie set by the gateway.
	next := initiation(key(0), 6)
	up2, _, r := f.client("192.0.2.1:1000", next, 3)
	if r != forwarded || up2 != up {
		t.Fatalf("retry after cookie used another upstream (%v) %s", up2 != up, dropReasonNames[r])
	}
	if !wgproto.CheckMAC2(next, &cookie) {
		t.Fatal("the gateway did not set the backend's mac2")
	}
	// A response to the first initiation is still that client's.
	if to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), response(50, 6), 4); r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("response: %v %s", to, dropReasonNames[r])
	}
	// The backend starts a handshake of its own (rekey): the client answers with a
	// response addressed to the backend's new index.
	to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), initiation(key(99), 60), 5)
	if r != forwarded || to != ap("192.0.2.1:1000") {
		t.Fatalf("backend initiation: %v %s", to, dropReasonNames[r])
	}
	if u, _, r := f.client("192.0.2.1:1000", response(70, 60), 6); r != forwarded || u != up {
		t.Fatalf("client response: %s", dropReasonNames[r])
	}
	// Data for the client's new index (70) and its first one (6) reach it.
	for _, idx := range []uint32{70, 6} {
		if to, r := f.sh.fromBackend(up, ap("10.0.0.1:51820"), transport(idx, 1), 7); r != forwarded || to != ap("192.0.2.1:1000") {
			t.Fatalf("data for index %d: %s", idx, dropReasonNames[r])
		}
	}
	// A cookie reply from the client (it is under load) also finds the backend.
	if _, _, r := f.client("192.0.2.1:1000", cookieReply(60), 7); r != forwarded {
		t.Fatalf("client cookie reply: %s", dropReasonNames[r])
	}
}

// Only the backend's real answer establishes a session: a response to one of the
// session's own initiations, then data. Cookie replies, responses for other
// indexes and data for unknown indexes are not delivered and change nothing; a
// backend initiation reaches only an answered session.
func TestOnlyRealAnswersEstablish(t *testing.T) {
	f := newFixture(t, 1, shardConfig{})
	up, _, _ := f.client("192.0.2.1:1", initiation(key(0), 10), 1)
	ss := f.sh.byPair[sessionKey{ap("192.0.2.1:1"), f.tb.backends[0]}]
	be := ap("10.0.0.1:51820")
	for _, pkt := range [][]byte{response(1, 11), transport(10, 5), transport(99, 5), cookieReply(10), initiation(key(5), 3)} {
		if _, r := f.sh.fromBackend(up, be, pkt, 2); r == forwarded {
			t.Fatalf("type %d delivered to a pending session", pkt[0])
		}
	}
	if ss.state != pending || ss.counts[toClient].packets != 0 {
		t.Fatalf("state %d after unmatched packets", ss.state)
	}
	f.sh.fromBackend(up, be, response(20, 10), 3)
	if ss.state != answered {
		t.Fatalf("state %d after the matching response", ss.state)
	}
	f.client("192.0.2.1:1", transport(20, 0), 4) // the initiator's keepalive
	if ss.state != transported {
		t.Fatalf("state %d after data", ss.state)
	}
}

func TestUpstreamSlotsAndEviction(t *testing.T) {
	f := newFixture(t, 1, shardConfig{maxUpstreams: 2})
	f.handshake("192.0.2.1:1", 0, 1, 101, 1)
	f.handshake("192.0.2.2:1", 0, 2, 102, 1)
	// Both slots hold answered clients: an unproven third client (its source may
	// be spoofed) is refused, nobody evicted.
	if _, _, r := f.client("192.0.2.3:1", initiation(key(0), 3), 2); r != dropBackendFull {
		t.Fatalf("third client: %s", dropReasonNames[r])
	}
	if len(f.sh.byPair) != 2 {
		t.Fatal("an answered session was evicted")
	}
	// A proven client may take the place of an answered session that never
	// carried data, but never that of one that did.
	f.client("192.0.2.2:1", transport(102, 0), 3)
	if _, _, r := f.provenClient("192.0.2.3:1", initiation(key(0), 3), 4); r != forwarded {
		t.Fatalf("proven client: %s", dropReasonNames[r])
	}
	if f.sh.byPair[sessionKey{ap("192.0.2.2:1"), f.tb.backends[0]}] == nil || f.sh.byPair[sessionKey{ap("192.0.2.1:1"), f.tb.backends[0]}] != nil {
		t.Fatal("evicted the session that carried data")
	}
	f.client("192.0.2.3:1", transport(0, 0), 5)
	f.sh.fromBackend(f.sh.byPair[sessionKey{ap("192.0.2.3:1"), f.tb.backends[0]}].up, ap("10.0.0.1:51820"), response(103, 3), 5)
	f.client("192.0.2.3:1", transport(103, 0), 5)
	if _, _, r := f.provenClient("192.0.2.4:1", initiation(key(0), 4), 6); r != dropBackendFull {
		t.Fatalf("proven client with every slot carrying data: %s", dropReasonNames[r])
	}
	if got := f.tb.backends[0].pressureUntil.Load(); got <= 6 {
		t.Fatal("a full backend is not under pressure")
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
	// A full backend is under pressure: an unproven newcomer gets a cookie reply
	// and evicts nobody; and without pressure it could not evict a proven
	// pending session either.
	g.provenClient("192.0.2.5:1", initiation(key(0), 5), 4) // evicts .3
	if _, _, r := g.client("192.0.2.6:1", initiation(key(0), 6), 5); r != answeredWithCookie {
		t.Fatalf("unproven newcomer at a full backend: %s", dropReasonNames[r])
	}
	g.tb.backends[0].pressureUntil.Store(0)
	if _, _, r := g.client("192.0.2.6:1", initiation(key(0), 6), 5); r != dropBackendFull {
		t.Fatalf("unproven over proven: %s", dropReasonNames[r])
	}
	if g.sh.byPair[sessionKey{ap("192.0.2.5:1"), g.tb.backends[0]}] == nil {
		t.Fatal("proven pending session evicted")
	}
	// Session cap.
	h := newFixture(t, 3, shardConfig{maxSessions: 2})
	h.handshake("192.0.2.1:1", 0, 1, 101, 1)
	h.handshake("192.0.2.1:1", 1, 2, 102, 1)
	h.client("192.0.2.1:1", transport(101, 0), 1)
	h.client("192.0.2.1:1", transport(102, 0), 1)
	if _, _, r := h.provenClient("192.0.2.1:1", initiation(key(2), 3), 2); r != dropSessionLimit {
		t.Fatalf("over the cap: %s", dropReasonNames[r])
	}
	// A shard with its table three quarters full puts the gateway under
	// pressure: unproven initiations get cookie replies.
	if _, _, r := h.client("192.0.2.9:1", initiation(key(2), 4), 2); r != answeredWithCookie {
		t.Fatalf("unproven initiation with a full table: %s", dropReasonNames[r])
	}
}

// A slow backend answers a client whose pending session was evicted meanwhile:
// the answer is not delivered to whoever holds the socket now, even if that one
// replayed the evicted client's initiation (same sender index).
func TestLateAnswerAfterEvictionIsNotMisdelivered(t *testing.T) {
	f := newFixture(t, 1, shardConfig{maxUpstreams: 1})
	be := ap("10.0.0.1:51820")
	legit := initiation(key(0), 1234)
	up, _, _ := f.client("192.0.2.1:1", legit, 1)
	// An attacker's initiation evicts the pending session and takes its socket.
	up2, _, r := f.client("198.51.100.1:1", initiation(key(0), 999), 2)
	if r != forwarded || up2 != up {
		t.Fatalf("attacker: %s", dropReasonNames[r])
	}
	// The backend's late response and cookie reply for the evicted client.
	if to, r := f.sh.fromBackend(up, be, response(55, 1234), 3); r == forwarded {
		t.Fatalf("late response delivered to %v", to)
	}
	var reply [wgproto.CookieReplySize]byte
	wgproto.NewCookieSealer(key(0)).Reply(&reply, legit, &[16]byte{}, &[24]byte{})
	if to, r := f.sh.fromBackend(up, be, reply[:], 3); r == forwarded {
		t.Fatalf("late cookie reply delivered to %v", to)
	}
	// A replay of the evicted client's initiation (same index) from another
	// address cannot get that socket while the backend may still answer it...
	// (the full backend is under pressure now: an unproven replay only gets a
	// cookie reply, a proven one finds no usable socket).
	f.sh.sweep(3 + f.sh.cfg.pendingTimeout/2)
	if _, _, r := f.client("198.51.100.2:1", legit, 4); r != answeredWithCookie {
		t.Fatalf("unproven replay under pressure: %s", dropReasonNames[r])
	}
	if _, _, r := f.provenClient("198.51.100.2:1", legit, 4); r != dropBackendFull {
		t.Fatalf("replay took the socket: %s", dropReasonNames[r])
	}
	// ...nor add that index to the attacker's session on it.
	if _, _, r := f.client("198.51.100.1:1", legit, 4); r != dropStaleIndex {
		t.Fatalf("replay on the attacker's session: %s", dropReasonNames[r])
	}
	if to, r := f.sh.fromBackend(up, be, response(56, 1234), 5); r == forwarded {
		t.Fatalf("late response delivered to %v", to)
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
