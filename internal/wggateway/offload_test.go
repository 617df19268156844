package wggateway

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

// batchTUN is a tun.Device that hands wireguard-go whole batches of IP packets
// per Read (like a kernel TUN with offloads, BatchSize 128): wireguard-go then
// encrypts the batch and sends it to its peer's endpoint with UDP_SEGMENT, as it
// does on Linux. Packets wireguard-go decrypts arrive on out.
type batchTUN struct {
	in     chan [][]byte
	out    chan []byte
	events chan tun.Event
	closed chan struct{}
	once   sync.Once
}

func newBatchTUN() *batchTUN {
	t := &batchTUN{in: make(chan [][]byte), out: make(chan []byte, 4096), events: make(chan tun.Event, 1), closed: make(chan struct{})}
	t.events <- tun.EventUp
	return t
}

func (t *batchTUN) File() *os.File           { return nil }
func (t *batchTUN) MTU() (int, error)        { return 1500, nil }
func (t *batchTUN) Name() (string, error)    { return "batchtun", nil }
func (t *batchTUN) Events() <-chan tun.Event { return t.events }
func (t *batchTUN) BatchSize() int           { return 128 }

func (t *batchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case batch := <-t.in:
		n := 0
		for ; n < len(batch) && n < len(bufs); n++ {
			sizes[n] = copy(bufs[n][offset:], batch[n])
		}
		return n, nil
	case <-t.closed:
		return 0, os.ErrClosed
	}
}

func (t *batchTUN) Write(bufs [][]byte, offset int) (int, error) {
	for _, b := range bufs {
		select {
		case t.out <- bytes.Clone(b[offset:]):
		case <-t.closed:
			return 0, os.ErrClosed
		}
	}
	return len(bufs), nil
}

func (t *batchTUN) Close() error {
	t.once.Do(func() { close(t.closed); close(t.events) })
	return nil
}

// batchPeer is a wireguard-go device (StdNetBind: GSO and GRO on Linux) on a
// batchTUN.
type batchPeer struct {
	keys keypair
	ip   netip.Addr
	tun  *batchTUN
	port uint16
}

func newBatchPeer(t *testing.T, keys keypair, ip netip.Addr, peers string) *batchPeer {
	t.Helper()
	bt := newBatchTUN()
	dev := device.NewDevice(bt, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	if err := dev.IpcSet("private_key=" + hex.EncodeToString(keys.priv[:]) + "\nlisten_port=0\n" + peers); err != nil {
		t.Fatalf("IpcSet: %v", err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Close)
	return &batchPeer{keys: keys, ip: ip, tun: bt, port: listenPort(t, dev)}
}

// ipPacket returns an IPv4 packet of size bytes from src to dst whose payload
// names its sequence number.
func ipPacket(src, dst netip.Addr, size, seq int) []byte {
	p := make([]byte, size)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(size))
	p[8], p[9] = 64, 253 // TTL, experimental protocol
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:], s4[:])
	copy(p[16:], d4[:])
	for i := 20; i < size; i++ {
		p[i] = byte(seq + i)
	}
	binary.BigEndian.PutUint32(p[20:], uint32(seq))
	return p
}

// sendBatches sends each batch of packet sizes from one peer's TUN and waits
// until the other peer's TUN has delivered every packet intact and in order.
func sendBatches(t *testing.T, from, to *batchPeer, sizes [][]int, seq *int) {
	t.Helper()
	for _, batch := range sizes {
		var pkts [][]byte
		for _, size := range batch {
			pkts = append(pkts, ipPacket(from.ip, to.ip, size, *seq))
			*seq++
		}
		select {
		case from.tun.in <- pkts:
		case <-time.After(30 * time.Second):
			t.Fatal("wireguard-go does not read its TUN")
		}
		for i, want := range pkts {
			select {
			case got := <-to.tun.out:
				if !bytes.Equal(got, want) {
					t.Fatalf("packet %d of a batch of %d: got %d bytes (seq %d), want %d bytes (seq %d)",
						i, len(pkts), len(got), binary.BigEndian.Uint32(got[20:]), len(want), binary.BigEndian.Uint32(want[20:]))
				}
			case <-time.After(30 * time.Second):
				t.Fatalf("packet %d of a batch of %d (%d bytes) never arrived", i, len(pkts), len(want))
			}
		}
	}
}

