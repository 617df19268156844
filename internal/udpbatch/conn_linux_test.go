//go:build linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// payload returns a distinct datagram body of n >= 1 bytes.
func payload(tag string, i, n int) string {
	s := fmt.Sprintf("%s-%d-", tag, i)
	if len(s) >= n {
		return s[:n]
	}
	return s + strings.Repeat("x", n-len(s))
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name    string
		ipv6    bool
		srcNet  string
		srcAddr string
		dstNet  string
		dstAddr string
		// dstIP addresses the receivers; wantSrc is how they see the sender.
		dstIP   string
		wantSrc string
	}{
		{name: "ipv4", srcNet: "udp4", srcAddr: "127.0.0.1:0", dstNet: "udp4", dstAddr: "127.0.0.1:0", dstIP: "127.0.0.1", wantSrc: "127.0.0.1"},
		{name: "ipv6", ipv6: true, srcNet: "udp6", srcAddr: "[::1]:0", dstNet: "udp6", dstAddr: "[::1]:0", dstIP: "::1", wantSrc: "::1"},
		{name: "dual-stack receiver, ipv4 peer", ipv6: true, srcNet: "udp4", srcAddr: "127.0.0.1:0", dstNet: "udp", dstAddr: "[::]:0", dstIP: "127.0.0.1", wantSrc: "127.0.0.1"},
		{name: "dual-stack sender to ipv4", ipv6: true, srcNet: "udp", srcAddr: "[::]:0", dstNet: "udp4", dstAddr: "127.0.0.1:0", dstIP: "127.0.0.1", wantSrc: "127.0.0.1"},
		{name: "ipv4 socket, v4-mapped destination", srcNet: "udp4", srcAddr: "127.0.0.1:0", dstNet: "udp4", dstAddr: "127.0.0.1:0", dstIP: "::ffff:127.0.0.1", wantSrc: "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ipv6 {
				needIPv6(t)
			}
			src := listenConn(t, tt.srcNet, tt.srcAddr, 16)
			dsts := []*Conn{
				listenConn(t, tt.dstNet, tt.dstAddr, 16),
				listenConn(t, tt.dstNet, tt.dstAddr, 16),
			}
			for _, d := range dsts {
				if err := SetBuffers(d.UDPConn(), 1<<20); err != nil {
					t.Fatal(err)
				}
			}
			srcPort := local(src, tt.wantSrc).Port()
			wantFrom := netip.AddrPortFrom(netip.MustParseAddr(tt.wantSrc), srcPort)

			seq := 0
			// Batches smaller than, equal to and larger than the Conn's
			// batch size of 16, interleaving two destinations.
			for _, size := range []int{1, 3, 16, 17, 40} {
				var ms []Message
				want := make([][]string, len(dsts))
				for i := range size {
					d := i % len(dsts)
					body := payload(tt.name, seq, 1+seq%1500)
					seq++
					want[d] = append(want[d], body)
					to := netip.AddrPortFrom(netip.MustParseAddr(tt.dstIP), local(dsts[d], "127.0.0.1").Port())
					buf := append([]byte(body), "trailing bytes beyond N"...)
					ms = append(ms, Message{Buf: buf, N: len(body), Addr: to})
				}
				n, err := src.WriteBatch(ms)
				if err != nil || n != size {
					t.Fatalf("WriteBatch(%d) = %d, %v", size, n, err)
				}
				for d, dst := range dsts {
					got := readN(t, dst, len(want[d]), 5, 2048)
					for i, g := range got {
						if g.data != want[d][i] || g.truncated {
							t.Fatalf("batch %d dst %d msg %d: got %q (truncated %v), want %q", size, d, i, g.data, g.truncated, want[d][i])
						}
						if g.addr != wantFrom {
							t.Fatalf("batch %d dst %d msg %d: from %v, want %v", size, d, i, g.addr, wantFrom)
						}
					}
				}
			}

			// Reply to the address ReadBatch reported.
			ms := []Message{{Buf: []byte("ping"), N: 4, Addr: netip.AddrPortFrom(netip.MustParseAddr(tt.dstIP), local(dsts[0], "127.0.0.1").Port())}}
			if n, err := src.WriteBatch(ms); n != 1 || err != nil {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			got := readN(t, dsts[0], 1, 4, 64)
			reply := []Message{{Buf: []byte("pong"), N: 4, Addr: got[0].addr}}
			if n, err := dsts[0].WriteBatch(reply); n != 1 || err != nil {
				t.Fatalf("reply WriteBatch = %d, %v", n, err)
			}
			back := readN(t, src, 1, 4, 64)
			if back[0].data != "pong" {
				t.Fatalf("reply = %q", back[0].data)
			}
		})
	}
}

