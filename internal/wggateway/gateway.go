package wggateway

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

// Config tunes the gateway's data path.
type Config struct {
	// ListenAddress is the UDP address clients reach, e.g. ":51820" (dual-stack)
	// or "0.0.0.0:51820".
	ListenAddress string
	// Shards is the number of SO_REUSEPORT listener sockets, each with its own
	// goroutines and sessions; 0 means GOMAXPROCS.
	Shards int
	// BatchSize is the number of datagrams per recvmmsg/sendmmsg call.
	BatchSize int
	// MaxSessions caps (client, backend) sessions over all shards.
	MaxSessions int
	// MaxClientsPerBackend caps the clients one backend can have at once per shard:
	// each needs its own upstream socket towards that backend.
	MaxClientsPerBackend int
	// PendingTimeout ends a session whose backend never answered.
	PendingTimeout time.Duration
	// IdleTimeout ends a session without packets in either direction.
	IdleTimeout time.Duration
	// HandshakeRate and HandshakeBurst limit initiations per client source IP;
	// rate 0 disables the limit.
	HandshakeRate  float64
	HandshakeBurst int
	// MaxRateLimitedSources bounds the rate limiter's memory.
	MaxRateLimitedSources int
	// Cookies says when initiations need a valid gateway mac2: under handshake
	// pressure (auto) or always.
	Cookies CookieMode
	// UDPOffload turns on UDP receive offload (UDP_GRO) and segmentation
	// offload on send (UDP_SEGMENT) on every socket where the kernel allows
	// them: a client's batch of transport packets (wireguard-go sends them so)
	// is read as one buffer, routed once and forwarded with one system call.
	UDPOffload bool
}

// DefaultConfig returns the defaults of the flags.
func DefaultConfig() Config {
	return Config{
		ListenAddress: ":51820",
		BatchSize:     64,
		MaxSessions:   65536,
		// mwgp-style use puts hundreds of peers behind one server; the sockets
		// are opened only as clients come.
		MaxClientsPerBackend: 256,
		// WireGuard retries a handshake every 5 s; three tries without an answer.
		PendingTimeout: 15 * time.Second,
		// WireGuard rejects keys older than 180 s; a session idle for longer
		// carries nothing that can still be decrypted.
		IdleTimeout:           180 * time.Second,
		HandshakeRate:         10,
		HandshakeBurst:        20,
		MaxRateLimitedSources: 65536,
		Cookies:               CookiesAuto,
		UDPOffload:            true,
	}
}

// ConfigError is an invalid Config value. Field names the Config field; the
// command's options map it to the flag that sets it.
type ConfigError struct {
	Field string
	Err   error
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// Validate reports every invalid value, each as a *ConfigError.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &ConfigError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	if _, err := net.ResolveUDPAddr("udp", c.ListenAddress); err != nil || c.ListenAddress == "" {
		bad("ListenAddress", "%q: %v", c.ListenAddress, err)
	}
	if c.Shards < 0 || c.Shards > 256 {
		bad("Shards", "%d not in 0..256", c.Shards)
	}
	if c.BatchSize < 1 || c.BatchSize > 1024 {
		bad("BatchSize", "%d not in 1..1024", c.BatchSize)
	}
	if c.MaxSessions < 1 {
		bad("MaxSessions", "%d must be at least 1", c.MaxSessions)
	}
	if c.MaxClientsPerBackend < 1 || c.MaxClientsPerBackend > maxClientsPerBackend {
		bad("MaxClientsPerBackend", "%d not in 1..%d", c.MaxClientsPerBackend, maxClientsPerBackend)
	}
	if c.Cookies != CookiesAuto && c.Cookies != CookiesAlways {
		bad("Cookies", "%q is not one of auto, always", c.Cookies)
	}
	if c.PendingTimeout <= 0 {
		bad("PendingTimeout", "%s must be positive", c.PendingTimeout)
	}
	if c.IdleTimeout <= 0 {
		bad("IdleTimeout", "%s must be positive", c.IdleTimeout)
	}
	if c.HandshakeRate < 0 {
		bad("HandshakeRate", "%v must be >= 0", c.HandshakeRate)
	}
	if c.HandshakeRate > 0 && c.HandshakeBurst < 1 {
		bad("HandshakeBurst", "%d must be >= 1 with a rate limit", c.HandshakeBurst)
	}
	if c.MaxRateLimitedSources < 1 {
		bad("MaxRateLimitedSources", "%d must be at least 1", c.MaxRateLimitedSources)
	}
	return errors.Join(errs...)
}

