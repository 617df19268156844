package wggateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/device"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// Attack tests: an attacker who knows a backend's public key and can spoof IPv4
// source addresses (anywhere in 127.0.0.0/8, through a raw socket) against a real
// gateway in front of real wireguard-go servers, while real wireguard-go clients
// connect. Each test asserts that new legitimate clients complete their handshake
// and exchange data during and after the attack, and that no packet of a backend
// reached an address other than a legitimate client's (a raw socket sees every UDP
// datagram the gateway's port sends on loopback).

// spoofer sends UDP datagrams with any IPv4 source address.
type spoofer struct{ fd int }

func newSpoofer(t *testing.T) *spoofer {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if errors.Is(err, unix.EPERM) {
		t.Skip("raw sockets need root (CAP_NET_RAW)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &spoofer{fd: fd}
}

// send writes one datagram from src to dst (IPv4); the kernel fills in the IP
// checksum, id and length; the UDP checksum is left out (optional for IPv4).
func (s *spoofer) send(buf []byte, src, dst netip.AddrPort, payload []byte) error {
	n := 28 + len(payload)
	b := buf[:n]
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint32(b[4:], 0)
	b[8], b[9] = 64, unix.IPPROTO_UDP
	b[10], b[11] = 0, 0
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	copy(b[12:16], s4[:])
	copy(b[16:20], d4[:])
	binary.BigEndian.PutUint16(b[20:], src.Port())
	binary.BigEndian.PutUint16(b[22:], dst.Port())
	binary.BigEndian.PutUint16(b[24:], uint16(8+len(payload)))
	b[26], b[27] = 0, 0
	copy(b[28:], payload)
	return unix.Sendto(s.fd, b, 0, &unix.SockaddrInet4{Addr: d4})
}

// spoofedSource returns the i-th attacker address: 127.64.0.0 onwards.
func spoofedSource(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, byte(64 + i>>16%64), byte(i >> 8), byte(i)}), uint16(1024+i%50000))
}

// flood sends valid-mac1 initiations for pub from spoofed sources to dst at about
// rate per second until stop is closed or max have been sent; it returns the count.
func (s *spoofer) flood(dst netip.AddrPort, pub [32]byte, rate, limit int, stop <-chan struct{}, sent *atomic.Int64) {
	buf := make([]byte, 2048)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	per := max(1, rate/100)
	i := 0
	for i < limit {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		for j := 0; j < per && i < limit; j++ {
			var idx [4]byte
			rand.Read(idx[:])
			s.send(buf, spoofedSource(i), dst, initiation(pub, binary.LittleEndian.Uint32(idx[:])))
			i++
			sent.Add(1)
		}
	}
}

// monitor records every UDP datagram sent from the gateway's port on loopback to
// an address that is not a legitimate client's, if it is a WireGuard message a
// backend sends (initiation, response, data). The gateway's own cookie replies
// (type 3) go to whoever sent an initiation, by design.
type monitor struct {
	fd      int
	port    uint16
	mu      sync.Mutex
	allowed map[netip.AddrPort]bool
	wrong   []string
	seen    atomic.Int64 // backend messages to legitimate clients
	done    chan struct{}
}

func newMonitor(t *testing.T, gatewayPort uint16) *monitor {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
	if err != nil {
		t.Skipf("raw socket: %v", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	m := &monitor{fd: fd, port: gatewayPort, allowed: map[netip.AddrPort]bool{}, done: make(chan struct{})}
	var stopped atomic.Bool
	go func() {
		defer close(m.done)
		buf := make([]byte, 65536)
		for !stopped.Load() {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 28 {
				continue
			}
			ihl := int(buf[0]&0x0f) * 4
			if n < ihl+8+4 || binary.BigEndian.Uint16(buf[ihl:]) != m.port || [4]byte(buf[12:16]) != [4]byte{127, 0, 0, 1} {
				continue
			}
			dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[16:20])), binary.BigEndian.Uint16(buf[ihl+2:]))
			p := buf[ihl+8 : n]
			if p[1]|p[2]|p[3] != 0 || (p[0] != 1 && p[0] != 2 && p[0] != 4) {
				continue
			}
			m.mu.Lock()
			if m.allowed[dst] {
				m.seen.Add(1)
			} else if len(m.wrong) < 10 {
				m.wrong = append(m.wrong, fmt.Sprintf("type %d (%d bytes) to %v", p[0], len(p), dst))
			}
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stopped.Store(true)
		<-m.done
		unix.Close(fd)
	})
	return m
}

