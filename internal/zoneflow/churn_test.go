package zoneflow

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// churnDuration bounds the traffic of TestChurnExactlyOnce; the whole test
// takes a few seconds more (settling, flushing).
const churnDuration = 8 * time.Second

// TestChurnExactlyOnce opens short TCP connections between two "nodes"
// (network namespaces in zones a and b) in both directions as fast as the
// machine allows, while each node's tracer dumps its own table every 50 ms
// and reads its DESTROY events. Entries end fast (TIME_WAIT and CLOSE last 1 s
// in conntrack), so dumps, the kernel's expiry (also by the dumps themselves)
// and events race all the time. Ground truth is the kernel's own count of
// what each node sent to the other: an nftables counter in each sender's
// output hook over the packets conntrack tracks. The sum of what both tracers
// report must equal it within 0.1 %.
func TestChurnExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("churn for several seconds; skipped in -short mode")
	}
	ns1 := netnstest.New(t, "zf-churn-n1")
	ns2 := netnstest.New(t, "zf-churn-n2")
	netnstest.Veth(t, ns1, "eth0", "192.168.0.1/24", ns2, "eth0", "192.168.0.2/24")
	nodes := map[string]*netnstest.NS{"n1": ns1, "n2": ns2}
	for _, ns := range nodes {
		ns.EnableConntrack(t, true)
		ns.Sysctl(t, "netfilter/nf_conntrack_tcp_timeout_time_wait", "1")
		ns.Sysctl(t, "netfilter/nf_conntrack_tcp_timeout_close", "1")
		ns.Sysctl(t, "ipv4/ip_local_port_range", "1024 65000")
		ns.Sysctl(t, "ipv4/tcp_tw_reuse", "1")
	}
	sent := map[string]func() (uint64, uint64){"n1": ns1.CountTo(t, n2IP), "n2": ns2.CountTo(t, n1IP)}

	// One tracer per node, as the daemon runs it: dump loop, event loop.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tracers := map[string]*tracer{}
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for name, ns := range nodes {
		conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD(), ReadBuffer: 16 << 20})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		src := &readySource{Conn: conn, ready: make(chan struct{})}
		tr := newTestTracer(name, src, buildIndex(name, testNodes, nil, nil, nil))
		tr.interval = 50 * time.Millisecond
		tracers[name] = tr
		ectx, stopEvents := context.WithCancel(ctx)
		wg.Add(2)
		go func() { defer wg.Done(); _ = tr.eventLoop(ectx) }()
		<-src.ready
		go func() { defer wg.Done(); _ = tr.dumpLoop(ctx, stopEvents) }()
	}

	// Servers answer 300 bytes to each 100-byte request, then close first.
	const request, response = 100, 300
	for ns, ip := range map[*netnstest.NS]string{ns1: "192.168.0.1", ns2: "192.168.0.2"} {
		{
			ln := ns.Listen(t, "tcp4", ip+":7000")
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, request)
						if _, err := io.ReadFull(c, buf); err == nil {
							_, _ = c.Write(make([]byte, response))
						}
					}()
				}
			}()
		}
	}
	// Clients: goroutines locked into each namespace, dialing the other node
	// until the deadline.
	var conns, failures atomic.Int64
	deadline := time.Now().Add(churnDuration)
	var clients sync.WaitGroup
	for _, c := range []struct {
		ns   *netnstest.NS
		peer string
	}{{ns1, "192.168.0.2:7000"}, {ns2, "192.168.0.1:7000"}} {
		for range 8 {
			clients.Add(1)
			go func() {
				defer clients.Done()
				_ = c.ns.Do(func() error {
					req, buf := make([]byte, request), make([]byte, response)
					d := net.Dialer{Timeout: 5 * time.Second}
					for time.Now().Before(deadline) {
						conn, err := d.Dial("tcp4", c.peer)
						if err != nil {
							failures.Add(1)
							continue
						}
						_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
						if _, err = conn.Write(req); err == nil {
							_, err = io.ReadFull(conn, buf)
						}
						if err != nil {
							failures.Add(1)
						}
						_ = conn.Close()
						conns.Add(1)
					}
					return nil
				})
			}()
		}
	}
	clients.Wait()
	rate := float64(conns.Load()) / churnDuration.Seconds()

	// Let the last FINs pass, then end every entry: DESTROY events for all.
	for name, ns := range nodes {
		raw := openRaw(t, ns)
		testkit.Eventually(t, "TCP to settle in "+name, func() bool { return raw.settled(t) })
		if err := raw.c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	// Every flow accounted to its end: nothing live, no tombstone waiting.
	for name, tr := range tracers {
		testkit.Eventually(t, "the tracer of "+name+" to settle", func() bool {
			_, _, tracked := tr.p.snapshot()
			return tracked == 0
		})
	}
	cancel()
	wg.Wait()

	var truth, reported uint64
	for name, tr := range tracers {
		b, _ := sent[name]()
		truth += b
		_, st, _ := tr.p.snapshot()
		var r uint64
		for _, v := range totals(tr.p, zdKey) {
			r += v
		}
		reported += r
		t.Logf("%s: sent %d bytes (nft), reported %d; destroy events %d (late %d, duplicate %d), resumed %d, lost %d, counter resets %d",
			name, b, r, st.destroyEvents, st.lateDestroys, st.staleEvents, st.resumedFlows, st.lostFlows, st.resets)
	}
	diff := float64(reported) - float64(truth)
	t.Logf("%d connections in %s (%.0f/s, %d failed); kernel %d bytes, tracers %d bytes, difference %+.4f%%",
		conns.Load(), churnDuration, rate, failures.Load(), truth, reported, 100*diff/float64(truth))
	if truth == 0 || conns.Load() < 100 {
		t.Fatalf("too little traffic: %d connections, %d bytes", conns.Load(), truth)
	}
	if diff > 0.001*float64(truth) || -diff > 0.001*float64(truth) {
		t.Fatalf("tracers reported %d bytes, the kernel counted %d sent: %+.4f%% (limit 0.1%%)", reported, truth, 100*diff/float64(truth))
	}
}