// maxClientsPerBackend bounds --sessions.max-clients-per-backend: each client of
// a backend needs an upstream socket of its own in its shard.
const maxClientsPerBackend = 4096

// pendingPressure is the number of unanswered sessions of one backend in one shard
// that puts the backend under handshake pressure.
func (c Config) pendingPressure() int {
	return max(2, c.MaxClientsPerBackend/8)
}

// maxDatagram is the largest UDP payload the gateway relays. WireGuard's own
// packets are at most MTU-sized; 64 KiB also covers GSO-free jumbo paths.
const maxDatagram = 65535

// Gateway relays WireGuard traffic between clients on one UDP port and the backend
// whose public key each client's handshake names.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	table   atomic.Pointer[table]
	tableMu sync.Mutex // serialises SetBackends
	limiter *rateLimiter
	press   *pressure
	cookies *cookieJar
	shards  atomic.Pointer[[]*shard]
	lns     []*net.UDPConn
	off     offload
	// upstreamErrors counts upstream sockets that could not be opened;
	// upstreamErrLogged is when that was last logged (unix nanos).
	upstreamErrors    atomic.Uint64
	upstreamErrLogged atomic.Int64
}

// New checks cfg and builds a gateway without backends.
func New(cfg Config, log *slog.Logger) (*Gateway, error) {
	if cfg.Shards == 0 {
		cfg.Shards = runtime.GOMAXPROCS(0)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:     cfg,
		log:     log,
		limiter: newRateLimiter(cfg.HandshakeRate, cfg.HandshakeBurst, cfg.MaxRateLimitedSources),
		press:   newPressure(cfg.Cookies, cfg.pendingPressure()),
		cookies: newCookieJar(time.Now().UnixNano()),
		off:     offload{want: cfg.UDPOffload, log: log},
	}
	g.table.Store(newTable(nil, nil))
	return g, nil
}

// SetBackends replaces the routing table. Unchanged backends keep their sessions;
// sessions of removed backends (or of backends whose endpoint changed) end.
// Entries with a public key seen earlier in the list are ignored.
func (g *Gateway) SetBackends(backends []Backend) {
	g.tableMu.Lock()
	defer g.tableMu.Unlock()
	seen := map[[32]byte]bool{}
	uniq := make([]Backend, 0, len(backends))
	for _, b := range backends {
		if seen[b.PublicKey] || !b.Endpoint.IsValid() {
			continue
		}
		seen[b.PublicKey] = true
		b.Endpoint = netip.AddrPortFrom(b.Endpoint.Addr().Unmap(), b.Endpoint.Port())
		uniq = append(uniq, b)
	}
	sort.Slice(uniq, func(i, j int) bool { return uniq[i].Name < uniq[j].Name })
	g.table.Store(newTable(uniq, g.table.Load()))
}

