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
	forwarded         dropReason = iota
	dropMalformed                // not a WireGuard message
	dropNoBackend                // initiation whose mac1 matches no backend
	dropNoSession                // unknown index, or not from the session's address
	dropRateLimited              // source over its handshake rate
	dropBackendFull              // every upstream slot of the backend holds an established client
	dropSessionLimit             // session cap reached
	dropBackendGone              // session of a removed backend
	dropUpstreamError            // no upstream socket could be opened
	numDropReasons
)

var dropReasonNames = [numDropReasons]string{
	forwarded:         "forwarded",
	dropMalformed:     "malformed",
	dropNoBackend:     "no_backend",
	dropNoSession:     "no_session",
	dropRateLimited:   "rate_limited",
	dropBackendFull:   "backend_full",
	dropSessionLimit:  "session_limit",
	dropBackendGone:   "backend_removed",
	dropUpstreamError: "upstream_error",
}

const (
	toBackend = 0
	toClient  = 1
)

// indexesPerSession bounds the backend indexes a session remembers; WireGuard keeps
// at most three keypairs (previous, current, next) alive at once.
const indexesPerSession = 4

// session binds one client address to one backend through one upstream socket of
// the shard. It outlives WireGuard's handshakes (every 2 minutes): what changes per
// handshake are the backend's indexes, which the session tracks.
type session struct {
	client      netip.AddrPort
	backend     *backendState
	up          *upstream
	established bool  // the backend has sent something back
	created     int64 // unix nanos
	lastSeen    int64
	indexes     [indexesPerSession]uint32 // backend's receiver indexes, ring
	nIndexes    int
	next        int
	counts      [2]struct{ packets, bytes uint64 }
}

type clientKey struct {
	client netip.AddrPort
	index  uint32
}

type sessionKey struct {
	client  netip.AddrPort
	backend *backendState
}

// upstream is one socket the shard uses towards backends. Each backend sees every
// client of its own through a different upstream socket, so a backend's packets
// arriving on a socket belong to exactly one session: no index lookups (and so no
// index collisions) on the way back, and a cookie the backend hands out (bound to
// the address it sees) stays valid for that client's next initiation.
type upstream struct {
	id       int
	sessions map[netip.AddrPort]*session // by backend endpoint
	conn     *udpbatch.Conn              // nil in tests of the core
	// out collects the listener goroutine's packets for this socket per batch.
	out []udpbatch.Message
}

// shardConfig are the limits of one shard.
type shardConfig struct {
	maxSessions    int
	maxUpstreams   int
	pendingTimeout int64 // nanos
	idleTimeout    int64 // nanos
	// newUpstreamSocket opens up's socket and starts its reader; nil in tests of
	// the core, where upstreams have no socket.
	newUpstreamSocket func(up *upstream) error
}

// shard holds the sessions of the clients the kernel hashes to one listener socket
// (SO_REUSEPORT): a client always lands on the same shard, so shards share nothing.
// All fields are guarded by mu; the data path takes it once per batch.
type shard struct {
	mu        sync.Mutex
	cfg       shardConfig
	byClient  map[clientKey]*session  // client -> backend direction
	byPair    map[sessionKey]*session // initiations: existing session of (client, backend)
	lastRoute map[netip.AddrPort]*backendState
	ups       []*upstream
	nSessions int
	drops     [numDropReasons]uint64
}

func newShard(cfg shardConfig) *shard {
	return &shard{
		cfg:       cfg,
		byClient:  map[clientKey]*session{},
		byPair:    map[sessionKey]*session{},
		lastRoute: map[netip.AddrPort]*backendState{},
	}
}

// fromClient decides where a client's packet goes. For an initiation, route is the
// backend its mac1 matched (nil: none) — computed outside the lock by the caller.
func (s *shard) fromClient(src netip.AddrPort, pkt []byte, route *backendState, now int64) (*upstream, netip.AddrPort, dropReason) {
	typ, ok := wgproto.Type(pkt)
	if !ok {
		return nil, netip.AddrPort{}, dropMalformed
	}
	if typ == wgproto.MessageInitiation {
		if route == nil {
			return nil, netip.AddrPort{}, dropNoBackend
		}
		ss, reason := s.sessionFor(src, route, now)
		if ss == nil {
			return nil, netip.AddrPort{}, reason
		}
		s.lastRoute[src] = route
		ss.lastSeen = now
		route.handshakes.Add(1)
		return s.count(ss, toBackend, len(pkt))
	}
	// Response (to a backend's initiation), cookie reply, transport: all carry the
	// backend's index as receiver, and must come from the session's client address.
	ss := s.byClient[clientKey{client: src, index: wgproto.Receiver(pkt)}]
	if ss == nil {
		return nil, netip.AddrPort{}, dropNoSession
	}
	if ss.backend.removed.Load() {
		s.remove(ss)
		return nil, netip.AddrPort{}, dropBackendGone
	}
	ss.lastSeen = now
	return s.count(ss, toBackend, len(pkt))
}

func (s *shard) count(ss *session, dir int, n int) (*upstream, netip.AddrPort, dropReason) {
	ss.counts[dir].packets++
	ss.counts[dir].bytes += uint64(n)
	return ss.up, ss.backend.Endpoint, forwarded
}

