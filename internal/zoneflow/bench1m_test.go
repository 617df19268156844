package zoneflow

import (
	"bufio"
	"bytes"
	"context"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
)

// realEntries is the table size of BenchmarkRealDump1M: a busy node.
const realEntries = 1_000_000

// BenchmarkRealDump1M dumps a real conntrack table of a million entries
// (inserted through ctnetlink create messages in a throw-away network
// namespace: no connections needed) through the whole path. Sub-benchmarks:
//
//   - bare: the streamed dump with a callback that does nothing (kernel and
//     decoding: the floor, and the baseline of the same run);
//   - tracer: the tracer's dump (decoding, processor, tombstone sweep) with
//     the million flows tracked, reporting ms/dump, CPU ms per dump, flow
//     updates per second, its ratio to bare, the heap the tracked flows hold
//     and the peak RSS of the process while dumping.
//
// Needs root. nf_conntrack_max is read-only inside a network namespace on
// this kernel (the limit is the host's value, applied per namespace): the
// benchmark raises the host's value for its duration when it is lower and
// restores it afterwards.
//
//	go test -run '^$' -bench RealDump1M -benchtime 3x ./internal/zoneflow/
func BenchmarkRealDump1M(b *testing.B) {
	netnstest.Require(b)
	raiseConntrackMax(b, realEntries+realEntries/10)
	ns := netnstest.New(b, "zf-bench-1m")
	ns.EnableConntrack(b, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	start := time.Now()
	if err := conn.Create(benchEntries(realEntries), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d entries in %s", realEntries, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	var bareMs, bareCPU float64
	b.Run("bare", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			n := 0
			if err := conn.Dump(ctx, func(*conntrack.Flow) { n++ }); err != nil {
				b.Fatal(err)
			}
			if n != realEntries {
				b.Fatalf("dumped %d entries, want %d", n, realEntries)
			}
		}
		bareMs = float64(b.Elapsed().Milliseconds()) / float64(b.N)
		bareCPU = float64((cpuTime() - cpu).Milliseconds()) / float64(b.N)
		b.ReportMetric(bareMs, "ms/dump")
		b.ReportMetric(bareCPU, "cpu-ms/dump")
	})
	b.Run("tracer", func(b *testing.B) {
		tr := newTestTracer("n1", conn, testIndex("n1"))
		heapBefore := heapInUse()
		if _, err := tr.dump(ctx); err != nil {
			b.Fatal(err)
		}
		if n := len(tr.p.flows); n != realEntries {
			b.Fatalf("tracked %d entries, want %d", n, realEntries)
		}
		heap := heapInUse() - heapBefore
		debug.FreeOSMemory()
		resetPeakRSS(b)
		cpu := cpuTime()
		b.ResetTimer()
		for b.Loop() {
			if _, err := tr.dump(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		ms := float64(b.Elapsed().Milliseconds()) / float64(b.N)
		b.ReportMetric(ms, "ms/dump")
		cpuMs := float64((cpuTime() - cpu).Milliseconds()) / float64(b.N)
		b.ReportMetric(cpuMs, "cpu-ms/dump")
		b.ReportMetric(realEntries/(ms/1e3), "flows/s")
		b.ReportMetric(float64(heap)/(1<<20), "MiB-heap")
		b.ReportMetric(float64(peakRSS(b))/(1<<20), "MiB-peak-RSS")
		if bareMs > 0 && bareCPU > 0 {
			b.ReportMetric(ms/bareMs, "x-bare-dump")
			b.ReportMetric(cpuMs/bareCPU, "x-bare-dump-cpu")
		}
		runtime.KeepAlive(tr)
	})
}

// benchEntries are n TCP entries of n1's pods (10.1.0.0/24) to a pod on n2,
// a VPC address and the internet.
func benchEntries(n int) []conntrack.Flow {
	dsts := []netip.Addr{n2Pod, vpcIP, inetIP}
	fs := make([]conntrack.Flow, n)
	for i := range fs {
		src := netip.AddrFrom4([4]byte{10, 1, 0, byte(1 + i%250)})
		fs[i] = conntrack.Flow{Proto: 6, OrigSrc: src, OrigDst: dsts[i%len(dsts)], OrigSrcPort: uint16(1024 + i/250), OrigDstPort: 443}
	}
	return fs
}

const conntrackMaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// raiseConntrackMax makes the (host's) nf_conntrack_max at least n until the
// benchmark ends.
func raiseConntrackMax(b *testing.B, n int) {
	old, err := os.ReadFile(conntrackMaxPath)
	if err != nil {
		b.Skipf("nf_conntrack_max: %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(old)))
	if err != nil || v >= n {
		return
	}
	if err := os.WriteFile(conntrackMaxPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		b.Skipf("raise nf_conntrack_max to %d: %v", n, err)
	}
	b.Cleanup(func() { _ = os.WriteFile(conntrackMaxPath, old, 0o644) })
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the process's VmHWM (clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0o200); err != nil {
		b.Logf("cannot reset the peak RSS: %v", err)
	}
}

// peakRSS is VmHWM in bytes.
func peakRSS(b *testing.B) uint64 {
	s, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(s))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
