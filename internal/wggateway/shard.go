package wggateway

import (
	"net/netip"
	"sync"

	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

// dropReason says why a packet was not forwarded; the label of the drops metric.
type dropReason uint8

const (
	forwarded          dropReason = iota
	dropMalformed                 // not a WireGuard message
	dropNoBackend                 // initiation whose mac1 matches no backend
	dropNoSession                 // unknown index, or not from the session's address
	dropRateLimited               // source over its handshake rate
	dropBackendFull               // every upstream slot of the backend holds a client that cannot be evicted
	dropSessionLimit              // session cap reached
	dropBackendGone               // session of a removed backend
	dropUpstreamError             // no upstream socket could be opened
	dropUnmatched                 // backend packet whose receiver index is not its session's
	dropStaleIndex                // initiation reusing an index of a session just ended on its socket
	dropCookieTaken               // the backend's cookie reply, used by the gateway itself
	answeredWithCookie            // initiation without a valid gateway mac2 under pressure: cookie reply sent
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	forwarded:          "forwarded",
	dropMalformed:      "malformed",
	dropNoBackend:      "no_backend",
	dropNoSession:      "no_session",
	dropRateLimited:    "rate_limited",
	dropBackendFull:    "backend_full",
	dropSessionLimit:   "session_limit",
	dropBackendGone:    "backend_removed",
	dropUpstreamError:  "upstream_error",
	dropUnmatched:      "unmatched_index",
	dropStaleIndex:     "stale_index",
	dropCookieTaken:    "cookie_taken",
	answeredWithCookie: "cookie_sent",
}

// isDrop reports whether r counts in dropped_packets_total; the last two are
// answered or used, not dropped, and have metrics of their own.
func (r dropReason) isDrop() bool {
	return r != forwarded && r != dropCookieTaken && r != answeredWithCookie
}

const (
	toBackend = 0
	toClient  = 1
)

// ringSize bounds the indexes a session remembers per kind; WireGuard keeps at
// most three keypairs (previous, current, next) alive at once.
const ringSize = 4

// ring holds the last ringSize indexes of one kind.
type ring struct {
	v       [ringSize]uint32
	n, next uint8
}

func (r *ring) has(x uint32) bool {
	for i := uint8(0); i < r.n; i++ {
		if r.v[i] == x {
			return true
		}
	}
	return false
}

// add remembers x; it returns the index it pushed out, if any.
func (r *ring) add(x uint32) (old uint32, pushed bool) {
	if r.has(x) {
		return 0, false
	}
	if r.n == ringSize {
		old, pushed = r.v[r.next], true
	} else {
		r.n++
	}
	r.v[r.next] = x
	r.next = (r.next + 1) % ringSize
	return old, pushed
}

// sessionState orders how much a session has proven; lower states are evicted
// first.
type sessionState uint8

const (
	// pending: no real answer from the backend yet.
	pending sessionState = iota
	// answered: the backend sent a handshake response to one of the session's
	// own initiations (a cookie reply does not count).
	answered
	// transported: transport data flowed on an answered session. Never evicted.
	transported
)

// session binds one client address to one backend through one upstream socket of
// the shard. It outlives WireGuard's handshakes (every 2 minutes): what changes per
// handshake are the indexes, which the session tracks.
type session struct {
	client  netip.AddrPort
	backend *backendState
	up      *upstream
	state   sessionState
	// proven: created by an initiation with a valid gateway mac2, so the client
	// receives packets at its address.
	proven   bool
	created  int64 // unix nanos
	lastSeen int64
	lastInit int64 // the client's last initiation
	// indexes are the backend's sender indexes (receiver of the client's data);
	// inits the sender indexes of the client's initiations (receiver of the
	// backend's response or cookie reply); clientIdx the client's indexes of
	// answered handshakes (receiver of the backend's data).
	indexes, inits, clientIdx ring
	// lastMAC1 is the mac1 of the last initiation forwarded: the backend binds
	// its cookie reply to it.
	lastMAC1 [wgproto.MACSize]byte
	// cookie is the backend's cookie for this upstream socket, got at cookieAt.
	cookie   [wgproto.CookieSize]byte
	cookieAt int64
	counts   [2]struct{ packets, bytes uint64 }
}

func (ss *session) evictable() bool { return ss.state != transported }

// before reports whether ss should be evicted before o: lower state, unproven
// before proven, then the one quiet for longer.
func (ss *session) before(o *session) bool {
	if ss.state != o.state {
		return ss.state < o.state
	}
	if ss.proven != o.proven {
		return !ss.proven
	}
	return ss.lastSeen < o.lastSeen
}

type clientKey struct {
	client netip.AddrPort
	index  uint32
}

type sessionKey struct {
	client  netip.AddrPort
	backend *backendState
}

// grave remembers, per upstream socket and backend, the initiation and client
// indexes of the last session that ended there, until the backend can no longer
// be answering it. A new session on that socket must not reuse one of them, or a
// late answer meant for the old client would match the new one.
type grave struct {
	idx   [graveSize]uint32
	n     uint8
	until int64
}

// graveSize bounds the indexes a grave keeps: those of the last few sessions that
// ended on one socket with one backend within the pending timeout.
const graveSize = 16

func (g *grave) has(x uint32) bool {
	for i := uint8(0); i < g.n; i++ {
		if g.idx[i] == x {
			return true
		}
	}
	return false
}

// bury adds the indexes of ss, pushing out the oldest when full.
func (g *grave) bury(r *ring) {
	for i := uint8(0); i < r.n; i++ {
		x := r.v[i]
		if g.has(x) {
			continue
		}
		if g.n == graveSize {
			copy(g.idx[:], g.idx[1:])
			g.n--
		}
		g.idx[g.n] = x
		g.n++
	}
}

// upstream is one socket the shard uses towards backends. Each backend sees every
// client of its own through a different upstream socket, so a backend's packets
// arriving on a socket belong to at most one session: no index lookups (and so no
// index collisions) on the way back, and a cookie the backend hands out (bound to
// the address it sees) stays valid for that socket. On top, a backend packet is
// delivered only if its receiver index is one of that session's own.
type upstream struct {
	id       int
	sessions map[netip.AddrPort]*session // by backend endpoint
	graves   map[netip.AddrPort]grave    // by backend endpoint
	conn     *udpbatch.Conn              // nil in tests of the core
	// out collects the listener goroutine's packets for this socket per batch.
	out []udpbatch.Message
}

// backendShard is what a shard keeps per backend: counts for the pressure rule
// and the totals of ended sessions (under the shard lock, so a scrape sees a
// session's packets either in it or in the totals, never in neither).
type backendShard struct {
	sessions, pending int
	retired           [2]struct{ packets, bytes uint64 }
}

// shardConfig are the limits of one shard.
type shardConfig struct {
	maxSessions    int
	maxUpstreams   int
	pendingTimeout int64 // nanos
	idleTimeout    int64 // nanos
	press          *pressure
	// newUpstreamSocket opens up's socket and starts its reader; nil in tests of
	// the core, where upstreams have no socket.
	newUpstreamSocket func(up *upstream) error
}

// shard holds the sessions of the clients the kernel hashes to one listener socket
// (SO_REUSEPORT): a client always lands on the same shard, so shards share nothing
// but atomics. All fields are guarded by mu; the data path takes it once per batch.
type shard struct {
	mu        sync.Mutex
	cfg       shardConfig
	byClient  map[clientKey]*session  // client -> backend direction
	byPair    map[sessionKey]*session // initiations: existing session of (client, backend)
	lastRoute map[netip.AddrPort]*backendState
	perBack   map[*backendState]*backendShard
	ups       []*upstream
	nSessions int
	drops     [numDropReasons]uint64
}

func newShard(cfg shardConfig) *shard {
	if cfg.press == nil {
		cfg.press = newPressure(CookiesAuto, cfg.maxUpstreams/4)
	}
	return &shard{
		cfg:       cfg,
		byClient:  map[clientKey]*session{},
		byPair:    map[sessionKey]*session{},
		lastRoute: map[netip.AddrPort]*backendState{},
		perBack:   map[*backendState]*backendShard{},
	}
}

func (s *shard) backendShard(b *backendState) *backendShard {
	bs := s.perBack[b]
	if bs == nil {
		bs = &backendShard{}
		s.perBack[b] = bs
	}
	return bs
}

// fromClient decides where a client's packet goes. For an initiation, route is the
// backend its mac1 matched (nil: none) and proven whether it carried a valid
// gateway mac2 — both computed outside the lock by the caller, which also applied
// the rate limit and the cookie rule. pkt may be changed (an initiation gets the
// backend's mac2 when the backend demanded one).
func (s *shard) fromClient(src netip.AddrPort, pkt []byte, route *backendState, proven bool, now int64) (*upstream, netip.AddrPort, dropReason) {
	return s.fromClientRun(src, pkt, 1, route, proven, now)
}

// fromClientRun is fromClient for pkt holding dgrams datagrams: a run of
// transport messages with one receiver index cut from a coalesced buffer (see
// splitter), routed once, or a single datagram (dgrams 1).
func (s *shard) fromClientRun(src netip.AddrPort, pkt []byte, dgrams uint64, route *backendState, proven bool, now int64) (*upstream, netip.AddrPort, dropReason) {
	typ, ok := wgproto.Type(pkt)
	if !ok {
		return nil, netip.AddrPort{}, dropMalformed
	}
	if typ == wgproto.MessageInitiation {
		if route == nil {
			return nil, netip.AddrPort{}, dropNoBackend
		}
		sender := wgproto.Sender(pkt)
		ss, reason := s.sessionFor(src, route, sender, proven, now)
		if ss == nil {
			return nil, netip.AddrPort{}, reason
		}
		s.lastRoute[src] = route
		ss.lastSeen, ss.lastInit = now, now
		ss.inits.add(sender)
		ss.lastMAC1 = wgproto.MAC1(pkt)
		if ss.cookieAt != 0 && now-ss.cookieAt < backendCookieLifetime {
			wgproto.SetMAC2(pkt, &ss.cookie)
		}
		route.handshakes.Add(1)
		return s.count(ss, toBackend, len(pkt), 1)
	}
	// Response (to a backend's initiation), cookie reply, transport: all carry the
	// backend's index as receiver, and must come from the session's client address.
	ss := s.byClient[clientKey{client: src, index: wgproto.Receiver(pkt)}]
	if ss == nil {
		return nil, netip.AddrPort{}, dropNoSession
	}
	if ss.backend.removed.Load() {
		s.remove(ss, now)
		return nil, netip.AddrPort{}, dropBackendGone
	}
	switch typ {
	case wgproto.MessageResponse:
		// The client answers the backend's handshake: its sender index is the
		// receiver of the backend's data from now on.
		sender := wgproto.Sender(pkt)
		if !ss.up.usable(ss.backend, sender, now) {
			return nil, netip.AddrPort{}, dropStaleIndex
		}
		ss.clientIdx.add(sender)
	case wgproto.MessageTransport:
		if ss.state == answered {
			s.setState(ss, transported)
		}
	}
	ss.lastSeen = now
	return s.count(ss, toBackend, len(pkt), dgrams)
}

func (s *shard) count(ss *session, dir int, n int, dgrams uint64) (*upstream, netip.AddrPort, dropReason) {
	ss.counts[dir].packets += dgrams
	ss.counts[dir].bytes += uint64(n)
	return ss.up, ss.backend.Endpoint, forwarded
}

func (s *shard) setState(ss *session, st sessionState) {
	if ss.state == pending && st != pending {
		s.backendShard(ss.backend).pending--
	}
	ss.state = st
}

// fromBackend decides where a backend's packet, received on upstream up, goes. It
// goes to the session's client only if it answers that client: a response or a
// cookie reply to one of the session's initiations, data for one of the client's
// indexes, or a handshake the backend starts with a client it has answered.
func (s *shard) fromBackend(up *upstream, src netip.AddrPort, pkt []byte, now int64) (netip.AddrPort, dropReason) {
	return s.fromBackendRun(up, src, pkt, 1, now)
}

// fromBackendRun is fromBackend for pkt holding dgrams datagrams (see
// fromClientRun).
func (s *shard) fromBackendRun(up *upstream, src netip.AddrPort, pkt []byte, dgrams uint64, now int64) (netip.AddrPort, dropReason) {
	ss := up.sessions[src]
	if ss == nil {
		return netip.AddrPort{}, dropNoSession
	}
	typ, ok := wgproto.Type(pkt)
	if !ok {
		return netip.AddrPort{}, dropMalformed
	}
	if ss.backend.removed.Load() {
		s.remove(ss, now)
		return netip.AddrPort{}, dropBackendGone
	}
	recv := wgproto.Receiver(pkt)
	switch typ {
	case wgproto.MessageResponse:
		if !ss.inits.has(recv) {
			return netip.AddrPort{}, dropUnmatched
		}
		if ss.state == pending {
			s.setState(ss, answered)
		}
		ss.clientIdx.add(recv)
		s.addIndex(ss, wgproto.Sender(pkt))
	case wgproto.MessageCookieReply:
		if !ss.inits.has(recv) {
			return netip.AddrPort{}, dropUnmatched
		}
		// The backend is under load and demands mac2 for this socket's address.
		// Clients keep one cookie at a time, and theirs is the gateway's; so the
		// gateway keeps the backend's and sets the mac2 of the session's next
		// initiations itself (the client retries within 5 s).
		c, ok := ss.backend.sealer.Open(pkt, &ss.lastMAC1)
		if !ok {
			return netip.AddrPort{}, dropUnmatched
		}
		ss.cookie, ss.cookieAt = c, now
		ss.backend.cookiesTaken.Add(1)
		ss.lastSeen = now
		return netip.AddrPort{}, dropCookieTaken
	case wgproto.MessageTransport:
		if !ss.clientIdx.has(recv) {
			return netip.AddrPort{}, dropUnmatched
		}
		if ss.state == answered {
			s.setState(ss, transported)
		}
	case wgproto.MessageInitiation:
		// A rekey started by the backend names no receiver; only a client the
		// backend has answered on this socket gets it.
		if ss.state == pending {
			return netip.AddrPort{}, dropUnmatched
		}
		s.addIndex(ss, wgproto.Sender(pkt))
	}
	ss.lastSeen = now
	ss.counts[toClient].packets += dgrams
	ss.counts[toClient].bytes += uint64(len(pkt))
	return ss.client, forwarded
}

// sessionFor finds or creates the session of (client, backend) for an initiation
// with sender index sender.
func (s *shard) sessionFor(client netip.AddrPort, b *backendState, sender uint32, proven bool, now int64) (*session, dropReason) {
	if ss := s.byPair[sessionKey{client, b}]; ss != nil {
		if !ss.up.usable(b, sender, now) {
			return nil, dropStaleIndex
		}
		if proven {
			ss.proven = true
		}
		return ss, forwarded
	}
	bs := s.backendShard(b)
	if bs.pending >= s.cfg.press.pending {
		s.cfg.press.onBackend(b, now)
	}
	if s.nSessions >= s.cfg.maxSessions*3/4 {
		s.cfg.press.onGateway(now)
	}
	// Pressure may have begun since the caller checked (in this very batch): an
	// unproven initiation then gets a cookie reply instead of a session.
	if !proven && s.cfg.press.requires(b, now) {
		return nil, answeredWithCookie
	}
	if s.nSessions >= s.cfg.maxSessions && !s.evictAny(proven, now) {
		return nil, dropSessionLimit
	}
	up, reason := s.freeUpstream(b, sender, proven, now)
	if up == nil {
		return nil, reason
	}
	ss := &session{client: client, backend: b, up: up, proven: proven, created: now, lastSeen: now, lastInit: now}
	up.sessions[b.Endpoint] = ss
	s.byPair[sessionKey{client, b}] = ss
	s.nSessions++
	bs = s.backendShard(b) // an eviction may have dropped an empty entry
	bs.sessions++
	bs.pending++
	return ss, forwarded
}

// freeUpstream returns an upstream socket on which backend b has no session (and
// no recently ended one that used index sender), opening one if allowed, else
// evicting b's most evictable session.
func (s *shard) freeUpstream(b *backendState, sender uint32, proven bool, now int64) (*upstream, dropReason) {
	for _, up := range s.ups {
		if up.sessions[b.Endpoint] == nil && up.usable(b, sender, now) {
			return up, forwarded
		}
	}
	if len(s.ups) < s.cfg.maxUpstreams {
		up := &upstream{id: len(s.ups), sessions: map[netip.AddrPort]*session{}, graves: map[netip.AddrPort]grave{}}
		if s.cfg.newUpstreamSocket != nil {
			if err := s.cfg.newUpstreamSocket(up); err != nil {
				return nil, dropUpstreamError
			}
		}
		s.ups = append(s.ups, up)
		return up, forwarded
	}
	// Full: that is pressure on b, whatever happens next.
	s.cfg.press.onBackend(b, now)
	var victim *session
	for _, up := range s.ups {
		ss := up.sessions[b.Endpoint]
		if ss == nil || !ss.evictable() || !s.mayEvict(ss, proven) || !up.usableAfter(ss, sender, now) {
			continue
		}
		if victim == nil || ss.before(victim) {
			victim = ss
		}
	}
	if victim == nil {
		return nil, dropBackendFull
	}
	up := victim.up
	s.remove(victim, now)
	return up, forwarded
}

// usable reports whether a new session of b with initiation index sender may use
// up: not if up's last session with b ended lately and used that index.
func (up *upstream) usable(b *backendState, sender uint32, now int64) bool {
	g, ok := up.graves[b.Endpoint]
	return !ok || now >= g.until || !g.has(sender)
}

// usableAfter is usable for the socket of ss once ss has ended.
func (up *upstream) usableAfter(ss *session, sender uint32, now int64) bool {
	return !ss.inits.has(sender) && !ss.clientIdx.has(sender) && up.usable(ss.backend, sender, now)
}

// mayEvict reports whether a new session (proven or not) may take the place of
// ss: an unproven initiation (the source may be spoofed) only that of another
// unproven, unanswered session.
func (s *shard) mayEvict(ss *session, proven bool) bool {
	return proven || (ss.state == pending && !ss.proven)
}

// evictAny removes the most evictable session of the shard (at the session cap)
// and reports whether there was one the newcomer may replace.
func (s *shard) evictAny(proven bool, now int64) bool {
	var victim *session
	for _, ss := range s.byPair {
		if ss.evictable() && s.mayEvict(ss, proven) && (victim == nil || ss.before(victim)) {
			victim = ss
		}
	}
	if victim == nil {
		return false
	}
	s.remove(victim, now)
	return true
}

func (s *shard) addIndex(ss *session, idx uint32) {
	if old, pushed := ss.indexes.add(idx); pushed && s.byClient[clientKey{ss.client, old}] == ss {
		delete(s.byClient, clientKey{ss.client, old})
	}
	// A collision with another session of the same client address (two backends
	// picked the same random index) is won by the newest handshake.
	s.byClient[clientKey{ss.client, idx}] = ss
}

// remove ends a session, moves its counters to its backend's totals in this shard
// and leaves a grave of its indexes on its socket.
func (s *shard) remove(ss *session, now int64) {
	for i := uint8(0); i < ss.indexes.n; i++ {
		k := clientKey{ss.client, ss.indexes.v[i]}
		if s.byClient[k] == ss {
			delete(s.byClient, k)
		}
	}
	ep := ss.backend.Endpoint
	if ss.up.sessions[ep] == ss {
		delete(ss.up.sessions, ep)
		if !ss.backend.removed.Load() {
			g := ss.up.graves[ep]
			if now >= g.until {
				g = grave{}
			}
			g.bury(&ss.inits)
			g.bury(&ss.clientIdx)
			g.until = now + s.cfg.pendingTimeout
			ss.up.graves[ep] = g
		}
	}
	pk := sessionKey{ss.client, ss.backend}
	if s.byPair[pk] == ss {
		delete(s.byPair, pk)
	}
	if s.lastRoute[ss.client] == ss.backend {
		delete(s.lastRoute, ss.client)
	}
	bs := s.backendShard(ss.backend)
	for dir := range ss.counts {
		bs.retired[dir].packets += ss.counts[dir].packets
		bs.retired[dir].bytes += ss.counts[dir].bytes
	}
	bs.sessions--
	if ss.state == pending {
		bs.pending--
	}
	s.nSessions--
}

// sweep ends pending sessions whose last initiation is older than the pending
// timeout, idle ones, and those of removed backends; it forgets expired graves and
// the totals of removed backends.
func (s *shard) sweep(now int64) {
	for _, ss := range s.byPair {
		switch {
		case ss.backend.removed.Load(),
			ss.state == pending && now-ss.lastInit > s.cfg.pendingTimeout,
			now-ss.lastSeen > s.cfg.idleTimeout:
			s.remove(ss, now)
		}
	}
	for client, b := range s.lastRoute {
		if b.removed.Load() {
			delete(s.lastRoute, client)
		}
	}
	for _, up := range s.ups {
		for ep, g := range up.graves {
			if now >= g.until {
				delete(up.graves, ep)
			}
		}
	}
	for b, bs := range s.perBack {
		if b.removed.Load() && bs.sessions == 0 {
			delete(s.perBack, b)
		}
	}
}