func (m *monitor) allow(c *wgPeer) {
	m.mu.Lock()
	m.allowed[netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), c.port)] = true
	m.mu.Unlock()
}

// check fails the test if a backend packet reached a wrong address; and, unless
// the loopback carried a flood the monitor may not keep up with, if it saw none
// reach the legitimate clients (it would be blind).
func (m *monitor) check(t *testing.T, mustSee bool) {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.wrong) > 0 {
		t.Fatalf("backend packets reached addresses of no legitimate client: %v (clients: %v)", m.wrong, m.allowed)
	}
	if mustSee && m.seen.Load() == 0 {
		t.Fatal("the monitor saw no backend packet at all")
	}
}

// attackBed is one WireGuard server (the target) with clients configured, behind
// a gateway on loopback.
type attackBed struct {
	rg      *runningGateway
	srv     *wgServer
	keys    []keypair
	ips     []netip.Addr
	next    int
	mon     *monitor
	sp      *spoofer
	gwAddr  netip.AddrPort
	backend Backend
}

func newAttackBed(t *testing.T, clients int, endpoint func(srv *wgServer) netip.AddrPort, changes ...func(*Config)) *attackBed {
	t.Helper()
	sp := newSpoofer(t)
	ab := &attackBed{sp: sp}
	for j := 0; j < clients; j++ {
		ab.keys = append(ab.keys, newKeypair(t))
		ab.ips = append(ab.ips, netip.AddrFrom4([4]byte{10, 40, 0, byte(10 + j)}))
	}
	ab.srv = newWGServer(t, "target", netip.MustParseAddr("10.40.0.1"), ab.keys, ab.ips)
	ab.backend = ab.srv.backend()
	if endpoint != nil {
		ab.backend.Endpoint = endpoint(ab.srv)
	}
	changes = append([]func(*Config){func(c *Config) { c.MaxClientsPerBackend = 16 }}, changes...)
	ab.rg = startGateway(t, "127.0.0.1:0", []Backend{ab.backend}, changes...)
	ab.gwAddr = ab.rg.gw.LocalAddr().(*net.UDPAddr).AddrPort()
	ab.mon = newMonitor(t, ab.gwAddr.Port())
	return ab
}

// connect starts the next legitimate client and waits until it has fetched from
// the server through its tunnel.
func (ab *attackBed) connect(t *testing.T, within time.Duration) *wgPeer {
	t.Helper()
	j := ab.next
	ab.next++
	c := newWGPeer(t, ab.keys[j], ab.ips[j], peerConfig(ab.srv.keys.pub, ab.gwAddr.String(), ab.srv.ip.String()+"/32"))
	ab.mon.allow(c)
	eventually(t, c, ab.srv.ip, ab.srv.name, within)
	return c
}

// TestAttackValidMAC1Flood: 15k spoofed initiations per second with a valid mac1
// for the target, from up to 150k addresses. The gateway comes under pressure and
// answers them with cookie replies; a new client gets through by itself (cookie
// round trip) during the flood, and another one after it.
func TestAttackValidMAC1Flood(t *testing.T) {
	if testing.Short() {
		t.Skip("attack test with WireGuard peers; skipped in -short mode")
	}
	ab := newAttackBed(t, 2, nil)
	var sent atomic.Int64
	f := startFlood(t, ab, 15000, 600000, &sent)
	ab.rg.waitMetric(t, func(v float64) bool { return v > 0 }, "trellis_wg_gateway_backend_cookie_replies_sent_total", "backend", "target")
	ab.connect(t, 60*time.Second)
	if f.ended() {
		t.Fatal("the flood ended before the client got through")
	}
	t.Logf("client through after %d spoofed initiations; cookie replies sent: %v, sessions: %v, pending: %v",
		sent.Load(), ab.rg.metric(t, "trellis_wg_gateway_backend_cookie_replies_sent_total", "backend", "target"),
		ab.rg.metric(t, "trellis_wg_gateway_sessions"), ab.rg.metric(t, "trellis_wg_gateway_backend_pending_sessions", "backend", "target"))
	f.stop()
	ab.connect(t, 45*time.Second)
	if got := ab.rg.metric(t, "trellis_wg_gateway_sessions"); got > 2*16 {
		t.Fatalf("%v sessions: more than the upstream slots", got)
	}
	ab.mon.check(t, true)
}