// fromBackend decides where a backend's packet, received on upstream up, goes.
func (s *shard) fromBackend(up *upstream, src netip.AddrPort, pkt []byte, now int64) (netip.AddrPort, dropReason) {
	ss := up.sessions[src]
	if ss == nil {
		return netip.AddrPort{}, dropNoSession
	}
	typ, ok := wgproto.Type(pkt)
	if !ok {
		return netip.AddrPort{}, dropMalformed
	}
	if ss.backend.removed.Load() {
		s.remove(ss)
		return netip.AddrPort{}, dropBackendGone
	}
	switch typ {
	case wgproto.MessageInitiation, wgproto.MessageResponse:
		// The backend's new index: the client will address it as receiver.
		s.addIndex(ss, wgproto.Sender(pkt))
	}
	ss.established = true
	ss.lastSeen = now
	ss.counts[toClient].packets++
	ss.counts[toClient].bytes += uint64(len(pkt))
	return ss.client, forwarded
}

// sessionFor finds or creates the session of (client, backend) for an initiation.
func (s *shard) sessionFor(client netip.AddrPort, b *backendState, now int64) (*session, dropReason) {
	if ss := s.byPair[sessionKey{client, b}]; ss != nil {
		return ss, forwarded
	}
	if s.nSessions >= s.cfg.maxSessions && !s.evictPending(nil, now) {
		return nil, dropSessionLimit
	}
	up, reason := s.freeUpstream(b, now)
	if up == nil {
		return nil, reason
	}
	ss := &session{client: client, backend: b, up: up, created: now, lastSeen: now}
	up.sessions[b.Endpoint] = ss
	s.byPair[sessionKey{client, b}] = ss
	s.nSessions++
	return ss, forwarded
}

// freeUpstream returns an upstream socket on which backend b has no session yet,
// opening one if allowed, else evicting b's oldest unconfirmed session. Confirmed
// sessions are never evicted by an initiation: it might be a replay.
func (s *shard) freeUpstream(b *backendState, now int64) (*upstream, dropReason) {
	for _, up := range s.ups {
		if up.sessions[b.Endpoint] == nil {
			return up, forwarded
		}
	}
	if len(s.ups) < s.cfg.maxUpstreams {
		up := &upstream{id: len(s.ups), sessions: map[netip.AddrPort]*session{}}
		if s.cfg.newUpstreamSocket != nil {
			if err := s.cfg.newUpstreamSocket(up); err != nil {
				return nil, dropUpstreamError
			}
		}
		s.ups = append(s.ups, up)
		return up, forwarded
	}
	if s.evictPending(b, now) {
		return s.freeUpstream(b, now)
	}
	return nil, dropBackendFull
}

// evictPending removes the oldest unconfirmed session (of backend b, or of any
// backend when b is nil) and reports whether it found one.
func (s *shard) evictPending(b *backendState, now int64) bool {
	var oldest *session
	consider := func(ss *session) {
		if !ss.established && (oldest == nil || ss.created < oldest.created) {
			oldest = ss
		}
	}
	if b != nil {
		for _, up := range s.ups {
			if ss := up.sessions[b.Endpoint]; ss != nil && ss.backend == b {
				consider(ss)
			}
		}
	} else {
		for _, ss := range s.byPair {
			consider(ss)
		}
	}
	if oldest == nil {
		return false
	}
	s.remove(oldest)
	return true
}

func (s *shard) addIndex(ss *session, idx uint32) {
	for i := 0; i < ss.nIndexes; i++ {
		if ss.indexes[i] == idx {
			return
		}
	}
	if ss.nIndexes == indexesPerSession {
		old := ss.indexes[ss.next]
		if s.byClient[clientKey{ss.client, old}] == ss {
			delete(s.byClient, clientKey{ss.client, old})
		}
	} else {
		ss.nIndexes++
	}
	ss.indexes[ss.next] = idx
	ss.next = (ss.next + 1) % indexesPerSession
	// A collision with another session of the same client address (two backends
	// picked the same random index) is won by the newest handshake.
	s.byClient[clientKey{ss.client, idx}] = ss
}

// remove ends a session and moves its counters to its backend's totals.
func (s *shard) remove(ss *session) {
	for i := 0; i < ss.nIndexes; i++ {
		k := clientKey{ss.client, ss.indexes[i]}
		if s.byClient[k] == ss {
			delete(s.byClient, k)
		}
	}
	if ss.up.sessions[ss.backend.Endpoint] == ss {
		delete(ss.up.sessions, ss.backend.Endpoint)
	}
	pk := sessionKey{ss.client, ss.backend}
	if s.byPair[pk] == ss {
		delete(s.byPair, pk)
	}
	if s.lastRoute[ss.client] == ss.backend {
		delete(s.lastRoute, ss.client)
	}
	for dir := range ss.counts {
		ss.backend.retired[dir].packets.Add(ss.counts[dir].packets)
		ss.backend.retired[dir].bytes.Add(ss.counts[dir].bytes)
	}
	s.nSessions--
}

// sweep ends pending sessions older than the pending timeout, idle ones, and those
// of removed backends.
func (s *shard) sweep(now int64) {
	for _, ss := range s.byPair {
		switch {
		case ss.backend.removed.Load(),
			!ss.established && now-ss.created > s.cfg.pendingTimeout,
			now-ss.lastSeen > s.cfg.idleTimeout:
			s.remove(ss)
		}
	}
	for client, b := range s.lastRoute {
		if b.removed.Load() {
			delete(s.lastRoute, client)
		}
	}
}