func TestTruncation(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 8)
	dst := listenConn(t, "udp4", "127.0.0.1:0", 8)
	to := local(dst, "")
	long := strings.Repeat("0123456789", 10)
	ms := []Message{
		{Buf: []byte(long), N: len(long), Addr: to},
		{Buf: []byte("short"), N: 5, Addr: to},
		{Buf: nil, N: 0, Addr: to},
		{Buf: []byte("exactly10!"), N: 10, Addr: to},
	}
	if n, err := src.WriteBatch(ms); n != len(ms) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readN(t, dst, len(ms), 8, 10)
	want := []received{
		{data: long[:10], truncated: true},
		{data: "short"},
		{data: ""},
		{data: "exactly10!"},
	}
	for i := range want {
		if got[i].data != want[i].data || got[i].truncated != want[i].truncated {
			t.Errorf("msg %d: got %q truncated=%v, want %q truncated=%v", i, got[i].data, got[i].truncated, want[i].data, want[i].truncated)
		}
	}

	// A zero-length buffer receives the datagram as fully truncated.
	if n, err := src.WriteBatch(ms[1:2]); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	in := []Message{{Buf: nil}}
	if err := dst.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	if n, err := dst.ReadBatch(in); n != 1 || err != nil || in[0].N != 0 || !in[0].Truncated {
		t.Fatalf("ReadBatch into empty buffer = %d, %v, %+v", n, err, in[0])
	}
}

func TestReadBatchEmptyAndOversized(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 4)
	dst := listenConn(t, "udp4", "127.0.0.1:0", 4)
	if n, err := dst.ReadBatch(nil); n != 0 || err != nil {
		t.Fatalf("ReadBatch(nil) = %d, %v", n, err)
	}
	if n, err := src.WriteBatch(nil); n != 0 || err != nil {
		t.Fatalf("WriteBatch(nil) = %d, %v", n, err)
	}
	ms := make([]Message, 10)
	for i := range ms {
		ms[i] = Message{Buf: []byte{byte(i)}, N: 1, Addr: local(dst, "")}
	}
	if n, err := src.WriteBatch(ms); n != 10 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	// All ten are queued; one call returns at most the Conn's batch size.
	in := NewMessages(10, 16)
	if err := dst.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	n, err := dst.ReadBatch(in)
	if err != nil || n != 4 {
		t.Fatalf("ReadBatch = %d, %v; want 4", n, err)
	}
	readN(t, dst, 6, 10, 16)
}

func TestWriteBatchSkipsBadMessages(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 4)
	dst := listenConn(t, "udp4", "127.0.0.1:0", 4)
	to := local(dst, "")
	good := func(s string) Message { return Message{Buf: []byte(s), N: len(s), Addr: to} }
	ms := []Message{
		good("a"),
		{Buf: []byte("x"), N: 2, Addr: to},  // N beyond Buf
		{Buf: []byte("x"), N: -1, Addr: to}, // negative N
		good("b"),
		{Buf: []byte("x"), N: 1, Addr: netip.MustParseAddrPort("[::1]:9")}, // IPv6 on IPv4 socket
		{Buf: []byte("x"), N: 1}, // no destination, not connected
		good("c"),
		{Buf: []byte("x"), N: 1, Addr: netip.AddrPortFrom(to.Addr(), 0)}, // port 0: EINVAL from the kernel
		good("d"),
		good("e"),
	}
	n, err := src.WriteBatch(ms)
	if err != nil || n != 5 {
		t.Fatalf("WriteBatch = %d, %v; want 5, nil", n, err)
	}
	got := readN(t, dst, 5, 8, 16)
	for i, want := range []string{"a", "b", "c", "d", "e"} {
		if got[i].data != want {
			t.Errorf("msg %d = %q, want %q", i, got[i].data, want)
		}
	}
	st := src.Stats()
	if st.WriteDropped != 5 {
		t.Errorf("WriteDropped = %d, want 5", st.WriteDropped)
	}
	if !errors.Is(st.LastWriteDropErr, syscall.EINVAL) {
		t.Errorf("LastWriteDropErr = %v, want EINVAL", st.LastWriteDropErr)
	}
	expectNothing(t, dst)
}

func TestCloseUnblocksReadBatch(t *testing.T) {
	for _, network := range []string{"udp4", "udp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "udp6" {
				needIPv6(t)
				addr = "[::1]:0"
			}
			c := listenConn(t, network, addr, 8)
			done := make(chan error, 1)
			go func() {
				_, err := c.ReadBatch(NewMessages(8, 64))
				done <- err
			}()
			waitBlockedIn(t, "ReadBatch")
			if err := c.UDPConn().Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(waitTimeout):
				t.Fatal("ReadBatch still blocked after Close")
			}
			// Every later call fails the same way.
			if _, err := c.ReadBatch(NewMessages(1, 1)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("ReadBatch on closed Conn: %v", err)
			}
			ms := []Message{{Buf: []byte("x"), N: 1, Addr: netip.MustParseAddrPort("127.0.0.1:9")}}
			if n, err := c.WriteBatch(ms); n != 0 || !errors.Is(err, net.ErrClosed) {
				t.Fatalf("WriteBatch on closed Conn: %d, %v", n, err)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	c := listenConn(t, "udp4", "127.0.0.1:0", 8)
	if err := c.UDPConn().SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := c.ReadBatch(NewMessages(8, 64))
	var ne net.Error
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("ReadBatch = %d, %v; want a timeout", n, err)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(nil, 8); err == nil {
		t.Error("New(nil) succeeded")
	}
	uc := listenUDP(t, "udp4", "127.0.0.1:0")
	for _, tc := range []struct{ in, want int }{{0, DefaultBatch}, {-3, DefaultBatch}, {1, 1}, {100, 100}, {1 << 20, MaxBatch}} {
		c, err := New(uc, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.r.hdrs) != tc.want || len(c.w.hdrs) != tc.want {
			t.Errorf("New(%d): batch %d, want %d", tc.in, len(c.r.hdrs), tc.want)
		}
	}
	closed := listenUDP(t, "udp4", "127.0.0.1:0")
	_ = closed.Close()
	if _, err := New(closed, 8); !errors.Is(err, net.ErrClosed) {
		t.Errorf("New(closed) = %v, want net.ErrClosed", err)
	}
}

