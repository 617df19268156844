package promtext

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// benchResult is what one sub-benchmark measured per operation.
type benchResult struct {
	ns, cpuNs float64
}

// BenchmarkParseCadvisor30k parses a 30k-series cAdvisor-like payload with
// this package (text, and the same series as OpenMetrics) and, as the
// baseline, with expfmt's TextParser in the same run. It reports samples/s,
// allocations per series, CPU time per operation and, on the expfmt line,
// how many times slower expfmt is (wall and CPU).
func BenchmarkParseCadvisor30k(b *testing.B) {
	data, series := cadvisorPayload(30000)
	om := toOpenMetrics(b, data)

	var ours benchResult
	b.Run("promtext", func(b *testing.B) {
		ours = benchLoop(b, len(data), series, newParseOp(b, data, FormatText, series))
	})
	b.Run("promtext-openmetrics", func(b *testing.B) {
		benchLoop(b, len(om), series, newParseOp(b, om, FormatOpenMetrics, series))
	})
	b.Run("expfmt", func(b *testing.B) {
		ref := benchLoop(b, len(data), series, func() {
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := p.TextToMetricFamilies(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		})
		if ours.ns > 0 {
			b.ReportMetric(ref.ns/ours.ns, "x-slower-than-promtext")
			b.Logf("%d series, %d bytes: promtext %.2f ms/op (%.2f ms CPU), expfmt %.2f ms/op (%.2f ms CPU): %.1fx wall, %.1fx CPU",
				series, len(data), ours.ns/1e6, ours.cpuNs/1e6, ref.ns/1e6, ref.cpuNs/1e6, ref.ns/ours.ns, ref.cpuNs/ours.cpuNs)
		}
	})
}

// toOpenMetrics re-encodes a text payload as OpenMetrics with expfmt.
func toOpenMetrics(b *testing.B, data []byte) []byte {
	fams, err := expfmtParse(data)
	if err != nil {
		b.Fatal(err)
	}
	var om bytes.Buffer
	for _, mf := range fams {
		if _, err := expfmt.MetricFamilyToOpenMetrics(&om, mf); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := expfmt.FinalizeOpenMetrics(&om); err != nil {
		b.Fatal(err)
	}
	return om.Bytes()
}

// newParseOp returns one Parse of data on a warmed-up Parser.
func newParseOp(b *testing.B, data []byte, f Format, series int) func() {
	var p Parser
	n := 0
	count := func(*Sample) error { n++; return nil }
	if err := p.Parse(data, f, count); err != nil { // warm up the scratch buffers
		b.Fatal(err)
	}
	if n != series {
		b.Fatalf("parsed %d samples, want %d", n, series)
	}
	return func() {
		if err := p.Parse(data, f, count); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLoop runs op in the benchmark loop and reports throughput, samples/s,
// allocations per series and CPU time per operation (the process's, so it
// includes GC work; wall time on a shared machine includes waiting for a
// core).
func benchLoop(b *testing.B, size, series int, op func()) benchResult {
	b.SetBytes(int64(size))
	b.ReportAllocs()
	runtime.GC() // collect the garbage of building the payload before measuring
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	for b.Loop() {
		op()
	}
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)

	r := benchResult{
		ns:    float64(b.Elapsed().Nanoseconds()) / float64(b.N),
		cpuNs: float64(cpu.Nanoseconds()) / float64(b.N),
	}
	b.ReportMetric(float64(series)*1e9/r.ns, "samples/s")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)/float64(series), "allocs/series")
	if cpu > 0 {
		b.ReportMetric(r.cpuNs/float64(time.Millisecond), "cpu-ms/op")
	}
	return r
}

// TestParseAllocs checks that a warmed-up Parser parses realistic payloads,
// escapes included, without allocating.
func TestParseAllocs(t *testing.T) {
	for name, data := range fixtures() {
		var p Parser
		nop := func(*Sample) error { return nil }
		allocs := testing.AllocsPerRun(5, func() {
			if err := p.Parse(data, FormatText, nop); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Parse, want 0", name, allocs)
		}
	}
}