// Listen opens the shards' listener sockets (SO_REUSEPORT on one port). A host-less
// address (":51820") is dual-stack; an IPv4 or IPv6 literal binds that family only.
func (g *Gateway) Listen(ctx context.Context) error {
	host, _, err := net.SplitHostPort(g.cfg.ListenAddress)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", g.cfg.ListenAddress, err)
	}
	network := "udp"
	if ip, err := netip.ParseAddr(host); err == nil {
		network = "udp6"
		if ip.Is4() {
			network = "udp4"
		}
	}
	addr := g.cfg.ListenAddress
	for i := 0; i < g.cfg.Shards; i++ {
		c, err := udpbatch.ListenReusePort(ctx, network, addr)
		if err != nil {
			g.closeListeners()
			g.lns = nil
			return fmt.Errorf("listen on %s: %w", addr, err)
		}
		udpbatch.SetBuffers(c, 4<<20)
		g.lns = append(g.lns, c)
		if i == 0 {
			// Port 0 picks a port; the other shards must share it.
			addr = c.LocalAddr().String()
		}
	}
	return nil
}

func (g *Gateway) closeListeners() {
	for _, c := range g.lns {
		c.Close()
	}
}

// LocalAddr is the listening address (after Listen).
func (g *Gateway) LocalAddr() net.Addr {
	if len(g.lns) == 0 {
		return nil
	}
	return g.lns[0].LocalAddr()
}

// Serve relays packets until ctx ends, then closes every socket. Listen must have
// been called.
func (g *Gateway) Serve(parent context.Context) error {
	if len(g.lns) == 0 {
		return errors.New("gateway: Serve before Listen")
	}
	grp, ctx := errgroup.WithContext(parent)
	closers := &closerSet{}
	perShard := (g.cfg.MaxSessions + len(g.lns) - 1) / len(g.lns)
	shards := make([]*shard, 0, len(g.lns))
	var readers []*udpbatch.Conn
	var sios []*shardIO
	for i, ln := range g.lns {
		sio := &shardIO{g: g, ctx: ctx, grp: grp, ln: ln, closers: closers, index: i}
		sio.sh = newShard(shardConfig{
			maxSessions:       perShard,
			maxUpstreams:      g.cfg.MaxClientsPerBackend,
			pendingTimeout:    g.cfg.PendingTimeout.Nanoseconds(),
			idleTimeout:       g.cfg.IdleTimeout.Nanoseconds(),
			press:             g.press,
			newUpstreamSocket: sio.openUpstream,
		})
		shards = append(shards, sio.sh)
		reader, err := udpbatch.New(ln, g.cfg.BatchSize)
		if err != nil {
			g.closeListeners()
			return err
		}
		// GRO is the listener socket's; its cookie replies are single datagrams.
		g.off.enable(reader, true, false)
		readers = append(readers, reader)
		sios = append(sios, sio)
	}
	for i, sio := range sios {
		reader := readers[i]
		grp.Go(func() error { return sio.serveClients(reader) })
		grp.Go(func() error { sio.janitor(); return nil })
	}
	g.shards.Store(&shards)
	grp.Go(func() error {
		<-ctx.Done()
		g.closeListeners()
		closers.closeAll()
		return nil
	})
	err := grp.Wait()
	if parent.Err() != nil {
		return nil // shutdown: reads fail because their sockets were closed
	}
	return err
}

// closerSet closes the upstream sockets at shutdown.
type closerSet struct {
	mu     sync.Mutex
	conns  []*net.UDPConn
	closed bool
}

func (c *closerSet) add(conn *net.UDPConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.conns = append(c.conns, conn)
	return true
}

func (c *closerSet) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for _, conn := range c.conns {
		conn.Close()
	}
}

// shardIO runs one shard's sockets.
type shardIO struct {
	g       *Gateway
	sh      *shard
	ctx     context.Context
	grp     *errgroup.Group
	ln      *net.UDPConn
	closers *closerSet
	index   int
}

