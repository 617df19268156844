package zoneflow

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
)

// TestCountingRule checks the counting rule and NAT handling on node n1, flow by
// flow: which bytes n1 reports, with which zones, direction, class and workload.
func TestCountingRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    conntrack.Flow
		want map[string]uint64
	}{
		{"pod to pod on another node: n1 reports what its pod sent",
			flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 1000, 5000),
			map[string]uint64{"a>b egress cross-zone shop/deployment/web": 1000}},
		{"DNAT: Service traffic goes to the real backend (reply source)",
			flow(2, n1Pod, svcIP, n2Pod, n1Pod, 700, 300),
			map[string]uint64{"a>b egress cross-zone shop/deployment/web": 700}},
		{"pod on another node initiating to a local pod: n1 reports its reply only",
			flow(3, n2Pod, n1Pod, n1Pod, n2Pod, 400, 9000),
			map[string]uint64{"a>b egress cross-zone shop/deployment/web": 9000}},
		{"SNAT to the internet: the pod (orig source) sends, the internet's answer is ingress",
			flow(4, n1Pod, inetIP, inetIP, n1IP, 100, 20000),
			map[string]uint64{"a>internet egress internet-egress shop/deployment/web": 100, "internet>a ingress internet-ingress shop/deployment/web": 20000}},
		{"two local pods: both directions here",
			flow(5, n1Pod, n1Pod2, n1Pod2, n1Pod, 10, 20),
			map[string]uint64{"a>a egress same-zone shop/deployment/web": 10, "a>a egress same-zone shop/statefulset/db": 20}},
		{"host to a VPC address of unknown zone",
			flow(6, n1IP, vpcIP, vpcIP, n1IP, 50, 60),
			map[string]uint64{"a>in-region egress in-region /": 50, "in-region>a ingress in-region /": 60}},
		{"to another region",
			flow(7, n1Pod, otherIP, otherIP, n1Pod, 80, 90),
			map[string]uint64{"a>other-region egress cross-region shop/deployment/web": 80, "other-region>a ingress cross-region shop/deployment/web": 90}},
		{"neither endpoint local: another node's flow",
			flow(8, n2Pod, inetIP, inetIP, n2IP, 80, 90),
			map[string]uint64{}},
		{"loopback is never counted",
			flow(9, netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1"), 80, 90),
			map[string]uint64{}},
		{"a pod IP in n1's podCIDR without a known pod is local, no workload",
			flow(10, netip.MustParseAddr("10.1.0.200"), n2Pod, n2Pod, netip.MustParseAddr("10.1.0.200"), 33, 44),
			map[string]uint64{"a>b egress cross-zone /": 33}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProcessor("n1")
			p.BeginDump()
			p.Observe(&tc.f)
			p.EndDump()
			if got := totals(p, zdKey); !maps.Equal(got, tc.want) {
				t.Fatalf("got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestDeltas follows one flow through dumps and its DESTROY event: each byte is
// counted once, a stale dump copy after the DESTROY adds nothing, a flow that
// vanishes without a DESTROY is swept, and a counter reset counts whole.
func TestDeltas(t *testing.T) {
	p := newTestProcessor("n1")
	sum := func() uint64 { return totals(p, func(recordKey) string { return "" })[""] }
	dump := func(fs ...conntrack.Flow) int {
		p.BeginDump()
		for i := range fs {
			p.Observe(&fs[i])
		}
		return p.EndDump()
	}
	dump(flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 100, 0))
	dump(flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 250, 0))
	if got := sum(); got != 250 {
		t.Fatalf("after two dumps %d, want 250", got)
	}
	// A dump starts, the entry ends (DESTROY with final counters) while the
	// dump's older copy is still being processed.
	p.BeginDump()
	fin := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 400, 0)
	p.Destroy(&fin)
	stale := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 300, 0)
	p.Observe(&stale)
	p.EndDump()
	if got := sum(); got != 400 {
		t.Fatalf("after destroy %d, want 400", got)
	}
	if lost := dump(); lost != 0 || p.flows.len() != 0 {
		t.Fatalf("tombstone: lost %d, tracked %d", lost, p.flows.len())
	}
	// A short flow seen only by its DESTROY event.
	short := flow(2, n1Pod, n2Pod, n2Pod, n1Pod, 70, 0)
	p.Destroy(&short)
	if got := sum(); got != 470 {
		t.Fatalf("after short flow %d, want 470", got)
	}
	// A flow that vanishes without DESTROY (event lost): a tombstone at the
	// first dump that misses it, swept and counted lost by a further dump once
	// the event reader has been idle since.
	dump(flow(3, n1Pod, n2Pod, n2Pod, n1Pod, 30, 0))
	if lost := dump(); lost != 0 {
		t.Fatalf("lost %d at the first dump without the flow, want 0", lost)
	}
	p.EventsIdle(time.Now())
	if lost := dump(); lost != 1 {
		t.Fatalf("lost %d, want 1", lost)
	}
	// Someone zeroed the counters (zero-on-dump by another tool): the new value
	// counts whole, never as a negative delta.
	dump(flow(4, n1Pod, n2Pod, n2Pod, n1Pod, 1000, 0))
	dump(flow(4, n1Pod, n2Pod, n2Pod, n1Pod, 10, 0))
	if got := sum(); got != 470+30+1000+10 {
		t.Fatalf("after reset %d, want %d", got, 470+30+1000+10)
	}
}

