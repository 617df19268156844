package wggateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// End-to-end tests: real wireguard-go peers on userspace network stacks (no root),
// talking HTTP through their tunnels via a real gateway on loopback.

type keypair struct{ priv, pub [32]byte }

func newKeypair(t testing.TB) keypair {
	var k keypair
	if _, err := rand.Read(k.priv[:]); err != nil {
		t.Fatal(err)
	}
	k.priv[0] &= 248
	k.priv[31] = (k.priv[31] & 127) | 64
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(k.pub[:], pub)
	return k
}

// wgPeer is a wireguard-go device on a netstack TUN.
type wgPeer struct {
	keys keypair
	ip   netip.Addr
	dev  *device.Device
	net  *netstack.Net
	port uint16
}

func newWGPeer(t testing.TB, keys keypair, ip netip.Addr, peers string) *wgPeer {
	t.Helper()
	tunDev, tnet, err := netstack.CreateNetTUN([]netip.Addr{ip}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := device.NewDevice(tunDev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	cfg := "private_key=" + hex.EncodeToString(keys.priv[:]) + "\nlisten_port=0\n" + peers
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatalf("IpcSet: %v", err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	p := &wgPeer{keys: keys, ip: ip, dev: dev, net: tnet, port: listenPort(t, dev)}
	t.Cleanup(dev.Close)
	return p
}

// listenPort returns the UDP port a wireguard-go device listens on.
func listenPort(t testing.TB, dev *device.Device) uint16 {
	t.Helper()
	ipc, err := dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(ipc, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			n, _ := strconv.Atoi(v)
			return uint16(n)
		}
	}
	t.Fatal("wireguard-go reports no listen_port")
	return 0
}

func peerConfig(pub [32]byte, endpoint string, allowed string) string {
	s := "public_key=" + hex.EncodeToString(pub[:]) + "\nallowed_ip=" + allowed + "\n"
	if endpoint != "" {
		s += "endpoint=" + endpoint + "\n"
	}
	return s
}

// wgServer is a backend: a WireGuard server serving HTTP inside its tunnel,
// answering with its name.
type wgServer struct {
	*wgPeer
	name string
}

func newWGServer(t testing.TB, name string, ip netip.Addr, clients []keypair, clientIPs []netip.Addr) *wgServer {
	var peers string
	for i, c := range clients {
		peers += peerConfig(c.pub, "", clientIPs[i].String()+"/32")
	}
	p := newWGPeer(t, newKeypair(t), ip, peers)
	ln, err := p.net.ListenTCP(&net.TCPAddr{Port: 80})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &wgServer{wgPeer: p, name: name}
}

func (s *wgServer) backend() Backend {
	return Backend{Name: s.name, PublicKey: s.keys.pub, Endpoint: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.port)}
}

// get fetches http://<server ip>/ through the client's tunnel.
func get(ctx context.Context, client *wgPeer, server netip.Addr) (string, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: client.net.DialContext, DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+server.String()+"/", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// eventually retries get until it answers want or the deadline passes. WireGuard
// handshakes retry every 5 s, so deadlines are generous; nothing sleeps to wait.
func eventually(t testing.TB, client *wgPeer, server netip.Addr, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	var lastErr error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err := get(ctx, client, server)
		cancel()
		if err == nil && got == want {
			return
		}
		last, lastErr = got, err
	}
	t.Fatalf("client %s never reached %s as %q (last %q, %v)", client.ip, server, want, last, lastErr)
}

// runningGateway is a gateway serving on loopback.
type runningGateway struct {
	gw     *Gateway
	addr   string
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
}

// startGateway serves a gateway on addr (2 shards unless a change says otherwise);
// it stops when the test ends.
func startGateway(t testing.TB, addr string, backends []Backend, changes ...func(*Config)) *runningGateway {
	t.Helper()
	cfg := DefaultConfig()
	cfg.ListenAddress = addr
	cfg.Shards = 2
	for _, change := range changes {
		change(&cfg)
	}
	gw, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	gw.SetBackends(backends)
	ctx, cancel := context.WithCancel(context.Background())
	if err := gw.Listen(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	rg := &runningGateway{gw: gw, addr: gw.LocalAddr().String(), cancel: cancel, done: make(chan error, 1), reg: newTestRegistry(gw)}
	go func() { rg.done <- gw.Serve(ctx) }()
	t.Cleanup(rg.stop)
	return rg
}

func newTestRegistry(gw *Gateway) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(gw.Collector("trellis_wg_gateway"))
	return reg
}

func (rg *runningGateway) stop() {
	rg.cancel()
	<-rg.done
	rg.done <- nil // idempotent
}

// metric returns the value of one series of the gateway's collector (0 when
// it does not exist).
func (rg *runningGateway) metric(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	v, _ := testkit.Metric(t, rg.reg, name, labels...)
	return v
}

func (rg *runningGateway) waitMetric(t testing.TB, cond func(float64) bool, name string, labels ...string) {
	t.Helper()
	var v float64
	if !testkit.Until(testkit.Timeout, func() bool { v = rg.metric(t, name, labels...); return cond(v) }) {
		t.Fatalf("%s%v = %v never met the condition", name, labels, v)
	}
}

// landscape: servers[i] at 10.10.i.1, clients[j] at 10.10.(j%n).(10+j) belong to
// server j%n.
type landscape struct {
	servers   []*wgServer
	clients   []*wgPeer
	clientsOf map[int][]int
}

func buildLandscape(t *testing.T, nServers, nClients int, endpoint func(j int) string) *landscape {
	l := &landscape{clientsOf: map[int][]int{}}
	keys := make([]keypair, nClients)
	ips := make([]netip.Addr, nClients)
	for j := range keys {
		keys[j] = newKeypair(t)
		ips[j] = netip.AddrFrom4([4]byte{10, 10, byte(j % nServers), byte(10 + j)})
		l.clientsOf[j%nServers] = append(l.clientsOf[j%nServers], j)
	}
	for i := 0; i < nServers; i++ {
		var ck []keypair
		var cip []netip.Addr
		for _, j := range l.clientsOf[i] {
			ck = append(ck, keys[j])
			cip = append(cip, ips[j])
		}
		l.servers = append(l.servers, newWGServer(t, fmt.Sprintf("shoot-%d", i), netip.AddrFrom4([4]byte{10, 10, byte(i), 1}), ck, cip))
	}
	for j := 0; j < nClients; j++ {
		s := l.servers[j%nServers]
		l.clients = append(l.clients, newWGPeer(t, keys[j], ips[j], peerConfig(s.keys.pub, endpoint(j), s.ip.String()+"/32")))
	}
	return l
}

func (l *landscape) backends() []Backend {
	var bs []Backend
	for _, s := range l.servers {
		bs = append(bs, s.backend())
	}
	return bs
}

// reachAll has every client fetch from its own server, in parallel.
func (l *landscape) reachAll(t *testing.T, within time.Duration, skip ...int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, len(l.clients))
	for j, c := range l.clients {
		if containsInt(skip, j%len(l.servers)) {
			continue
		}
		s := l.servers[j%len(l.servers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(within)
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				got, err := get(ctx, c, s.ip)
				cancel()
				if err == nil {
					if got != s.name {
						errs <- fmt.Sprintf("client %s reached %q, want %q", c.ip, got, s.name)
					}
					return
				}
			}
			errs <- fmt.Sprintf("client %s never reached %s", c.ip, s.name)
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// udpTap relays one client's packets to the gateway through its own socket and
// records the handshake initiations it sees, for the replay test.
type udpTap struct {
	in, out *net.UDPConn
	mu      sync.Mutex
	client  *net.UDPAddr
	inits   [][]byte
}

func newTap(t *testing.T, gateway string) *udpTap {
	in, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	gw, _ := net.ResolveUDPAddr("udp", gateway)
	out, err := net.DialUDP("udp4", nil, gw)
	if err != nil {
		t.Fatal(err)
	}
	tp := &udpTap{in: in, out: out}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := in.ReadFromUDP(buf)
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.client = from
			if n == 148 && buf[0] == 1 {
				tp.inits = append(tp.inits, bytes.Clone(buf[:n]))
			}
			tp.mu.Unlock()
			out.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := out.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP errors while the gateway restarts
			}
			tp.mu.Lock()
			c := tp.client
			tp.mu.Unlock()
			if c != nil {
				in.WriteToUDP(buf[:n], c)
			}
		}
	}()
	t.Cleanup(func() { in.Close(); out.Close() })
	return tp
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with WireGuard peers; skipped in -short mode")
	}
	rg := startGateway(t, "127.0.0.1:0", nil)
	gatewayAddr := rg.addr
	tap := newTap(t, gatewayAddr)
	// Client 0 reaches the gateway through the tap; the others directly.
	l := buildLandscape(t, 3, 5, func(j int) string {
		if j == 0 {
			return tap.in.LocalAddr().String()
		}
		return gatewayAddr
	})
	rg.gw.SetBackends(l.backends())

	t.Run("every client reaches its own server", func(t *testing.T) {
		l.reachAll(t, 45*time.Second)
		for i, s := range l.servers {
			want := float64(len(l.clientsOf[i]))
			if got := rg.metric(t, "trellis_wg_gateway_backend_sessions", "backend", s.name); got != want {
				t.Errorf("sessions of %s = %v, want %v", s.name, got, want)
			}
			if got := rg.metric(t, "trellis_wg_gateway_backend_packets_total", "backend", s.name, "direction", "to_client"); got == 0 {
				t.Errorf("no packets from %s counted", s.name)
			}
		}
		if got := rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "no_backend"); got != 0 {
			t.Errorf("%v initiations matched no backend", got)
		}
	})

	t.Run("an unknown server key is dropped", func(t *testing.T) {
		stranger := newWGPeer(t, newKeypair(t), netip.MustParseAddr("10.99.0.2"), peerConfig(newKeypair(t).pub, gatewayAddr, "10.99.0.1/32"))
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			get(ctx, stranger, netip.MustParseAddr("10.99.0.1")) // triggers a handshake
		}()
		rg.waitMetric(t, func(v float64) bool { return v >= 1 }, "trellis_wg_gateway_dropped_packets_total", "reason", "no_backend")
	})

	t.Run("a replayed initiation disturbs nobody", func(t *testing.T) {
		tap.mu.Lock()
		if len(tap.inits) == 0 {
			tap.mu.Unlock()
			t.Fatal("tap saw no initiation")
		}
		replay := tap.inits[len(tap.inits)-1]
		tap.mu.Unlock()
		gw, _ := net.ResolveUDPAddr("udp", gatewayAddr)
		attacker, err := net.DialUDP("udp4", nil, gw)
		if err != nil {
			t.Fatal(err)
		}
		defer attacker.Close()
		for i := 0; i < 3; i++ {
			attacker.Write(replay)
		}
		// The gateway forwards it (mac1 is valid) as a new, unanswered session...
		rg.waitMetric(t, func(v float64) bool { return v >= 1 }, "trellis_wg_gateway_backend_pending_sessions", "backend", "shoot-0")
		// ...the server rejects the replay, so the attacker gets nothing back...
		attacker.SetReadDeadline(time.Now().Add(2 * time.Second))
		if n, err := attacker.Read(make([]byte, 2048)); err == nil {
			t.Fatalf("attacker received %d bytes", n)
		}
		// ...and the real client's session carries on.
		eventually(t, l.clients[0], l.servers[0].ip, "shoot-0", 20*time.Second)
		if got := rg.metric(t, "trellis_wg_gateway_backend_sessions", "backend", "shoot-0"); got != float64(len(l.clientsOf[0])) {
			t.Fatalf("sessions of shoot-0 after replay = %v", got)
		}
	})

	t.Run("backends added and removed at run time", func(t *testing.T) {
		ck := newKeypair(t)
		cip := netip.MustParseAddr("10.10.3.10")
		srv := newWGServer(t, "shoot-3", netip.MustParseAddr("10.10.3.1"), []keypair{ck}, []netip.Addr{cip})
		client := newWGPeer(t, ck, cip, peerConfig(srv.keys.pub, gatewayAddr, "10.10.3.1/32"))
		bs := append(l.backends(), srv.backend())
		rg.gw.SetBackends(bs)
		eventually(t, client, srv.ip, "shoot-3", 30*time.Second)
		// The others kept their sessions (no new handshake was needed).
		l.reachAll(t, 20*time.Second)
		if got := rg.metric(t, "trellis_wg_gateway_backend_sessions", "backend", "shoot-0"); got != float64(len(l.clientsOf[0])) {
			t.Fatalf("shoot-0 sessions after adding a backend = %v", got)
		}

		// Remove shoot-1: its sessions end; its clients' packets are dropped.
		var keep []Backend
		for _, b := range bs {
			if b.Name != "shoot-1" {
				keep = append(keep, b)
			}
		}
		rg.gw.SetBackends(keep)
		// Its sessions end (the series goes away)...
		rg.waitMetric(t, func(v float64) bool { return v == 0 }, "trellis_wg_gateway_backend_sessions", "backend", "shoot-1")
		// ...and its clients' packets are dropped, whatever stage they reach.
		dropped := func() float64 {
			return rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "backend_removed") +
				rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "no_session") +
				rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "no_backend")
		}
		before := dropped()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if _, err := get(ctx, l.clients[1], l.servers[1].ip); err == nil {
			t.Fatal("client of a removed backend still reached it")
		}
		cancel()
		if dropped() <= before {
			t.Fatal("packets of a removed backend's client were not dropped")
		}
		l.reachAll(t, 20*time.Second, 1)
		rg.gw.SetBackends(bs) // back for the restart test
	})

	t.Run("clients recover after a gateway restart", func(t *testing.T) {
		backends := rg.gw.table.Load().backends
		var bs []Backend
		for _, b := range backends {
			bs = append(bs, b.Backend)
		}
		rg.stop()
		rg = startGateway(t, gatewayAddr, bs)
		// WireGuard re-handshakes when data gets no answer (about 15 s).
		l.reachAll(t, 60*time.Second)
	})
}

