package wggateway

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterTokenBucket(t *testing.T) {
	r := newRateLimiter(2, 3, 2) // 2/s, burst 3, at most 2 sources
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	now := int64(1e9)
	for i := 0; i < 3; i++ {
		if !r.allow(a, now) {
			t.Fatalf("burst token %d refused", i)
		}
	}
	if r.allow(a, now) {
		t.Fatal("fourth initiation in the same instant allowed")
	}
	// Half a second later one token (2/s) has come back.
	if !r.allow(a, now+5e8) || r.allow(a, now+5e8) {
		t.Fatal("refill is not 2 tokens per second")
	}
	// Another source has its own bucket.
	for i := 0; i < 3; i++ {
		if !r.allow(b, now) {
			t.Fatal("second source limited by the first")
		}
	}
	// The table is full (2 sources) and neither bucket is full again: a new
	// source is refused (fail closed)...
	if r.allow(c, now+5e8) {
		t.Fatal("third source accepted while the table is full")
	}
	limited, sources := r.stats(now + 5e8)
	if limited != 3 || sources != 1 {
		t.Fatalf("stats = %d limited, %d limited sources; want 3, 1", limited, sources)
	}
	// ...until the buckets have refilled and can be forgotten.
	if !r.allow(c, now+10e9) {
		t.Fatal("new source refused after the others went idle")
	}
	r.sweep(now + 20e9)
	if len(r.buckets) != 0 {
		t.Fatalf("%d idle sources kept", len(r.buckets))
	}
	// Rate 0 disables the limit.
	off := newRateLimiter(0, 1, 1)
	for i := 0; i < 100; i++ {
		if !off.allow(a, now) {
			t.Fatal("disabled limiter refused")
		}
	}
}

// TestRateLimitThroughGateway sends more initiations than the limit allows from one
// source: the backend gets the burst, the rest are dropped and counted.
func TestRateLimitThroughGateway(t *testing.T) {
	backend, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var pub [32]byte
	pub[9] = 4
	rg := startGateway(t, "127.0.0.1:0", []Backend{{Name: "b", PublicKey: pub, Endpoint: backend.LocalAddr().(*net.UDPAddr).AddrPort()}},
		func(c *Config) {
			c.Shards = 1
			c.HandshakeRate, c.HandshakeBurst = 0.001, 2 // effectively no refill during the test
		})
	gw := rg.gw

	to := gw.LocalAddr().(*net.UDPAddr).AddrPort()
	for i := 0; i < 5; i++ {
		client.WriteToUDPAddrPort(initiation(pub, uint32(i)), to)
	}
	rg.waitMetric(t, func(v float64) bool { return v == 3 }, "trellis_wg_gateway_dropped_packets_total", "reason", "rate_limited")
	if got := rg.metric(t, "trellis_wg_gateway_rate_limited_initiations_total"); got != 3 {
		t.Fatalf("rate_limited_initiations_total = %v", got)
	}
	if got := rg.metric(t, "trellis_wg_gateway_rate_limited_sources"); got != 1 {
		t.Fatalf("rate_limited_sources = %v", got)
	}
	got := 0
	buf := make([]byte, 2048)
	for {
		backend.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		if _, err := backend.Read(buf); err != nil {
			break
		}
		got++
	}
	if got != 2 {
		t.Fatalf("backend received %d initiations, want the burst of 2", got)
	}
}
