package conntrack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	tmct "github.com/ti-mo/conntrack"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// Header allowance: conntrack counts IP packets, headers included. TCP over IPv4
// with timestamps costs 20 (IP) + 32 (TCP) = 52 bytes per packet; the handshake
// and FIN exchange add a few header-only packets. We allow 80 bytes per counted
// packet above the payload.
const headerAllowance = 80

func twoNodes(t *testing.T) (a, b *netnstest.NS) {
	a = netnstest.New(t, "ct-a")
	b = netnstest.New(t, "ct-b")
	netnstest.Veth(t, a, "eth0", "192.0.2.1/24", b, "eth0", "192.0.2.2/24")
	a.EnableConntrack(t, true)
	b.EnableConntrack(t, true)
	return a, b
}

// transfer sends up bytes from a to b over TCP and down bytes back, then closes.
func transfer(t *testing.T, a, b *netnstest.NS, up, down int) (clientPort, serverPort uint16) {
	ln := b.Listen(t, "tcp4", "192.0.2.2:0")
	return a.Exchange(t, ln, ln.Addr().String(), up, down)
}

func checkBytes(t *testing.T, what string, got, pkts uint64, payload int) {
	t.Helper()
	if got < uint64(payload) || got > uint64(payload)+pkts*headerAllowance {
		t.Errorf("%s: %d bytes in %d packets for %d payload bytes (allowance %d/packet)", what, got, pkts, payload, headerAllowance)
	}
}

// TestDumpAndDestroy runs real TCP traffic of known size between two namespaces
// with conntrack and accounting on, finds the flow in a dump with counters that
// match the payload, and sees its DESTROY event with the final counters when the
// entry is deleted (as `conntrack -D` does).
func TestDumpAndDestroy(t *testing.T) {
	a, b := twoNodes(t)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: a.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	destroyed := map[uint32]conntrack.Flow{}
	ready := make(chan struct{})
	listenErr := make(chan error, 1)
	go func() {
		listenErr <- conn.ListenDestroy(ctx, func() { close(ready) }, func(typ conntrack.EventType, f *conntrack.Flow) {
			mu.Lock()
			defer mu.Unlock()
			if typ == conntrack.EventDestroy {
				destroyed[f.ID] = *f
			}
		})
	}()
	<-ready
	// With nf_conntrack_events=2 (the default) the kernel only reports the end of
	// entries created while a listener exists: listen first.
	const up, down = 300_000, 70_000
	cport, sport := transfer(t, a, b, up, down)

	var got conntrack.Flow
	err = conn.Dump(context.Background(), func(f *conntrack.Flow) {
		if f.OrigSrcPort == cport && f.OrigDstPort == sport {
			got = *f
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == 0 || got.Proto != 6 || got.OrigSrc != netip.MustParseAddr("192.0.2.1") || got.Responder() != netip.MustParseAddr("192.0.2.2") {
		t.Fatalf("flow not in dump or wrong: %+v", got)
	}
	checkBytes(t, "orig", got.OrigBytes, got.OrigPackets, up)
	checkBytes(t, "reply", got.ReplyBytes, got.ReplyPackets, down)

	flush(t, a)
	testkit.Eventually(t, "the DESTROY event", func() bool {
		select {
		case err := <-listenErr:
			t.Fatalf("listen: %v", err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		_, ok := destroyed[got.ID]
		return ok
	})
	mu.Lock()
	d := destroyed[got.ID]
	mu.Unlock()
	if d.OrigBytes < got.OrigBytes || d.ReplyBytes < got.ReplyBytes || d.OrigSrcPort != cport {
		t.Fatalf("destroy %+v, dump %+v", d, got)
	}
	cancel()
	if err := <-listenErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("listen ended with %v", err)
	}
}

// TestUDPCounters checks UDP datagrams of known size: 28 header bytes each.
func TestUDPCounters(t *testing.T) {
	a, b := twoNodes(t)
	srv := b.ListenPacket(t, "udp4", "192.0.2.2:0")
	c := a.Dial(t, "udp4", srv.LocalAddr().String())
	const n, size = 20, 1000
	buf := make([]byte, 2000)
	for range n {
		if _, err := c.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := srv.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}
	conn, err := conntrack.Dial(conntrack.Options{NetNS: b.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	var got conntrack.Flow
	_ = conn.Dump(context.Background(), func(f *conntrack.Flow) {
		if f.Proto == 17 && f.OrigDstPort == uint16(srv.LocalAddr().(*net.UDPAddr).Port) {
			got = *f
		}
	})
	// Exactly: 20 IP + 8 UDP header bytes per datagram.
	if got.OrigPackets != n || got.OrigBytes != n*(size+28) || got.ReplyBytes != 0 {
		t.Fatalf("udp flow %+v, want %d packets of %d bytes", got, n, size+28)
	}
}

// TestOverflow fills a tiny event socket buffer while the consumer is stalled:
// ListenDestroy must report ErrOverflow, the signal to resync by dump.
func TestOverflow(t *testing.T) {
	a := netnstest.New(t, "ct-overflow")
	a.EnableConntrack(t, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: a.FD(), ReadBuffer: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	raw, err := tmct.Dial(&netlink.Config{NetNS: a.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })

	stall := make(chan struct{})
	ready := make(chan struct{})
	res := make(chan error, 1)
	go func() {
		first := true
		res <- conn.ListenDestroy(context.Background(), func() { close(ready) }, func(conntrack.EventType, *conntrack.Flow) {
			if first {
				first = false
				<-stall
			}
		})
	}()
	<-ready
	for round := 0; ; round++ {
		for i := range 500 {
			src := netip.AddrFrom4([4]byte{198, 51, 100, byte(i % 250)})
			f := tmct.NewFlow(17, 0, src, netip.MustParseAddr("203.0.113.1"), uint16(1000+i+round*500%30000), 53, 60, 0)
			if err := raw.Create(f); err != nil {
				t.Fatalf("create entry: %v", err)
			}
		}
		if err := raw.Flush(); err != nil {
			t.Fatal(err)
		}
		if round == 3 {
			break
		}
	}
	close(stall)
	select {
	case err := <-res:
		if !errors.Is(err, conntrack.ErrOverflow) {
			t.Fatalf("want ErrOverflow, got %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no overflow reported")
	}
}

// TestAccountingSysctl switches nf_conntrack_acct on inside a namespace.
func TestAccountingSysctl(t *testing.T) {
	a := netnstest.New(t, "ct-acct")
	a.EnableConntrack(t, false)
	err := a.Do(func() error {
		if on, err := conntrack.Accounting("/proc"); err != nil || on {
			return fmt.Errorf("fresh namespace: accounting %v, %v", on, err)
		}
		if err := conntrack.SetAccounting("/proc", true); err != nil {
			return err
		}
		if on, err := conntrack.Accounting("/proc"); err != nil || !on {
			return fmt.Errorf("after set: accounting %v, %v", on, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func flush(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	raw, err := tmct.Dial(&netlink.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.Flush(); err != nil {
		t.Fatal(err)
	}
}
