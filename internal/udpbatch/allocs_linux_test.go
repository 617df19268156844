//go:build linux

package udpbatch

import (
	"net/netip"
	"testing"
	"time"
)

// TestZeroAllocs proves that ReadBatch and WriteBatch allocate nothing per
// call in steady state, for IPv4, IPv6 and a dual-stack socket with an IPv4
// peer (whose address is unmapped on receive and mapped on send).
func TestZeroAllocs(t *testing.T) {
	tests := []struct {
		name                   string
		ipv6                   bool
		srcNet, srcAddr, dstIP string
		dstNet, dstAddr        string
	}{
		{"ipv4", false, "udp4", "127.0.0.1:0", "127.0.0.1", "udp4", "127.0.0.1:0"},
		{"ipv6", true, "udp6", "[::1]:0", "::1", "udp6", "[::1]:0"},
		{"dual-stack", true, "udp", "[::]:0", "127.0.0.1", "udp", "[::]:0"},
	}
	const batch, runs = 8, 100
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.ipv6 {
				needIPv6(t)
			}
			src := listenConn(t, tt.srcNet, tt.srcAddr, batch)
			dst := listenConn(t, tt.dstNet, tt.dstAddr, batch)
			if err := SetBuffers(dst.UDPConn(), 8<<20); err != nil {
				t.Fatal(err)
			}
			// The sender is on loopback of the destination's family.
			from := netip.AddrPortFrom(netip.MustParseAddr(tt.dstIP), local(src, "").Port())
			to := netip.AddrPortFrom(from.Addr(), local(dst, "").Port())
			out := make([]Message, batch)
			for i := range out {
				out[i] = Message{Buf: make([]byte, 100), N: 100, Addr: to}
			}
			in := NewMessages(batch, 2048)
			if err := dst.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
				t.Fatal(err)
			}
			write := func() {
				if n, err := src.WriteBatch(out); n != batch || err != nil {
					t.Fatalf("WriteBatch = %d, %v", n, err)
				}
			}
			read := func() {
				if n, err := dst.ReadBatch(in); n != batch || err != nil {
					t.Fatalf("ReadBatch = %d, %v", n, err)
				}
				if in[0].Addr != from || in[batch-1].Addr != from {
					t.Fatalf("from %v", in[0].Addr)
				}
			}

			// WriteBatch alone; AllocsPerRun makes one extra warm-up call.
			if a := testing.AllocsPerRun(runs, write); a != 0 {
				t.Errorf("WriteBatch: %v allocs per call", a)
			}
			// ReadBatch alone, draining exactly what was queued.
			if a := testing.AllocsPerRun(runs, read); a != 0 {
				t.Errorf("ReadBatch: %v allocs per call", a)
			}
			// A round trip.
			if a := testing.AllocsPerRun(runs, func() { write(); read() }); a != 0 {
				t.Errorf("WriteBatch+ReadBatch: %v allocs per call", a)
			}
			expectNothing(t, dst)
		})
	}
}
