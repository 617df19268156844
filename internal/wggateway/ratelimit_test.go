package wggateway

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

func TestRateLimiterTokenBucket(t *testing.T) {
	r := newRateLimiter(2, 3, limiterShards) // 2/s, burst 3, one source per part
	a := netip.MustParseAddr("192.0.2.1")
	// b shares a's part; c has another one.
	var b, c netip.Addr
	ka := sourceOf(a)
	for i := 2; !b.IsValid() || !c.IsValid(); i++ {
		x := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
		k := sourceOf(x)
		if r.part(&k) == r.part(&ka) {
			if !b.IsValid() {
				b = x
			}
		} else if !c.IsValid() {
			c = x
		}
	}
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
	// A source in another part has its own bucket.
	for i := 0; i < 3; i++ {
		if !r.allow(c, now) {
			t.Fatal("second source limited by the first")
		}
	}
	// a's part is full and a's bucket has not refilled: b is refused (fail
	// closed), without any scan, and the limiter reports itself full...
	if r.allow(b, now+5e8) {
		t.Fatal("source accepted while its part is full")
	}
	if !r.full(now+5e8, 1e9) || r.full(now+5e8+2e9, 1e9) {
		t.Fatal("full() does not report the refusal for its window only")
	}
	limited, sources := r.stats(now + 5e8)
	if limited != 3 || sources != 1 {
		t.Fatalf("stats = %d limited, %d limited sources; want 3, 1", limited, sources)
	}
	// ...until the janitor's sweep has forgotten the refilled buckets.
	if r.allow(b, now+10e9) {
		t.Fatal("new source accepted before the sweep")
	}
	r.sweep(now + 10e9)
	if !r.allow(b, now+10e9) {
		t.Fatal("new source refused after the sweep")
	}
	r.sweep(now + 20e9)
	if n := r.sources(); n != 0 {
		t.Fatalf("%d idle sources kept", n)
	}
	// Rate 0 disables the limit.
	off := newRateLimiter(0, 1, 1)
	for i := 0; i < 100; i++ {
		if !off.allow(a, now) {
			t.Fatal("disabled limiter refused")
		}
	}
}

// IPv6 sources share a bucket per /64; IPv4 per address, in either form.
func TestRateLimiterIPv6Prefix(t *testing.T) {
	r := newRateLimiter(0.001, 2, 1<<16)
	now := int64(1e9)
	for i, s := range []string{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"} {
		if !r.allow(netip.MustParseAddr(s), now) {
			t.Fatalf("token %d of the /64 refused", i)
		}
	}
	if r.allow(netip.MustParseAddr("2001:db8:1:2:1234::9"), now) {
		t.Fatal("a third address of the same /64 got a token of its own")
	}
	if !r.allow(netip.MustParseAddr("2001:db8:1:3::1"), now) {
		t.Fatal("the neighbouring /64 is limited")
	}
	r.allow(netip.MustParseAddr("192.0.2.9"), now)
	r.allow(netip.MustParseAddr("::ffff:192.0.2.9"), now)
	if r.allow(netip.MustParseAddr("192.0.2.9"), now) {
		t.Fatal("IPv4-mapped form has a bucket of its own")
	}
	if !r.allow(netip.MustParseAddr("192.0.2.10"), now) {
		t.Fatal("IPv4 addresses share a bucket")
	}
}

func TestRateLimiterAllocations(t *testing.T) {
	r := newRateLimiter(10, 20, 1<<16)
	a := netip.MustParseAddr("2001:db8::1")
	r.allow(a, 1)
	if n := testing.AllocsPerRun(1000, func() { r.allow(a, 2) }); n != 0 {
		t.Fatalf("%v allocations per check", n)
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
