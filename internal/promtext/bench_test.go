package promtext

import (
	"bytes"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// BenchmarkParseCadvisor30k parses a 30k-series cAdvisor-like payload with
// this package (text and OpenMetrics) and, as the baseline, with expfmt's
// TextParser, and reports samples/s, allocations per series and the speed-up
// over expfmt.
func BenchmarkParseCadvisor30k(b *testing.B) {
	data, series := cadvisorPayload(30000)
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

	var nsPromtext float64
	b.Run("promtext", func(b *testing.B) {
		nsPromtext = benchParse(b, data, FormatText, series)
	})
	b.Run("promtext-openmetrics", func(b *testing.B) {
		benchParse(b, om.Bytes(), FormatOpenMetrics, series)
	})
	b.Run("expfmt", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu := processCPU()
		for b.Loop() {
			p := expfmt.NewTextParser(model.UTF8Validation)
			if _, err := p.TextToMetricFamilies(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
		cpu = processCPU() - cpu
		runtime.ReadMemStats(&after)
		ns := reportPerSeries(b, series, after.Mallocs-before.Mallocs, cpu)
		if nsPromtext > 0 {
			b.ReportMetric(ns/nsPromtext, "x-slower-than-promtext")
			b.Logf("%d series: promtext %.2f ms/op, expfmt %.2f ms/op, ratio %.1fx", series, nsPromtext/1e6, ns/1e6, ns/nsPromtext)
		}
	})
}

// benchParse runs Parse on data in a loop and returns ns/op.
func benchParse(b *testing.B, data []byte, f Format, series int) float64 {
	var p Parser
	n := 0
	count := func(*Sample) error { n++; return nil }
	if err := p.Parse(data, f, count); err != nil { // warm up the scratch buffers
		b.Fatal(err)
	}
	if n != series {
		b.Fatalf("parsed %d samples, want %d", n, series)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	runtime.GC() // no garbage from building the payload is collected while measuring
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	cpu := processCPU()
	for b.Loop() {
		if err := p.Parse(data, f, count); err != nil {
			b.Fatal(err)
		}
	}
	cpu = processCPU() - cpu
	runtime.ReadMemStats(&after)
	return reportPerSeries(b, series, after.Mallocs-before.Mallocs, cpu)
}

// reportPerSeries reports samples/s, allocations per series and CPU time
// per operation (the process's, so it includes any GC work), and returns
// ns/op.
func reportPerSeries(b *testing.B, series int, mallocs uint64, cpu time.Duration) float64 {
	ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	if cpu > 0 {
		b.ReportMetric(cpu.Seconds()*1e3/float64(b.N), "cpu-ms/op")
	}
	b.ReportMetric(float64(series)*1e9/ns, "samples/s")
	b.ReportMetric(float64(mallocs)/float64(b.N)/float64(series), "allocs/series")
	return ns
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