// TestOffloadWireGuardPeers runs real wireguard-go peers that send batches with
// UDP_SEGMENT and read with UDP_GRO through the gateway, with offload on and off,
// over IPv4 and IPv6: batches of one size, of mixed sizes (wireguard-go cuts runs
// where the size changes) and single packets, both ways. Every packet must arrive
// intact and in order; with offload on the gateway must have received coalesced
// buffers and sent segmented ones, with offload off neither.
func TestOffloadWireGuardPeers(t *testing.T) {
	for _, fam := range []struct{ name, gw, lo string }{{"ipv4", "127.0.0.1:0", "127.0.0.1"}, {"ipv6", "[::1]:0", "::1"}} {
		for _, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/offload=%v", fam.name, on), func(t *testing.T) {
				if fam.name == "ipv6" {
					if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
						t.Skipf("no IPv6 loopback: %v", err)
					} else {
						c.Close()
					}
				}
				ck, sk := newKeypair(t), newKeypair(t)
				cip, sip := netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("10.77.0.2")
				server := newBatchPeer(t, sk, sip, peerConfig(ck.pub, "", cip.String()+"/32"))
				lo := netip.MustParseAddr(fam.lo)
				rg := startGateway(t, fam.gw, []Backend{{Name: "s", PublicKey: sk.pub, Endpoint: netip.AddrPortFrom(lo, server.port)}},
					func(c *Config) { c.UDPOffload = on })
				gwPort := rg.gw.LocalAddr().(*net.UDPAddr).Port
				client := newBatchPeer(t, ck, cip, peerConfig(sk.pub, netip.AddrPortFrom(lo, uint16(gwPort)).String(), sip.String()+"/32"))

				seq := 0
				// The first packet starts the handshake.
				sendBatches(t, client, server, [][]int{{100}}, &seq)
				full := make([]int, 64)
				for i := range full {
					full[i] = 1400
				}
				var mixed []int
				for _, run := range []struct{ n, size int }{{10, 1400}, {5, 600}, {7, 1400}, {3, 120}, {1, 1000}, {20, 1400}} {
					for range run.n {
						mixed = append(mixed, run.size)
					}
				}
				batches := [][]int{full, mixed, {1400}, full, {60, 60, 60}, full}
				sendBatches(t, client, server, batches, &seq)
				sendBatches(t, server, client, batches, &seq)

				gro := rg.metric(t, "trellis_wg_gateway_udp_coalesced_received_datagrams_total")
				gso := rg.metric(t, "trellis_wg_gateway_udp_gso_sent_datagrams_total")
				active := rg.metric(t, "trellis_wg_gateway_udp_offload_active", "direction", "receive") +
					rg.metric(t, "trellis_wg_gateway_udp_offload_active", "direction", "send")
				if on && (gro == 0 || gso == 0 || active != 2) {
					t.Errorf("offload on: %v coalesced datagrams received, %v sent with GSO, active %v; want both > 0 and 2", gro, gso, active)
				}
				if !on && (gro != 0 || gso != 0 || active != 0) {
					t.Errorf("offload off: %v coalesced datagrams received, %v sent with GSO, active %v; want 0", gro, gso, active)
				}
				// Each direction: the packet count covers every datagram of a run.
				pkts := rg.metric(t, "trellis_wg_gateway_backend_packets_total", "backend", "s", "direction", "to_backend")
				if pkts < float64(seq/2) {
					t.Errorf("to_backend packets %v, want at least %d", pkts, seq/2)
				}
				t.Logf("offload=%v: %v datagrams received coalesced, %v sent with GSO, %v packets to the backend", on, gro, gso, pkts)
			})
		}
	}
}