// TestConcurrency runs ReadBatch and several WriteBatch calls on one Conn at
// once (run it with -race).
func TestConcurrency(t *testing.T) {
	a := listenConn(t, "udp4", "127.0.0.1:0", 8)
	b := listenConn(t, "udp4", "127.0.0.1:0", 8)
	for _, c := range []*Conn{a, b} {
		if err := SetBuffers(c.UDPConn(), 4<<20); err != nil {
			t.Fatal(err)
		}
	}
	const writers, batches, per = 3, 40, 8
	var wg sync.WaitGroup
	errs := make(chan error, writers+2)
	send := func(from *Conn, to netip.AddrPort, tag string) {
		defer wg.Done()
		ms := make([]Message, per)
		for j := range batches {
			for k := range ms {
				body := payload(tag, j*per+k, 20)
				ms[k] = Message{Buf: []byte(body), N: len(body), Addr: to}
			}
			if n, err := from.WriteBatch(ms); n != per || err != nil {
				errs <- fmt.Errorf("%s: WriteBatch = %d, %v", tag, n, err)
				return
			}
		}
	}
	// a writes to b from several goroutines while a also reads what b sends.
	for i := range writers {
		wg.Add(1)
		go send(a, local(b, ""), fmt.Sprint("w", i))
	}
	wg.Add(1)
	go send(b, local(a, ""), "back")
	var got []received
	wg.Add(1)
	go func() {
		defer wg.Done()
		got = readN(t, a, batches*per, 8, 64)
	}()
	fromA := readN(t, b, writers*batches*per, 8, 64)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(got) != batches*per || len(fromA) != writers*batches*per {
		t.Fatalf("a got %d, b got %d", len(got), len(fromA))
	}
	// Each writer's datagrams arrive complete and in its own order.
	next := map[string]int{}
	for _, r := range fromA {
		tag, rest, _ := strings.Cut(r.data, "-")
		want := payload(tag, next[tag], 20)
		if r.data != want || !strings.HasPrefix(rest, fmt.Sprint(next[tag])) {
			t.Fatalf("got %q, want %q", r.data, want)
		}
		next[tag]++
	}
}

// waitBlockedIn waits until some goroutine is parked in the network poller
// inside function fn, so that a test exercises the blocked path rather than
// racing with it.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(waitTimeout)
	for {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "."+fn+"(") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no goroutine blocked in %s after %v", fn, waitTimeout)
		}
		runtime.Gosched()
	}
}

// TestZeroConn: a nil or zero Conn returns errors instead of panicking.
func TestZeroConn(t *testing.T) {
	ms := []Message{{Buf: []byte("x"), N: 1, Addr: netip.MustParseAddrPort("127.0.0.1:9")}}
	for _, c := range []*Conn{nil, {}} {
		if _, err := c.ReadBatch(ms); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ReadBatch: %v", err)
		}
		if _, err := c.WriteBatch(ms); !errors.Is(err, syscall.EINVAL) {
			t.Errorf("WriteBatch: %v", err)
		}
		if c.UDPConn() != nil || c.Stats() != (Stats{}) {
			t.Error("zero Conn has a socket or counters")
		}
	}
}

// TestV6OnlySocketToIPv4: an IPv6-only socket cannot reach an IPv4 peer;
// that message is dropped and the IPv6 ones are still sent.
func TestV6OnlySocketToIPv4(t *testing.T) {
	needIPv6(t)
	src := listenConn(t, "udp6", "[::1]:0", 4)
	dst := listenConn(t, "udp6", "[::1]:0", 4)
	ms := []Message{
		{Buf: []byte("v4"), N: 2, Addr: netip.MustParseAddrPort("127.0.0.1:9")},
		{Buf: []byte("v6"), N: 2, Addr: local(dst, "")},
	}
	if n, err := src.WriteBatch(ms); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want 1, nil", n, err)
	}
	if got := readN(t, dst, 1, 4, 16); got[0].data != "v6" {
		t.Fatalf("got %q", got[0].data)
	}
	if st := src.Stats(); st.WriteDropped != 1 {
		t.Fatalf("Stats = %+v", st)
	}
	t.Logf("stats: %+v", src.Stats())
}
