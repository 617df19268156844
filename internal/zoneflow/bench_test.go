package zoneflow

import (
	"context"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	tmct "github.com/ti-mo/conntrack"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
)

// Benchmarks of the processing path. Each reports a ratio against a baseline
// measured in the same run (a plain Go map update per flow), so figures from
// a shared or slower machine stay comparable:
//
//	go test -run '^$' -bench . -benchtime 2x ./internal/zoneflow/   (memory, dump)
//	go test -run '^$' -bench FlowUpdate ./internal/zoneflow/
//	go test -run '^$' -bench RealDump -benchtime 5x ./internal/zoneflow/ (root)

const benchFlows = 100_000

// syntheticFlows are n flows of a busy node: its pods (10.1.x.y) talking to
// pods on the other node, to a VPC address and to the internet.
func syntheticFlows(n int) []conntrack.Flow {
	dsts := []netip.Addr{n2Pod, vpcIP, inetIP, n1Pod2}
	fs := make([]conntrack.Flow, n)
	for i := range fs {
		src := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8 % 256), byte(i)})
		dst := dsts[i%len(dsts)]
		fs[i] = conntrack.Flow{ID: uint32(i + 1), Proto: 6, OrigSrc: src, OrigDst: dst, ReplySrc: dst, ReplyDst: src,
			OrigSrcPort: uint16(i), OrigDstPort: 443, OrigBytes: 1000, OrigPackets: 10, ReplyBytes: 5000, ReplyPackets: 8}
	}
	return fs
}

// baselineMap is the yardstick: one map update per flow, keyed like the
// processor's flow table.
func baselineMap(fs []conntrack.Flow, m map[flowKey]uint64) {
	for i := range fs {
		m[keyOf(&fs[i])] += fs[i].OrigBytes
	}
}

// BenchmarkFlowUpdate is the cost of one flow update (delta, records) on a
// table of 100k live flows, against one plain map update. Target: at least 1M
// updates/s per core.
func BenchmarkFlowUpdate(b *testing.B) {
	fs := syntheticFlows(benchFlows)
	m := map[flowKey]uint64{}
	baselineMap(fs, m)
	base := timeIt(b.N, func(i int) {
		f := &fs[i%len(fs)]
		m[keyOf(f)] += f.OrigBytes
	})
	p := newTestProcessor("n1")
	for i := range fs {
		p.Observe(&fs[i])
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := &fs[i%len(fs)]
		f.OrigBytes += 100
		p.Observe(f)
	}
	b.StopTimer()
	nsPerOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(1e9/nsPerOp, "updates/s")
	b.ReportMetric(nsPerOp/(float64(base.Nanoseconds())/float64(b.N)), "x-baseline")
}

// timeIt runs fn n times and returns the time taken: the baseline, measured in
// the same run (testing.Benchmark cannot nest inside a benchmark).
func timeIt(n int, fn func(i int)) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		fn(i)
	}
	return time.Since(start)
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkMemoryPerFlow is the heap held per tracked flow with 100k flows,
// against a plain map[flowKey]uint64 of the same size. Target: <= 200 B/flow.
func BenchmarkMemoryPerFlow(b *testing.B) {
	fs := syntheticFlows(benchFlows)
	var perFlow, basePerFlow float64
	for i := 0; i < b.N; i++ {
		before := heapInUse()
		m := map[flowKey]uint64{}
		baselineMap(fs, m)
		basePerFlow = float64(heapInUse()-before) / benchFlows
		runtime.KeepAlive(m)
		m = nil

		before = heapInUse()
		p := newTestProcessor("n1")
		for j := range fs {
			p.Observe(&fs[j])
		}
		perFlow = float64(heapInUse()-before) / benchFlows
		runtime.KeepAlive(p)
	}
	b.ReportMetric(perFlow, "B/flow")
	b.ReportMetric(perFlow/basePerFlow, "x-baseline")
}

// BenchmarkDump100k is a full dump of 100k flows through the processing path
// (dump callback, lock, lookups, deltas, sweep), after a first dump resolved
// them, against one map update per flow. Target: < 250 ms.
func BenchmarkDump100k(b *testing.B) {
	fs := syntheticFlows(benchFlows)
	fake := conntrack.NewFake()
	for _, f := range fs {
		fake.Set(f)
	}
	tr := newTestTracer("n1", fake, testIndex("n1"))
	ctx := context.Background()
	if _, err := tr.dump(ctx); err != nil {
		b.Fatal(err)
	}
	base := timeIt(b.N, func(int) {
		m := make(map[flowKey]uint64, benchFlows)
		baselineMap(fs, m)
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.dump(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	msPerDump := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 1e6
	b.ReportMetric(msPerDump, "ms/dump")
	b.ReportMetric(msPerDump/(float64(base.Nanoseconds())/float64(b.N)/1e6), "x-baseline")
	if tracked := tr.p.flows.len(); tracked != benchFlows {
		b.Fatalf("tracked %d", tracked)
	}
}

// BenchmarkFirstDump100k is the first dump of 100k unknown flows: every flow is
// resolved (two address lookups, record lookup) and allocated.
func BenchmarkFirstDump100k(b *testing.B) {
	fs := syntheticFlows(benchFlows)
	fake := conntrack.NewFake()
	for _, f := range fs {
		fake.Set(f)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tr := newTestTracer("n1", fake, testIndex("n1"))
		if _, err := tr.dump(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e6, "ms/dump")
}

// BenchmarkRealDump100k dumps a real conntrack table of 100k entries (created
// through ctnetlink in a throw-away network namespace) through the whole path:
// the kernel's dump, the library's decoding, the processor. Needs root. The
// baseline is the library's bare dump of the same table.
func BenchmarkRealDump100k(b *testing.B) {
	ns := netnstest.New(b, "zf-bench")
	ns.EnableConntrack(b, true)
	raw, err := tmct.Dial(&netlink.Config{NetNS: ns.FD()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = raw.Flush(); _ = raw.Close() })
	dsts := []netip.Addr{n2Pod, vpcIP, inetIP}
	for i := range benchFlows {
		src := netip.AddrFrom4([4]byte{10, 1, byte(i >> 16), byte(i >> 8)})
		f := tmct.NewFlow(6, tmct.StatusConfirmed|tmct.StatusAssured, src, dsts[i%len(dsts)], uint16(i), 443, 3600, 0)
		f.ProtoInfo.TCP = &tmct.ProtoInfoTCP{State: 3}
		if err := raw.Create(f); err != nil {
			b.Fatalf("create entry %d: %v", i, err)
		}
	}
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	tr := newTestTracer("n1", conn, testIndex("n1"))
	ctx := context.Background()
	if _, err := tr.dump(ctx); err != nil {
		b.Fatal(err)
	}
	if n := tr.p.flows.len(); n != benchFlows {
		b.Fatalf("tracked %d entries, want %d", n, benchFlows)
	}
	base := timeIt(b.N, func(int) {
		if _, err := raw.Dump(nil); err != nil {
			b.Fatal(err)
		}
	})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := tr.dump(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	msPerDump := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 1e6
	b.ReportMetric(msPerDump, "ms/dump")
	b.ReportMetric(msPerDump/(float64(base.Nanoseconds())/float64(b.N)/1e6), "x-library-dump")
}
