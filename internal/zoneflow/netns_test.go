package zoneflow

import (
	"context"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	tmct "github.com/ti-mo/conntrack"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// Header allowance: conntrack counts IP bytes. TCP/IPv4 with timestamps costs 52
// header bytes per packet, UDP/IPv4 28; handshake, ACK-only and FIN packets carry
// no payload. We allow 80 bytes per counted packet above the payload.
const headerAllowance = 80

// readySource tells when the DESTROY listener has joined its group.
type readySource struct {
	*conntrack.Conn
	ready chan struct{}
}

func (s *readySource) Listen(ctx context.Context, h conntrack.Handlers) error {
	h.Ready = func() { close(s.ready) }
	return s.Conn.Listen(ctx, h)
}

func newTestTracer(node string, src FlowSource, ix *ipIndex) *tracer {
	p := NewProcessor(DefaultMaxRecords)
	p.SetIndex(ix)
	return &tracer{node: node, src: src, p: p, m: newMetrics("test"), log: slog.New(slog.DiscardHandler), top: 10,
		prices: Prices{}, dirty: make(chan struct{}, 1), resync: make(chan struct{}, 1), gate: daemon.NewGate(),
		finalTimeout: DefaultFinalDumpTimeout, stateMaxFlows: DefaultStateMaxFlows, stateMaxAge: DefaultStateMaxAge}
}

// rawTable is a namespace's table through the library directly (the test's
// ground truth), and flushes it as `conntrack -F` does.
type rawTable struct{ c *tmct.Conn }

func openRaw(t *testing.T, ns *netnstest.NS) rawTable {
	c, err := tmct.Dial(&netlink.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return rawTable{c}
}

func (r rawTable) dump(t *testing.T) []tmct.Flow {
	fs, err := r.c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// settled: every TCP entry has seen both FINs (TIME_WAIT or CLOSE), so its
// counters are final.
func (r rawTable) settled(t *testing.T) bool {
	for _, f := range r.dump(t) {
		if f.TupleOrig.Proto.Protocol == 6 && f.ProtoInfo.TCP != nil && f.ProtoInfo.TCP.State < 7 {
			return false
		}
	}
	return true
}

// TestTwoNodesCountEachByteOnce is the end-to-end proof of the counting rule on
// real conntrack: two "nodes" (network namespaces in zones a and b, joined by a
// veth) both track the same flows; node 1 reaches node 2 directly over TCP, via a
// DNAT'd "Service" address over TCP, and node 2 sends UDP to node 1. Each node's
// tracer dumps and listens for DESTROY events of its own table. Together they
// report exactly the bytes on the wire, each byte by the node that sent it, and
// every direction's bytes match the payload within the header allowance.
func TestTwoNodesCountEachByteOnce(t *testing.T) {
	ns1 := netnstest.New(t, "zf-n1")
	ns2 := netnstest.New(t, "zf-n2")
	netnstest.Veth(t, ns1, "eth0", "192.168.0.1/24", ns2, "eth0", "192.168.0.2/24")
	for _, ns := range []*netnstest.NS{ns1, ns2} {
		ns.EnableConntrack(t, true)
	}
	ns1.Route(t, "10.96.0.0/12", "eth0", "")
	ns1.DNAT(t, svcIP, n2IP) // kube-proxy's Service rule, on the client's node

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes := map[string]*netnstest.NS{"n1": ns1, "n2": ns2}
	tracers := map[string]*tracer{}
	for name, ns := range nodes {
		conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		src := &readySource{Conn: conn, ready: make(chan struct{})}
		tr := newTestTracer(name, src, buildIndex(name, testNodes, nil, nil, nil))
		tracers[name] = tr
		done := make(chan struct{})
		go func() { defer close(done); _ = tr.eventLoop(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		<-src.ready
	}

	// Node 1 -> node 2 directly, and through the Service address.
	const up1, down1, up2, down2 = 200_000, 50_000, 30_000, 10_000
	ln := ns2.Listen(t, "tcp4", "192.168.0.2:0")
	ns1.Exchange(t, ln, ln.Addr().String(), up1, down1)
	// A dump in the middle: long flows are counted from dumps, the rest from
	// DESTROY events, never twice.
	for _, tr := range tracers {
		if _, err := tr.dump(ctx); err != nil {
			t.Fatal(err)
		}
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ns1.Exchange(t, ln, netip.AddrPortFrom(svcIP, uint16(port)).String(), up2, down2)
	// Node 2 -> node 1 over UDP, no reply.
	const datagrams, size = 10, 500
	pc := ns1.ListenPacket(t, "udp4", "192.168.0.1:0")
	uc := ns2.Dial(t, "udp4", pc.LocalAddr().String())
	buf := make([]byte, 2048)
	for range datagrams {
		if _, err := uc.Write(make([]byte, size)); err != nil {
			t.Fatal(err)
		}
		if _, _, err := pc.ReadFrom(buf); err != nil {
			t.Fatal(err)
		}
	}

	// Ground truth from the tables, once TCP has settled; then end every entry.
	wire := map[string]uint64{}
	for name, ns := range nodes {
		raw := openRaw(t, ns)
		testkit.Eventually(t, "TCP to settle in "+name, func() bool { return raw.settled(t) })
		entries := raw.dump(t)
		var packets uint64
		for _, f := range entries {
			wire[name] += f.CountersOrig.Bytes + f.CountersReply.Bytes
			packets += f.CountersOrig.Packets + f.CountersReply.Packets
		}
		if len(entries) != 3 {
			t.Fatalf("%s tracks %d entries, want 3", name, len(entries))
		}
		tr := tracers[name]
		_, st, _ := tr.p.snapshot()
		before := st.destroyEvents
		if err := raw.c.Flush(); err != nil {
			t.Fatal(err)
		}
		testkit.Eventually(t, "DESTROY events in "+name, func() bool {
			_, st, _ := tr.p.snapshot()
			return st.destroyEvents >= before+uint64(len(entries))
		})
	}
	if wire["n1"] != wire["n2"] {
		t.Fatalf("the two tables disagree about the wire: %v", wire)
	}

	got := map[string]map[string]uint64{}
	var reported uint64
	for name, tr := range tracers {
		got[name] = totals(tr.p, zdKey)
		for _, v := range got[name] {
			reported += v
		}
	}
	t.Logf("wire %d bytes; reported %v", wire["n1"], got)
	if reported != wire["n1"] {
		t.Fatalf("reported %d bytes over both nodes, the wire carried %d: %v", reported, wire["n1"], got)
	}
	if len(got["n1"]) != 1 || len(got["n2"]) != 1 {
		t.Fatalf("each node should report only its own egress: %v", got)
	}
	check := func(name, key string, payload int, packetsUpper uint64) {
		t.Helper()
		v := got[name][key]
		if v < uint64(payload) || v > uint64(payload)+packetsUpper*headerAllowance {
			t.Errorf("%s %s: %d bytes for %d payload bytes", name, key, v, payload)
		}
	}
	recs, _, _ := tracers["n1"].p.snapshot()
	check("n1", "a>b egress cross-zone /", up1+up2, recs[0].packets)
	recs, _, _ = tracers["n2"].p.snapshot()
	check("n2", "b>a egress cross-zone /", down1+down2+datagrams*size, recs[0].packets)
}

// TestPodBehindNodeSNAT puts a "pod" namespace (10.1.0.5, in node 1's podCIDR)
// behind node 1, which routes and masquerades it towards an internet host
// (as a node's SNAT rule does for pod egress). Node 1's table holds the entry
// with the node's address as reply destination; the tracer still attributes the
// bytes to the pod's workload (original source): upload as internet egress,
// download as internet ingress.
func TestPodBehindNodeSNAT(t *testing.T) {
	pod := netnstest.New(t, "zf-pod")
	node := netnstest.New(t, "zf-node")
	inet := netnstest.New(t, "zf-inet")
	netnstest.Veth(t, pod, "eth0", "10.1.0.5/24", node, "veth-pod", "10.1.0.1/24")
	netnstest.Veth(t, node, "eth0", "192.168.0.1/24", inet, "eth0", "192.168.0.99/24")
	pod.Route(t, "0.0.0.0/0", "eth0", "10.1.0.1")
	node.Sysctl(t, "ipv4/ip_forward", "1")
	node.EnableConntrack(t, true)
	node.SNAT(t, "eth0", n1IP)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conn, err := conntrack.Dial(conntrack.Options{NetNS: node.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	src := &readySource{Conn: conn, ready: make(chan struct{})}
	tr := newTestTracer("n1", src, buildIndex("n1", testNodes, testPods, nil, nil))
	done := make(chan struct{})
	go func() { defer close(done); _ = tr.eventLoop(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-src.ready

	const up, down = 40_000, 120_000
	ln := inet.Listen(t, "tcp4", "192.168.0.99:0")
	pod.Exchange(t, ln, ln.Addr().String(), up, down)

	raw := openRaw(t, node)
	testkit.Eventually(t, "TCP to settle", func() bool { return raw.settled(t) })
	entries := raw.dump(t)
	if len(entries) != 1 || entries[0].TupleReply.IP.DestinationAddress.Unmap() != n1IP {
		t.Fatalf("want one SNAT'd entry, got %v", entries)
	}
	e := entries[0]
	if err := raw.c.Flush(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the DESTROY event", func() bool { _, st, _ := tr.p.snapshot(); return st.destroyEvents >= 1 })
	got := totals(tr.p, zdKey)
	want := map[string]uint64{
		"a>internet egress internet-egress shop/deployment/web":   e.CountersOrig.Bytes,
		"internet>a ingress internet-ingress shop/deployment/web": e.CountersReply.Bytes,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if e.CountersOrig.Bytes < up || e.CountersOrig.Bytes > up+e.CountersOrig.Packets*headerAllowance ||
		e.CountersReply.Bytes < down || e.CountersReply.Bytes > down+e.CountersReply.Packets*headerAllowance {
		t.Fatalf("counters %v %v for %d up, %d down", e.CountersOrig, e.CountersReply, up, down)
	}
}
