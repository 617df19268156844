package egressprobe_test

import (
	"context"
	"net/netip"
	"testing"

	"github.com/trellis-garden/trellis/internal/egressprobe"
	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
)

// BenchmarkSTUN is one whole probe on loopback: socket, Binding request,
// transaction, parse, close.
func BenchmarkSTUN(b *testing.B) {
	srv := probetest.NewSTUNServer(b, "udp4")
	srv.Set(probetest.Answer, netip.MustParseAddr("203.0.113.7"))
	ctx := context.Background()
	for b.Loop() {
		if _, err := egressprobe.STUN(ctx, egressprobe.IPv4, srv.Addr, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTPEcho is one whole HTTP echo probe on loopback (new connection).
func BenchmarkHTTPEcho(b *testing.B) {
	echo := probetest.NewEchoServer(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := egressprobe.HTTP(ctx, egressprobe.IPv4, echo.URL); err != nil {
			b.Fatal(err)
		}
	}
}