// TestCookieReplyThroughGateway plays a backend under load with wireguard-go's own
// cookie code: the first initiation gets a cookie reply, which the gateway keeps
// (the client holds the gateway's cookie, if any); the client's next initiation,
// relayed through the gateway, must carry a valid mac2 for the address the backend
// sees, set by the gateway.
func TestCookieReplyThroughGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test with WireGuard peers; skipped in -short mode")
	}
	serverKeys := newKeypair(t)
	backend, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	rg := startGateway(t, "127.0.0.1:0", []Backend{{Name: "loaded", PublicKey: serverKeys.pub, Endpoint: backend.LocalAddr().(*net.UDPAddr).AddrPort()}})
	var checker device.CookieChecker
	checker.Init(device.NoisePublicKey(serverKeys.pub))

	client := newWGPeer(t, newKeypair(t), netip.MustParseAddr("10.20.0.2"), peerConfig(serverKeys.pub, rg.addr, "10.20.0.1/32"))
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		get(ctx, client, netip.MustParseAddr("10.20.0.1")) // makes the client initiate
	}()

	buf := make([]byte, 2048)
	deadline := time.Now().Add(40 * time.Second)
	cookiesSent := 0
	for {
		backend.SetReadDeadline(deadline)
		n, from, err := backend.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("backend: %v after %d cookie replies", err, cookiesSent)
		}
		msg := buf[:n]
		if n != device.MessageInitiationSize || msg[0] != 1 {
			continue
		}
		if !checker.CheckMAC1(msg) {
			t.Fatal("initiation relayed with an invalid mac1")
		}
		src, _ := from.MarshalBinary() // what wireguard-go's StdNetEndpoint.DstToBytes gives
		if checker.CheckMAC2(msg, src) {
			if cookiesSent == 0 {
				t.Fatal("mac2 valid before any cookie was sent")
			}
			return // the client used the cookie, and it is valid for this address
		}
		if cookiesSent > 0 {
			t.Fatalf("initiation after a cookie reply has no valid mac2 for %v", from)
		}
		sender := binary.LittleEndian.Uint32(msg[4:8])
		reply, err := checker.CreateReply(msg, sender, src)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		binary.Write(&out, binary.LittleEndian, reply)
		if out.Len() != device.MessageCookieReplySize {
			t.Fatalf("cookie reply of %d bytes", out.Len())
		}
		if _, err := backend.WriteToUDPAddrPort(out.Bytes(), from); err != nil {
			t.Fatal(err)
		}
		cookiesSent++
	}
}