// rawPeer is a UDP socket sending and receiving WireGuard-shaped messages with
// GSO and GRO, for batches wireguard-go cannot be made to send on purpose.
type rawPeer struct {
	c *udpbatch.Conn
}

func newRawPeer(t *testing.T, network, addr string) *rawPeer {
	t.Helper()
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	udpbatch.SetBuffers(uc, 4<<20)
	c, err := udpbatch.New(uc, 16)
	if err != nil {
		t.Fatal(err)
	}
	if o, err := c.EnableOffload(true, true); err != nil || !o.GRO || !o.GSO {
		t.Skipf("UDP offload unavailable: %+v %v", o, err)
	}
	return &rawPeer{c: c}
}

func (p *rawPeer) addr() netip.AddrPort {
	return p.c.UDPConn().LocalAddr().(*net.UDPAddr).AddrPort()
}

// send sends segs as one message: segmented (all but the last the same size)
// if there are several.
func (p *rawPeer) send(t *testing.T, to netip.AddrPort, segs ...[]byte) {
	t.Helper()
	var buf []byte
	for _, s := range segs {
		buf = append(buf, s...)
	}
	m := udpbatch.Message{Buf: buf, N: len(buf), Addr: to}
	if len(segs) > 1 {
		m.Seg = len(segs[0])
	}
	if n, err := p.c.WriteBatch([]udpbatch.Message{m}); n != len(segs) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
}

// rawMsg is one received message: its datagrams and how it was coalesced.
type rawMsg struct {
	from netip.AddrPort
	seg  int
	dgs  [][]byte
}

// recv reads until want datagrams arrived.
func (p *rawPeer) recv(t *testing.T, want int) []rawMsg {
	t.Helper()
	p.c.UDPConn().SetReadDeadline(time.Now().Add(30 * time.Second))
	defer p.c.UDPConn().SetReadDeadline(time.Time{})
	ms := udpbatch.NewMessages(16, udpbatch.MaxDatagram)
	var got []rawMsg
	for n := 0; n < want; {
		k, err := p.c.ReadBatch(ms)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", n, want, err)
		}
		for i := range ms[:k] {
			m := rawMsg{from: ms[i].Addr, seg: ms[i].Seg}
			for j := range ms[i].Datagrams() {
				m.dgs = append(m.dgs, bytes.Clone(ms[i].Segment(j)))
			}
			n += len(m.dgs)
			got = append(got, m)
		}
	}
	return got
}

// expectNone checks that nothing more arrives within a short while.
func (p *rawPeer) expectNone(t *testing.T) {
	t.Helper()
	p.c.UDPConn().SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	defer p.c.UDPConn().SetReadDeadline(time.Time{})
	ms := udpbatch.NewMessages(4, udpbatch.MaxDatagram)
	if n, err := p.c.ReadBatch(ms); err == nil {
		t.Fatalf("unexpected %d more messages, first %d bytes of type %d", n, ms[0].N, ms[0].Buf[0])
	}
}