// TestIndexChange re-resolves a flow whose pod was unknown at first.
func TestIndexChange(t *testing.T) {
	p := NewProcessor(10)
	p.SetIndex(buildIndex("n1", testNodes, nil, nil, nil))
	f := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 100, 0)
	p.Observe(&f)
	p.SetIndex(testIndex("n1"))
	f.OrigBytes = 150
	p.Observe(&f)
	want := map[string]uint64{"a>b egress cross-zone /": 100, "a>b egress cross-zone shop/deployment/web": 50}
	if got := totals(p, zdKey); !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestMaxRecords folds workloads beyond the bound into _other.
func TestMaxRecords(t *testing.T) {
	p := NewProcessor(1)
	p.SetIndex(testIndex("n1"))
	a := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 1, 0)
	b := flow(2, n1Pod2, n2Pod, n2Pod, n1Pod2, 2, 0)
	p.Observe(&a)
	p.Observe(&b)
	want := map[string]uint64{"a>b egress cross-zone shop/deployment/web": 1, "a>b egress cross-zone _other/_other": 2}
	if got := totals(p, zdKey); !maps.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if p.stats.foldedRecords != 1 {
		t.Fatalf("folded %d", p.stats.foldedRecords)
	}
}

// reporters is how many of the two nodes should report bytes sent by s to r.
func reporters(s, r netip.Addr) int {
	inCluster := func(a netip.Addr) bool {
		for _, n := range testNodes {
			if a == n.IPs[0] || n.CIDRs[0].Contains(a) {
				return true
			}
		}
		return false
	}
	ignored := func(a netip.Addr) bool {
		return !a.IsValid() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalMulticast()
	}
	switch {
	case ignored(s.Unmap()) || ignored(r.Unmap()):
		return 0
	case inCluster(s.Unmap()):
		return 1
	case inCluster(r.Unmap()):
		return 1
	}
	return 0
}