type runningFlood struct {
	stopCh chan struct{}
	done   chan struct{}
	once   sync.Once
}

func startFlood(t *testing.T, ab *attackBed, rate, max int, sent *atomic.Int64) *runningFlood {
	f := &runningFlood{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		ab.sp.flood(ab.gwAddr, ab.srv.keys.pub, rate, max, f.stopCh, sent)
	}()
	t.Cleanup(f.stop)
	return f
}

func (f *runningFlood) stop() {
	f.once.Do(func() { close(f.stopCh) })
	<-f.done
}

func (f *runningFlood) ended() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

// TestAttackTrickle: 100 spoofed valid-mac1 initiations per second, the attack
// that used to keep every slot of the backend squatted by sessions "established"
// by the backend's cookie replies. New clients get through during and after it.
func TestAttackTrickle(t *testing.T) {
	if testing.Short() {
		t.Skip("attack test with WireGuard peers; skipped in -short mode")
	}
	ab := newAttackBed(t, 2, nil)
	var sent atomic.Int64
	f := startFlood(t, ab, 100, 6000, &sent)
	// Wait until the trickle has put the backend under pressure.
	ab.rg.waitMetric(t, func(v float64) bool { return v > 0 }, "trellis_wg_gateway_backend_under_pressure", "backend", "target")
	ab.connect(t, 60*time.Second)
	if f.ended() {
		t.Fatal("the trickle ended before the client got through")
	}
	f.stop()
	ab.connect(t, 45*time.Second)
	ab.mon.check(t, true)
}

// slowRelay sits between the gateway and a backend and holds the backend's
// handshake messages back for delay: a backend slow to answer handshakes. It keeps one socket towards the backend
// per gateway address, so the backend still sees every upstream socket apart.
type slowRelay struct {
	front *net.UDPConn
	to    netip.AddrPort
	delay time.Duration
	mu    sync.Mutex
	backs map[netip.AddrPort]*net.UDPConn
}

func newSlowRelay(t *testing.T, to netip.AddrPort, delay time.Duration) *slowRelay {
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &slowRelay{front: front, to: to, delay: delay, backs: map[netip.AddrPort]*net.UDPConn{}}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			r.mu.Lock()
			back := r.backs[from]
			if back == nil {
				back, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					r.mu.Unlock()
					continue
				}
				r.backs[from] = back
				go r.returnPath(back, from)
			}
			r.mu.Unlock()
			back.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	t.Cleanup(func() {
		front.Close()
		r.mu.Lock()
		for _, b := range r.backs {
			b.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *slowRelay) returnPath(back *net.UDPConn, gw netip.AddrPort) {
	buf := make([]byte, 65535)
	for {
		n, err := back.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if buf[0] == 4 { // data is not held back: the backend is slow at handshakes
			r.front.WriteToUDPAddrPort(buf[:n], gw)
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		time.AfterFunc(r.delay, func() { r.front.WriteToUDPAddrPort(pkt, gw) })
	}
}

// TestAttackSlowBackendEviction: while a legitimate client's handshake waits for
// a slow backend, 64 spoofed valid-mac1 initiations arrive. They may take its
// upstream socket, but the backend's late answer never reaches them, and the
// client completes its handshake; so does a new one afterwards.
func TestAttackSlowBackendEviction(t *testing.T) {
	if testing.Short() {
		t.Skip("attack test with WireGuard peers; skipped in -short mode")
	}
	var relay *slowRelay
	ab := newAttackBed(t, 2, func(srv *wgServer) netip.AddrPort {
		relay = newSlowRelay(t, srv.backend().Endpoint, 1500*time.Millisecond)
		return relay.front.LocalAddr().(*net.UDPAddr).AddrPort()
	}, func(c *Config) { c.MaxClientsPerBackend = 4; c.Shards = 1 })
	j := ab.next
	ab.next++
	c := newWGPeer(t, ab.keys[j], ab.ips[j], peerConfig(ab.srv.keys.pub, ab.gwAddr.String(), ab.srv.ip.String()+"/32"))
	ab.mon.allow(c)
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
			body, err := get(cctx, c, ab.srv.ip)
			ccancel()
			if err == nil && body == ab.srv.name {
				got <- nil
				return
			}
		}
		got <- ctx.Err()
	}()
	// The client's initiation waits for the slow backend...
	ab.rg.waitMetric(t, func(v float64) bool { return v >= 1 }, "trellis_wg_gateway_backend_pending_sessions", "backend", "target")
	// ...and 64 spoofed initiations arrive at once.
	buf := make([]byte, 2048)
	for i := 0; i < 64; i++ {
		ab.sp.send(buf, spoofedSource(200000+i), ab.gwAddr, initiation(ab.srv.keys.pub, uint32(i)))
	}
	if err := <-got; err != nil {
		t.Fatalf("client never reached the slow backend: %v", err)
	}
	t.Logf("unmatched backend packets dropped: %v", ab.rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "unmatched_index"))
	ab.connect(t, 45*time.Second)
	ab.mon.check(t, true)
}

