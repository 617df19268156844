//go:build linux

package udpbatch

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// waitTimeout bounds every wait in the tests; nothing synchronises by sleeping.
const waitTimeout = 10 * time.Second

// listenUDP opens a UDP socket closed at the end of the test.
func listenUDP(t testing.TB, network, address string) *net.UDPConn {
	t.Helper()
	uc, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(address)))
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, address, err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	return uc
}

// newConn wraps uc.
func newConn(t testing.TB, uc *net.UDPConn, batch int) *Conn {
	t.Helper()
	c, err := New(uc, batch)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// listenConn opens a socket and wraps it.
func listenConn(t testing.TB, network, address string, batch int) *Conn {
	t.Helper()
	return newConn(t, listenUDP(t, network, address), batch)
}

// needIPv6 skips the test when ::1 is unusable.
func needIPv6(t testing.TB) {
	t.Helper()
	uc, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	_ = uc.Close()
}

// local returns the socket's address; an unspecified address is replaced by
// ip (if not empty), so that a wildcard socket can be addressed on loopback.
func local(c *Conn, ip string) netip.AddrPort {
	ap := c.UDPConn().LocalAddr().(*net.UDPAddr).AddrPort()
	if ap.Addr().IsUnspecified() && ip != "" {
		return netip.AddrPortFrom(netip.MustParseAddr(ip), ap.Port())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// received is a copy of one received datagram.
type received struct {
	data      string
	addr      netip.AddrPort
	truncated bool
}

// readN reads until want datagrams arrived, in batches of batch, failing the
// test after waitTimeout.
func readN(t testing.TB, c *Conn, want, batch, bufSize int) []received {
	t.Helper()
	if err := c.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.UDPConn().SetReadDeadline(time.Time{}) }()
	ms := NewMessages(batch, bufSize)
	var got []received
	for len(got) < want {
		n, err := c.ReadBatch(ms)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), want, err)
		}
		if n < 1 || n > len(ms) {
			t.Fatalf("ReadBatch returned n=%d for %d messages", n, len(ms))
		}
		for _, m := range ms[:n] {
			got = append(got, received{string(m.Buf[:m.N]), m.Addr, m.Truncated})
		}
	}
	return got
}

// expectNothing checks that no datagram is queued on c.
func expectNothing(t testing.TB, c *Conn) {
	t.Helper()
	if err := c.UDPConn().SetReadDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.UDPConn().SetReadDeadline(time.Time{}) }()
	n, err := c.ReadBatch(NewMessages(4, 2048))
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch = %d, %v; want 0, deadline exceeded", n, err)
	}
}