// TestOffloadRekeyStraddle: a client's GRO buffer straddles a rekey (segments
// for the old and the new receiver index), carries a handshake initiation of the
// same size in its middle and ends with segments for an index the session does
// not have. The gateway forwards the runs of each known index segmented, the
// initiation on its own, drops the unknown segments, and keeps the order; the
// same for a backend's buffer with two client indexes. IPv4 and IPv6.
func TestOffloadRekeyStraddle(t *testing.T) {
	for _, fam := range []struct{ name, net, addr string }{{"ipv4", "udp4", "127.0.0.1:0"}, {"ipv6", "udp6", "[::1]:0"}} {
		t.Run(fam.name, func(t *testing.T) {
			if fam.name == "ipv6" {
				if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
					t.Skipf("no IPv6 loopback: %v", err)
				} else {
					c.Close()
				}
			}
			client, backend := newRawPeer(t, fam.net, fam.addr), newRawPeer(t, fam.net, fam.addr)
			pub := key(1)
			rg := startGateway(t, fam.addr, []Backend{{Name: "b", PublicKey: pub, Endpoint: backend.addr()}}, func(c *Config) { c.Shards = 1 })
			gw := rg.gw.LocalAddr().(*net.UDPAddr).AddrPort()

			// Handshake (client index 1, backend index 2), data, then a rekey
			// (client index 3, backend index 4).
			client.send(t, gw, initiation(pub, 1))
			up := backend.recv(t, 1)[0].from
			backend.send(t, up, response(2, 1))
			client.recv(t, 1)
			client.send(t, gw, transport(2, 10))
			backend.recv(t, 1)
			client.send(t, gw, initiation(pub, 3))
			backend.recv(t, 1)
			backend.send(t, up, response(4, 3))
			client.recv(t, 1)

			const size = wgproto.InitiationSize // so the initiation fits the run
			seg := func(recv uint32, n int) []byte { return transportSeg(recv, n, byte(recv)) }
			rekeyInit := initiation(pub, 5)
			segs := [][]byte{seg(2, size), seg(2, size), seg(2, size), seg(4, size), seg(4, size), seg(4, size),
				rekeyInit, seg(4, size), seg(4, size), seg(99, size), seg(99, size), seg(4, 60)}
			client.send(t, gw, segs...)
			want := [][]byte{segs[0], segs[1], segs[2], segs[3], segs[4], segs[5], segs[6], segs[7], segs[8], segs[11]}
			got := backend.recv(t, len(want))
			backend.expectNone(t)
			var flat [][]byte
			for _, m := range got {
				if len(m.dgs) > 1 && !bytes.Equal(m.dgs[0][:4], []byte{4, 0, 0, 0}) {
					t.Errorf("a coalesced buffer starts with message type %d", m.dgs[0][0])
				}
				for _, d := range m.dgs {
					if d[0] == 1 && len(m.dgs) != 1 {
						t.Errorf("the initiation rode in a coalesced buffer of %d datagrams", len(m.dgs))
					}
				}
				flat = append(flat, m.dgs...)
			}
			for i := range want {
				if i >= len(flat) || !bytes.Equal(flat[i], want[i]) {
					t.Fatalf("backend datagram %d differs (got %d datagrams, want %d)", i, len(flat), len(want))
				}
			}
			if len(got) < 4 {
				t.Errorf("backend got %d messages; want the runs to arrive coalesced (at most 5, at least 4)", len(got))
			}
			if d := rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "no_session"); d != 2 {
				t.Errorf("no_session drops %v, want 2", d)
			}

			// The backend's buffer for both client indexes and an unknown one.
			bsegs := [][]byte{seg(1, 200), seg(1, 200), seg(3, 200), seg(3, 200), seg(77, 200), seg(3, 90)}
			backend.send(t, up, bsegs...)
			bwant := [][]byte{bsegs[0], bsegs[1], bsegs[2], bsegs[3], bsegs[5]}
			var bflat [][]byte
			for _, m := range client.recv(t, len(bwant)) {
				bflat = append(bflat, m.dgs...)
			}
			client.expectNone(t)
			for i := range bwant {
				if i >= len(bflat) || !bytes.Equal(bflat[i], bwant[i]) {
					t.Fatalf("client datagram %d differs (got %d, want %d)", i, len(bflat), len(bwant))
				}
			}
			if d := rg.metric(t, "trellis_wg_gateway_dropped_packets_total", "reason", "unmatched_index"); d != 1 {
				t.Errorf("unmatched_index drops %v, want 1", d)
			}
			if v := rg.metric(t, "trellis_wg_gateway_udp_gso_sent_datagrams_total"); v < 10 {
				t.Errorf("GSO datagrams sent %v, want the runs sent segmented", v)
			}
		})
	}
}
