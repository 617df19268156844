package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

// wgScenario: two shoots' WireGuard servers (vpn-seed-server stand-ins) behind
// one wg-gateway port, and one client per shoot. Each client only knows the
// gateway's address and its own server's public key; the gateway routes its
// handshake by the mac1 computed over that key. Every few seconds each client
// fetches http://<its server's tunnel IP>/ through its tunnel, and the answer
// names the server that served it.
type wgScenario struct {
	gw     *proc
	shoots []*wgShoot
	// stranger is a client of a server the gateway does not know: its
	// handshakes match no backend and are dropped.
	stranger *wgShoot
	started  atomic.Bool
	proven   atomic.Bool
}

// wgShoot is one shoot: its server and the client that belongs to it.
type wgShoot struct {
	name           string
	server, client *wgPeer
	serverIP       netip.Addr
	ok, failed     atomic.Int64
	wrong          atomic.Int64 // answers from another shoot's server (never expected)
}

type wgKeys struct{ priv, pub [32]byte }

func newWGKeys() (wgKeys, error) {
	var k wgKeys
	if _, err := rand.Read(k.priv[:]); err != nil {
		return k, err
	}
	k.priv[0] &= 248
	k.priv[31] = (k.priv[31] & 127) | 64
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		return k, err
	}
	copy(k.pub[:], pub)
	return k, nil
}

// wgPeer is a wireguard-go device on a userspace (gVisor netstack) TUN: no root,
// no kernel WireGuard, a real UDP socket on the host.
type wgPeer struct {
	keys wgKeys
	dev  *device.Device
	net  *netstack.Net
	port int
}

func newWGPeer(keys wgKeys, ip netip.Addr, peers string) (*wgPeer, error) {
	tunDev, tnet, err := netstack.CreateNetTUN([]netip.Addr{ip}, nil, 1420)
	if err != nil {
		return nil, err
	}
	dev := device.NewDevice(tunDev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	if err := dev.IpcSet("private_key=" + hex.EncodeToString(keys.priv[:]) + "\nlisten_port=0\n" + peers); err != nil {
		dev.Close()
		return nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, err
	}
	p := &wgPeer{keys: keys, dev: dev, net: tnet}
	ipc, err := dev.IpcGet()
	if err != nil {
		dev.Close()
		return nil, err
	}
	for _, line := range strings.Split(ipc, "\n") {
		if v, ok := strings.CutPrefix(line, "listen_port="); ok {
			p.port, _ = strconv.Atoi(v)
		}
	}
	return p, nil
}

func wgPeerConfig(pub [32]byte, endpoint, allowed string) string {
	s := "public_key=" + hex.EncodeToString(pub[:]) + "\nallowed_ip=" + allowed + "\n"
	if endpoint != "" {
		s += "endpoint=" + endpoint + "\n"
	}
	return s
}

func (s *wgScenario) name() string { return "wg-gateway" }

func (s *wgScenario) start(ctx context.Context, d *Demo) error {
	var backends strings.Builder
	backends.WriteString("backends:\n")
	type pending struct {
		sh   *wgShoot
		keys wgKeys
		ip   netip.Addr
	}
	var clients []pending
	for i, name := range []string{"shoot--garden--alpha", "shoot--garden--beta"} {
		serverKeys, err := newWGKeys()
		if err != nil {
			return err
		}
		clientKeys, err := newWGKeys()
		if err != nil {
			return err
		}
		serverIP := netip.AddrFrom4([4]byte{10, byte(200 + i), 0, 1})
		clientIP := netip.AddrFrom4([4]byte{10, byte(200 + i), 0, 2})
		server, err := newWGPeer(serverKeys, serverIP, wgPeerConfig(clientKeys.pub, "", clientIP.String()+"/32"))
		if err != nil {
			return fmt.Errorf("wireguard server %s: %w", name, err)
		}
		d.tb.Cleanup(server.dev.Close)
		ln, err := server.net.ListenTCP(&net.TCPAddr{Port: 80})
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, name)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		d.tb.Cleanup(func() { _ = srv.Close() })
		sh := &wgShoot{name: name, server: server, serverIP: serverIP}
		s.shoots = append(s.shoots, sh)
		clients = append(clients, pending{sh, clientKeys, clientIP})
		fmt.Fprintf(&backends, "  - name: %s\n    publicKey: %s\n    endpoint: 127.0.0.1:%d\n", name,
			base64.StdEncoding.EncodeToString(serverKeys.pub[:]), server.port)
	}
	file := filepath.Join(d.dir, "wg-backends.yaml")
	if err := os.WriteFile(file, []byte(backends.String()), 0o600); err != nil {
		return err
	}
	gw, err := d.launch(ctx, "wg-gateway", d.bin("wg-gateway"), []string{
		"--backends.source=file", "--backends.file=" + file,
		"--wireguard.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0",
	}, nil, "serving web endpoints", "listening")
	if err != nil {
		return err
	}
	s.gw = gw
	gwAddr := gw.addr("listening")
	for _, c := range clients {
		// The client's only peer is its server's key at the gateway's address.
		client, err := newWGPeer(c.keys, c.ip, wgPeerConfig(c.sh.server.keys.pub, gwAddr, c.sh.serverIP.String()+"/32")+"persistent_keepalive_interval=5\n")
		if err != nil {
			return fmt.Errorf("wireguard client of %s: %w", c.sh.name, err)
		}
		d.tb.Cleanup(client.dev.Close)
		c.sh.client = client
	}
	strangerKeys, err := newWGKeys()
	if err != nil {
		return err
	}
	unknownServer, err := newWGKeys()
	if err != nil {
		return err
	}
	s.stranger = &wgShoot{name: "unknown-shoot", serverIP: netip.AddrFrom4([4]byte{10, 209, 0, 1})}
	s.stranger.client, err = newWGPeer(strangerKeys, netip.AddrFrom4([4]byte{10, 209, 0, 2}),
		wgPeerConfig(unknownServer.pub, gwAddr, "10.209.0.1/32"))
	if err != nil {
		return fmt.Errorf("wireguard client of an unknown server: %w", err)
	}
	d.tb.Cleanup(s.stranger.client.dev.Close)
	s.started.Store(true)
	for _, sh := range append(s.shoots, s.stranger) {
		go sh.fetchLoop(ctx)
	}
	return nil
}

