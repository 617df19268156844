//go:build linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// closedPort returns a loopback address on which nothing listens: the port
// of a socket that was just closed.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ap := uc.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = uc.Close()
	return ap
}

// reopen listens on ap again, skipping the test in the unlikely case that
// another process took the port meanwhile.
func reopen(t *testing.T, ap netip.AddrPort) *Conn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		t.Skipf("port %v was reused meanwhile: %v", ap, err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	return newConn(t, uc, 8)
}

// TestWriteToClosedPortUnconnected: an unconnected socket gets no
// ECONNREFUSED on Linux, and datagrams to a closed port never hold up those
// to a live one.
func TestWriteToClosedPortUnconnected(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 4)
	live := listenConn(t, "udp4", "127.0.0.1:0", 8)
	dead := closedPort(t)
	const rounds = 20
	for r := range rounds {
		ms := make([]Message, 0, 8)
		for i := range 4 {
			ms = append(ms,
				Message{Buf: []byte("dead"), N: 4, Addr: dead},
				Message{Buf: []byte{byte(r), byte(i)}, N: 2, Addr: local(live, "")})
		}
		n, err := src.WriteBatch(ms)
		if err != nil || n < 4 {
			t.Fatalf("round %d: WriteBatch = %d, %v", r, n, err)
		}
		got := readN(t, live, 4, 8, 16)
		for i, g := range got {
			if g.data != string([]byte{byte(r), byte(i)}) {
				t.Fatalf("round %d msg %d: %q", r, i, g.data)
			}
		}
	}
}

// TestWriteToClosedPortConnected: a connected socket sees ECONNREFUSED on
// later calls; WriteBatch skips the affected messages, never blocks and
// delivers again once the peer is back; ReadBatch does not fail on the
// pending error.
func TestWriteToClosedPortConnected(t *testing.T) {
	dead := closedPort(t)
	uc, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dead))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	c := newConn(t, uc, 4)
	ms := make([]Message, 8)
	for i := range ms {
		ms[i] = Message{Buf: []byte{byte(i)}, N: 1} // zero Addr: the connected peer
	}
	// ICMP errors are rate limited per network namespace (a burst of 50,
	// then 1000/s), so poll until one was reported instead of assuming it.
	deadline := time.Now().Add(waitTimeout)
	for c.Stats().WriteDropped == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no ECONNREFUSED after %v: %+v", waitTimeout, c.Stats())
		}
		if err := uc.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
			t.Fatal(err)
		}
		if n, err := c.WriteBatch(ms); err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	if st := c.Stats(); !errors.Is(st.LastWriteDropErr, syscall.ECONNREFUSED) {
		t.Fatalf("Stats = %+v, want drops with ECONNREFUSED", st)
	}

	// The peer comes back: a whole batch gets through again. The first
	// attempt may still lose a message to an error queued by the last round.
	peer := reopen(t, dead)
	for attempt := 0; ; attempt++ {
		n, err := c.WriteBatch(ms)
		if err != nil {
			t.Fatalf("WriteBatch to live peer: %v", err)
		}
		got := readN(t, peer, n, 8, 16)
		if n == len(ms) {
			for i, g := range got {
				if g.data != string([]byte{byte(i)}) {
					t.Fatalf("msg %d: %q", i, g.data)
				}
			}
			break
		}
		if attempt == 3 {
			t.Fatalf("still only %d of %d sent", n, len(ms))
		}
	}

	// Queue an ICMP error on the socket while the peer is gone, then let
	// the peer answer: ReadBatch consumes the error and returns the
	// datagram. Repeat in case the ICMP error was rate limited.
	for c.Stats().ReadAsyncErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("ReadBatch never saw an asynchronous error: %+v", c.Stats())
		}
		_ = peer.UDPConn().Close()
		if _, err := c.WriteBatch(ms[:1]); err != nil {
			t.Fatal(err)
		}
		peer = reopen(t, dead)
		reply := []Message{{Buf: []byte("hello"), N: 5, Addr: local(c, "")}}
		if n, err := peer.WriteBatch(reply); n != 1 || err != nil {
			t.Fatalf("reply = %d, %v", n, err)
		}
		got := readN(t, c, 1, 4, 16)
		if got[0].data != "hello" || got[0].addr != dead {
			t.Fatalf("got %+v", got[0])
		}
	}
}