// openUpstream opens a socket towards backends and starts its reader. It runs with
// the shard's lock held (from the client path), so it must not take it.
func (s *shardIO) openUpstream(up *upstream) error {
	// Dual-stack, so one socket reaches IPv4 and IPv6 backends alike.
	c, err := net.ListenUDP("udp", nil)
	if err != nil {
		c, err = net.ListenUDP("udp4", nil) // IPv6 disabled on this host
	}
	if err != nil {
		s.g.upstreamError(err, s.index)
		return err
	}
	udpbatch.SetBuffers(c, 4<<20)
	uc, err := udpbatch.New(c, s.g.cfg.BatchSize)
	if err != nil {
		c.Close()
		return err
	}
	// Each upstream reader writes to the listener through its own wrapper, so no
	// two goroutines share batch buffers.
	lnWriter, err := udpbatch.New(s.ln, s.g.cfg.BatchSize)
	if err != nil {
		c.Close()
		return err
	}
	if !s.closers.add(c) {
		c.Close()
		return net.ErrClosed
	}
	s.g.off.enable(uc, true, true)
	s.g.off.enable(lnWriter, false, true)
	up.conn = uc
	up.out = make([]udpbatch.Message, 0, s.g.itemsPerRound())
	s.grp.Go(func() error { return s.serveBackends(up, lnWriter) })
	return nil
}

// upstreamErrLogEvery is the least time between two log lines about upstream
// sockets that could not be opened; each failure is counted.
const upstreamErrLogEvery = int64(60e9)

// upstreamError counts a failed upstream socket open and logs it at most once
// a minute: a client retrying its handshake must not write a line each time.
func (g *Gateway) upstreamError(err error, shard int) {
	total := g.upstreamErrors.Add(1)
	now := time.Now().UnixNano()
	last := g.upstreamErrLogged.Load()
	if last != 0 && now-last < upstreamErrLogEvery || !g.upstreamErrLogged.CompareAndSwap(last, now) {
		return
	}
	g.log.Error("cannot open upstream socket; initiations of new sessions are dropped", "shard", shard, "failuresTotal", total, "err", err)
}

// itemsPerRound bounds the items (single datagrams and runs cut from coalesced
// buffers) the data path handles per round; a read with more takes more rounds.
func (g *Gateway) itemsPerRound() int { return 2 * g.cfg.BatchSize }

func newBatch(n int) []udpbatch.Message {
	ms := make([]udpbatch.Message, n)
	for i := range ms {
		ms[i].Buf = make([]byte, maxDatagram)
	}
	return ms
}

// serveClients reads the listener: client packets to upstream sockets, and the
// gateway's cookie replies back to clients.
func (s *shardIO) serveClients(ln *udpbatch.Conn) error {
	g := s.g
	in := newBatch(g.cfg.BatchSize)
	room := g.itemsPerRound()
	r := &clientRound{
		items:    make([]udpbatch.Message, 0, room),
		routes:   make([]*backendState, room),
		hints:    make([]*backendState, room),
		verdicts: make([]dropReason, room),
		proven:   make([]bool, room),
		touched:  make([]*upstream, 0, 64),
		replies:  make([][wgproto.CookieReplySize]byte, room),
		cookies:  make([]udpbatch.Message, 0, room),
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return err
	}
	r.nonces = mrand.NewChaCha8(seed)
	for {
		n, err := ln.ReadBatch(in)
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read from clients: %w", err)
		}
		// Coalesced buffers are cut into runs of one receiver index and
		// single handshake messages; each round routes up to room items.
		var sp splitter
		for !sp.done(n) {
			r.items = sp.fill(in[:n], r.items[:0])
			s.relayClients(ln, r)
		}
	}
}

// clientRound is the per-round state of serveClients, allocated once.
type clientRound struct {
	items    []udpbatch.Message
	routes   []*backendState
	hints    []*backendState
	verdicts []dropReason
	proven   []bool
	touched  []*upstream
	replies  [][wgproto.CookieReplySize]byte
	cookies  []udpbatch.Message
	nonces   *mrand.ChaCha8
}

