package zoneflow

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
)

// TestDumpCPUCountsBothThreads: a dump runs on two threads (conntrack's
// receiving thread, where the kernel builds the messages, and the tracer's
// decoding one); dump_cpu_seconds_total grows per dump by the CPU of both:
// at least the receiving thread's, at most the whole process's over the dump
// (it once added the receiver's total of all earlier dumps every time).
func TestDumpCPUCountsBothThreads(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "zf-dumpcpu")
	ns.EnableConntrack(t, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if err := conn.Create(benchEntries(50_000), time.Hour); err != nil {
		t.Fatal(err)
	}
	tr := newTestTracer("n1", conn, testIndex("n1"))
	const slack = 5 * time.Millisecond // rounding of the kernel's per-thread accounting
	for i := range 4 {
		metric0, reader0, proc0 := testutil.ToFloat64(tr.m.dumpCPU), conn.ReaderCPU(), cpuTime()
		if _, err := tr.dump(context.Background()); err != nil {
			t.Fatal(err)
		}
		proc := cpuTime() - proc0
		reader := conn.ReaderCPU() - reader0
		metric := time.Duration((testutil.ToFloat64(tr.m.dumpCPU) - metric0) * float64(time.Second))
		if reader <= 0 || metric+slack < reader || metric > proc+slack {
			t.Fatalf("dump %d: dump CPU %s, receiving thread %s, process %s: want receiving <= dump <= process", i, metric, reader, proc)
		}
	}
}