// TestAttackLoadedBackend: the server itself is under load (its handshake queue
// is kept long by a direct flood, so wireguard-go answers initiations without a
// valid mac2 with cookie replies). The gateway reads the server's cookie for its
// upstream socket and sets the mac2 of the client's next initiation; the client,
// which keeps the gateway's cookie (or none), gets through by itself.
func TestAttackLoadedBackend(t *testing.T) {
	if testing.Short() {
		t.Skip("attack test with WireGuard peers; skipped in -short mode")
	}
	ab := newAttackBed(t, 1, nil)
	loader, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	var cookies atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := loader.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n == 64 && buf[0] == 3 {
				cookies.Add(1)
			}
		}
	}()
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		to := ab.srv.backend().Endpoint
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			// More than the server's under-load threshold (a handshake queue of
			// 512) at once.
			for i := 0; i < 1200; i++ {
				loader.WriteToUDPAddrPort(initiation(ab.srv.keys.pub, uint32(i)), to)
			}
		}
	}()
	defer func() { close(stop); <-loadDone }()
	testkit.Eventually(t, "the server under load (a cookie reply)", func() bool { return cookies.Load() > 0 })
	ab.connect(t, 60*time.Second)
	taken := ab.rg.metric(t, "trellis_wg_gateway_backend_cookie_replies_taken_total", "backend", "target")
	t.Logf("server cookie replies to the loader: %d; taken by the gateway: %v", cookies.Load(), taken)
	if taken == 0 {
		t.Fatal("the loaded server sent the gateway no cookie reply")
	}
	ab.mon.check(t, false)
}

// TestGatewayCookieOverIPv6: with cookies demanded, an initiation from an IPv6
// source is answered with the gateway's cookie reply, which wireguard-go's
// initiator code accepts; the next initiation, carrying the mac2 it computes, is
// forwarded. Nothing without it reaches the backend.
func TestGatewayCookieOverIPv6(t *testing.T) {
	backend, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer backend.Close()
	client, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	srv := newKeypair(t)
	rg := startGateway(t, "[::1]:0", []Backend{{Name: "v6", PublicKey: srv.pub, Endpoint: backend.LocalAddr().(*net.UDPAddr).AddrPort()}},
		func(c *Config) { c.Cookies = CookiesAlways })
	to := rg.gw.LocalAddr().(*net.UDPAddr).AddrPort()
	var gen device.CookieGenerator
	gen.Init(device.NoisePublicKey(srv.pub))

	first := initiation(srv.pub, 1)
	gen.AddMacs(first)
	client.WriteToUDPAddrPort(first, to)
	buf := make([]byte, 2048)
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := client.Read(buf)
	if err != nil || n != 64 || buf[0] != 3 {
		t.Fatalf("no cookie reply: %d bytes, %v", n, err)
	}
	var reply device.MessageCookieReply
	binary.Read(bytes.NewReader(buf[:n]), binary.LittleEndian, &reply)
	if reply.Receiver != 1 || !gen.ConsumeReply(&reply) {
		t.Fatal("wireguard-go cannot use the gateway's cookie reply")
	}
	second := initiation(srv.pub, 2)
	gen.AddMacs(second) // mac1, and mac2 with the cookie
	client.WriteToUDPAddrPort(second, to)
	backend.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = backend.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], second) {
		t.Fatalf("backend got %d bytes (%v), want the initiation with mac2", n, err)
	}
	if got := rg.metric(t, "trellis_wg_gateway_backend_cookie_replies_sent_total", "backend", "v6"); got != 1 {
		t.Fatalf("cookie replies sent = %v", got)
	}
	if got := rg.metric(t, "trellis_wg_gateway_backend_handshakes_total", "backend", "v6"); got != 1 {
		t.Fatalf("initiations forwarded = %v, want only the one with mac2", got)
	}
}