// relayClients routes one round of client items and sends them on.
func (s *shardIO) relayClients(ln *udpbatch.Conn, r *clientRound) {
	g, sh := s.g, s.sh
	in := r.items
	n := len(in)
	routes, hints, verdicts, proven := r.routes, r.hints, r.verdicts, r.proven
	now := time.Now().UnixNano()
	// Initiations are routed by mac1 outside the lock: with many backends that
	// is the costly step, and the backend readers must not wait for it.
	hasInit := false
	for i := 0; i < n; i++ {
		routes[i], verdicts[i], proven[i] = nil, forwarded, false
		if isInitiation(in[i].Buf[:in[i].N]) {
			hasInit = true
		}
	}
	if hasInit {
		sh.mu.Lock()
		for i := 0; i < n; i++ {
			if isInitiation(in[i].Buf[:in[i].N]) {
				hints[i] = sh.lastRoute[in[i].Addr]
			}
		}
		sh.mu.Unlock()
		s.admitInitiations(in, routes, hints, verdicts, proven, now)
	}
	var refused *backendState
	sh.mu.Lock()
	for i := 0; i < n; i++ {
		dgrams := uint64(in[i].Datagrams())
		if verdicts[i] != forwarded {
			sh.drops[verdicts[i]] += dgrams
			continue
		}
		up, dst, reason := sh.fromClientRun(in[i].Addr, in[i].Buf[:in[i].N], dgrams, routes[i], proven[i], now)
		if reason != forwarded {
			sh.drops[reason] += dgrams
			if reason == answeredWithCookie {
				verdicts[i] = answeredWithCookie
			}
			if reason == dropBackendFull {
				refused = routes[i]
				refused.refused.Add(1)
			}
			continue
		}
		if len(up.out) == 0 {
			r.touched = append(r.touched, up)
		}
		up.out = append(up.out, udpbatch.Message{Buf: in[i].Buf, N: in[i].N, Addr: dst, Seg: in[i].Seg})
	}
	sh.mu.Unlock()
	for _, up := range r.touched {
		if up.conn != nil {
			if _, err := up.conn.WriteBatch(up.out); err != nil && s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				g.log.Debug("write to backend failed", "err", err)
			}
		}
		up.out = up.out[:0]
	}
	r.touched = r.touched[:0]
	for i := 0; i < n; i++ {
		if verdicts[i] != answeredWithCookie {
			continue
		}
		g.cookieReply(&r.replies[i], in[i].Buf[:in[i].N], in[i].Addr, routes[i], r.nonces)
		r.cookies = append(r.cookies, udpbatch.Message{Buf: r.replies[i][:], N: wgproto.CookieReplySize, Addr: in[i].Addr})
	}
	if len(r.cookies) > 0 {
		if _, err := ln.WriteBatch(r.cookies); err != nil && s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			g.log.Debug("write of cookie replies failed", "err", err)
		}
		r.cookies = r.cookies[:0]
	}
	if refused != nil {
		s.logRefusal(refused, now)
	}
}

// admitInitiations routes the batch's initiations and applies the cookie rule and
// the rate limit, outside the shard lock. Without pressure the limit comes first,
// so a source over its rate costs no mac1 scan. Under pressure an initiation for a
// backend that requires it must carry a valid gateway mac2, or it is answered
// with a cookie reply and touches no limiter state (a spoofed source must not use
// up the tokens of the address it fakes); only initiations that will be forwarded
// take a token.
func (s *shardIO) admitInitiations(in []udpbatch.Message, routes, hints []*backendState, verdicts []dropReason, proven []bool, now int64) {
	g := s.g
	t := g.table.Load()
	press := g.press.active(now)
	for i := range in {
		pkt := in[i].Buf[:in[i].N]
		if !isInitiation(pkt) {
			continue
		}
		src := in[i].Addr
		if !press {
			if !g.limiter.allow(src.Addr(), now) {
				verdicts[i] = dropRateLimited
				continue
			}
			routes[i] = t.route(pkt, hints[i])
			hints[i] = nil
			continue
		}
		routes[i] = t.route(pkt, hints[i])
		hints[i] = nil
		if routes[i] == nil {
			continue // dropped as no_backend under the lock
		}
		proven[i] = g.cookies.check(pkt, src)
		if !proven[i] && g.press.requires(routes[i], now) {
			verdicts[i] = answeredWithCookie
			continue
		}
		if !g.limiter.allow(src.Addr(), now) {
			verdicts[i] = dropRateLimited
		}
	}
}