// FuzzEachByteOnce maps arbitrary flows on both nodes of the test cluster, as if
// both saw them in their conntrack, and checks the counting rule: the bytes of
// each direction are reported by exactly one node when the sender or (for
// senders outside the cluster) the receiver is in the cluster, by none
// otherwise; never twice.
func FuzzEachByteOnce(f *testing.F) {
	enc := func(src, dst, rsrc netip.Addr, ob, rb uint32) []byte {
		b := append(src.AsSlice(), dst.AsSlice()...)
		b = append(b, rsrc.AsSlice()...)
		b = binary.BigEndian.AppendUint32(b, ob)
		return binary.BigEndian.AppendUint32(b, rb)
	}
	f.Add(enc(n1Pod, n2Pod, n2Pod, 100, 200))
	f.Add(enc(n1Pod, svcIP, n2Pod, 7, 9))
	f.Add(enc(inetIP, n1IP, n2Pod, 50, 60))
	f.Add(enc(n2Pod, inetIP, inetIP, 5, 6))
	f.Add(enc(vpcIP, n1Pod2, n1Pod2, 1, 1))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 20 {
			return
		}
		addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }
		src, dst, rsrc := addr(0), addr(4), addr(8)
		// Bias the fuzzer's random addresses towards the test cluster.
		pick := func(a netip.Addr) netip.Addr {
			choices := []netip.Addr{n1IP, n2IP, n1Pod, n2Pod, n1Pod2, svcIP, vpcIP, inetIP, otherIP, netip.MustParseAddr("10.1.0.77"), netip.MustParseAddr("127.0.0.1")}
			v := a.As4()
			if v[0]&1 == 0 {
				return choices[int(v[1])%len(choices)]
			}
			return a
		}
		src, dst, rsrc = pick(src), pick(dst), pick(rsrc)
		ob, rb := uint64(binary.BigEndian.Uint32(b[12:])), uint64(binary.BigEndian.Uint32(b[16:]))
		fl := flow(1, src, dst, rsrc, src, ob, rb)
		var reported uint64
		for _, node := range []string{"n1", "n2"} {
			p := newTestProcessor(node)
			p.Observe(&fl)
			for _, v := range totals(p, zdKey) {
				reported += v
			}
		}
		want := uint64(reporters(src, rsrc))*ob + uint64(reporters(rsrc, src))*rb
		if reported != want {
			t.Fatalf("flow %s: reported %d bytes over both nodes, want %d", fl.String(), reported, want)
		}
	})
}

// TestWorkloadOf names workloads from owner references.
func TestWorkloadOf(t *testing.T) {
	for owner, want := range map[string]string{
		"ReplicaSet/web-5d4f8c7b9": "deployment/web",
		"ReplicaSet/plain":         "replicaset/plain",
		"StatefulSet/db":           "statefulset/db",
		"DaemonSet/agent":          "daemonset/agent",
		"Job/backup-28930000":      "cronjob/backup",
		"Job/migrate":              "job/migrate",
		"":                         "pod/p",
	} {
		if got := workloadOf(podOwnedBy("p", owner)); got != want {
			t.Errorf("%s: got %s, want %s", owner, got, want)
		}
	}
}

// TestBaselineFirstDump: flows open at start count only what they carry after the
// first dump; flows that start later, and short ones seen only by DESTROY, count whole.
func TestBaselineFirstDump(t *testing.T) {
	p := newTestProcessor("n1")
	p.BaselineFirstDump()
	sum := func() uint64 { return totals(p, func(recordKey) string { return "" })[""] }
	dump := func(fs ...conntrack.Flow) {
		p.BeginDump()
		for i := range fs {
			p.Observe(&fs[i])
		}
		p.EndDump()
	}
	old := func(b uint64) conntrack.Flow { return flow(1, n1Pod, n2Pod, n2Pod, n1Pod, b, 0) }
	fresh := func(b uint64) conntrack.Flow { return flow(2, n1Pod, n2Pod, n2Pod, n1Pod, b, 0) }
	dump(old(1 << 40)) // days of history before the tracer started
	if got := sum(); got != 0 {
		t.Fatalf("first dump counted %d bytes of history", got)
	}
	dump(old(1<<40+500), fresh(70))
	if got := sum(); got != 570 {
		t.Fatalf("after the second dump %d, want 500 new bytes of the old flow + 70 of the new one", got)
	}
	fin := old(1<<40 + 800)
	p.Destroy(&fin)
	short := flow(3, n1Pod, n2Pod, n2Pod, n1Pod, 40, 0)
	p.Destroy(&short)
	if got := sum(); got != 910 {
		t.Fatalf("after DESTROY events %d, want 910", got)
	}
}