// fetchLoop asks the shoot's server for its name through the client's tunnel
// every 2 s (the first handshake can take up to 5 s to be retried).
func (sh *wgShoot) fetchLoop(ctx context.Context) {
	hc := &http.Client{Transport: &http.Transport{DialContext: sh.client.net.DialContext, DisableKeepAlives: true}, Timeout: 5 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+sh.serverIP.String()+"/", nil)
		resp, err := hc.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch string(b) {
			case sh.name:
				sh.ok.Add(1)
			default:
				sh.wrong.Add(1)
			}
		} else if ctx.Err() == nil {
			sh.failed.Add(1)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *wgScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	st.Endpoints = []string{endpoint("wg-gateway", s.gw), fmt.Sprintf("%-22s udp %s", "WireGuard listener", s.gw.addr("listening"))}
	m := scrape(ctx, s.gw.addr("serving web endpoints"))
	all := true
	for _, sh := range s.shoots {
		hs := m.sum("trellis_wg_gateway_backend_handshakes_total", "backend", sh.name)
		sess := m.sum("trellis_wg_gateway_backend_sessions", "backend", sh.name)
		up := m.sum("trellis_wg_gateway_backend_bytes_total", "backend", sh.name, "direction", "to_backend")
		down := m.sum("trellis_wg_gateway_backend_bytes_total", "backend", sh.name, "direction", "to_client")
		st.Lines = append(st.Lines, fmt.Sprintf("%-21s handshakes %.0f  sessions %.0f  bytes to server %s / to client %s  client GETs ok %d failed %d wrong-server %d",
			sh.name, hs, sess, bytesStr(up), bytesStr(down), sh.ok.Load(), sh.failed.Load(), sh.wrong.Load()))
		all = all && hs >= 1 && sh.ok.Load() >= 1 && sh.wrong.Load() == 0
	}
	noBackend := m.sum("trellis_wg_gateway_dropped_packets_total", "reason", "no_backend")
	st.Lines = append(st.Lines, fmt.Sprintf("client of an unknown server: GETs ok %d failed %d; its handshakes dropped as no_backend: %.0f  (no_session %.0f  rate_limited %.0f)",
		s.stranger.ok.Load(), s.stranger.failed.Load(), noBackend,
		m.sum("trellis_wg_gateway_dropped_packets_total", "reason", "no_session"),
		m.sum("trellis_wg_gateway_dropped_packets_total", "reason", "rate_limited")))
	if all && noBackend >= 1 && s.stranger.ok.Load() == 0 {
		s.proven.Store(true)
	}
	st.Proven = s.proven.Load()
	st.Proof = "both clients' handshakes were forwarded by public key, each client got answers from its own server only, a client of an unknown server got nowhere"
	return st
}

// bytesStr formats a byte count.
func bytesStr(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.1f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}