// cookieReply writes into dst the gateway's cookie reply to initiation pkt from
// src for backend b.
func (g *Gateway) cookieReply(dst *[wgproto.CookieReplySize]byte, pkt []byte, src netip.AddrPort, b *backendState, nonces *mrand.ChaCha8) {
	var nonce [24]byte
	nonces.Read(nonce[:])
	cookie := g.cookies.cookie(src)
	b.sealer.Reply(dst, pkt, &cookie, &nonce)
	b.cookiesSent.Add(1)
}

// refusalLogEvery is the least time between two log lines about refused clients
// of one backend.
const refusalLogEvery = int64(60e9)

func (s *shardIO) logRefusal(b *backendState, now int64) {
	last := b.refusalLogged.Load()
	if now-last < refusalLogEvery || !b.refusalLogged.CompareAndSwap(last, now) {
		return
	}
	s.g.log.Warn("new client of a backend refused: all its upstream slots hold clients that cannot be evicted; raise --sessions.max-clients-per-backend",
		"backend", b.Name, "maxClientsPerBackend", s.g.cfg.MaxClientsPerBackend, "shard", s.index, "refusedTotal", b.refused.Load())
}

func isInitiation(b []byte) bool {
	t, ok := wgproto.Type(b)
	return ok && t == wgproto.MessageInitiation
}

// serveBackends reads one upstream socket: backend packets to clients.
func (s *shardIO) serveBackends(up *upstream, ln *udpbatch.Conn) error {
	sh := s.sh
	in := newBatch(s.g.cfg.BatchSize)
	room := s.g.itemsPerRound()
	items := make([]udpbatch.Message, 0, room)
	out := make([]udpbatch.Message, 0, room)
	for {
		n, err := up.conn.ReadBatch(in)
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read from backends: %w", err)
		}
		var sp splitter
		for !sp.done(n) {
			items = sp.fill(in[:n], items[:0])
			now := time.Now().UnixNano()
			sh.mu.Lock()
			for i := range items {
				it := &items[i]
				dgrams := uint64(it.Datagrams())
				dst, reason := sh.fromBackendRun(up, it.Addr, it.Buf[:it.N], dgrams, now)
				if reason != forwarded {
					sh.drops[reason] += dgrams
					continue
				}
				out = append(out, udpbatch.Message{Buf: it.Buf, N: it.N, Addr: dst, Seg: it.Seg})
			}
			sh.mu.Unlock()
			if len(out) > 0 {
				if _, err := ln.WriteBatch(out); err != nil && s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					s.g.log.Debug("write to client failed", "err", err)
				}
				out = out[:0]
			}
		}
	}
}

// janitor expires sessions and rate-limiter entries once a second.
func (s *shardIO) janitor() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		s.sh.mu.Lock()
		s.sh.sweep(now)
		if s.sh.nSessions >= s.g.cfg.MaxSessions/len(s.g.lns)*3/4 {
			s.g.press.onGateway(now)
		}
		s.sh.mu.Unlock()
		if s.index == 0 {
			s.g.limiter.sweep(now)
			s.g.cookies.rotate(now)
			s.g.off.check()
		}
		if s.g.limiter.full(now, int64(2e9)) {
			s.g.press.onGateway(now)
		}
	}
}

// Shards is the number of listener sockets (after Listen).
func (g *Gateway) Shards() int { return len(g.lns) }
