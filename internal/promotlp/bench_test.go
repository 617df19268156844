package promotlp

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// cadvisorFamily is one family of the synthetic cAdvisor payload: its
// per-container series are the cross product of its label values.
type cadvisorFamily struct {
	name   string
	typ    promtext.MetricType
	labels [][2][]string // name, values
}

// cadvisorFamilies yields 60 series per container, like a trimmed cAdvisor.
func cadvisorFamilies() []cadvisorFamily {
	var fs []cadvisorFamily
	add := func(typ promtext.MetricType, labels [][2][]string, names ...string) {
		for _, n := range names {
			fs = append(fs, cadvisorFamily{name: n, typ: typ, labels: labels})
		}
	}
	iface := [][2][]string{{{"interface"}, {"eth0", "eth1"}}}
	dev := [][2][]string{{{"device"}, {"/dev/nvme0n1", "/dev/nvme1n1"}}}
	add(promtext.TypeCounter, [][2][]string{{{"cpu"}, {"total"}}}, "container_cpu_usage_seconds_total")
	add(promtext.TypeCounter, nil, "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
		"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
		"container_cpu_cfs_throttled_seconds_total", "container_oom_events_total")
	add(promtext.TypeGauge, nil, "container_memory_usage_bytes", "container_memory_working_set_bytes",
		"container_memory_rss", "container_memory_cache", "container_memory_swap", "container_memory_mapped_file",
		"container_spec_memory_limit_bytes", "container_spec_cpu_shares", "container_spec_cpu_quota",
		"container_spec_cpu_period", "container_last_seen", "container_start_time_seconds",
		"container_processes", "container_threads", "container_sockets", "container_file_descriptors")
	add(promtext.TypeCounter, [][2][]string{{{"failure_type"}, {"pgfault", "pgmajfault"}}, {{"scope"}, {"container", "hierarchy"}}},
		"container_memory_failures_total")
	add(promtext.TypeCounter, iface, "container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_network_receive_packets_total", "container_network_transmit_packets_total",
		"container_network_receive_errors_total", "container_network_transmit_errors_total",
		"container_network_receive_packets_dropped_total", "container_network_transmit_packets_dropped_total")
	add(promtext.TypeCounter, dev, "container_fs_reads_bytes_total", "container_fs_writes_bytes_total",
		"container_fs_reads_total", "container_fs_writes_total")
	add(promtext.TypeGauge, dev, "container_fs_usage_bytes", "container_fs_limit_bytes")
	add(promtext.TypeGauge, [][2][]string{{{"state"}, {"sleeping", "running", "stopped", "uninterruptible", "iowaiting"}}},
		"container_tasks_state")
	return fs
}

// cadvisorLike builds the samples of one scrape of containers containers
// (60 series each), grouped by family as cAdvisor exposes them.
func cadvisorLike(containers int) []*promtext.Sample {
	type ctr struct{ labels []promtext.Label }
	ctrs := make([]ctr, containers)
	for i := range ctrs {
		podUID := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", i*7919, i%65536, 4096+i%4096, 32768+i%4096, i*104729)
		hash := strings.Repeat(fmt.Sprintf("%08x", i*2654435761), 8)
		ctrs[i].labels = ls(
			"container", fmt.Sprintf("app-%d", i%3),
			"id", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"+podUID+".slice/cri-containerd-"+hash+".scope",
			"image", fmt.Sprintf("registry.example.com/team/service-%d:v1.%d.3", i/3%40, i%7),
			"name", hash,
			"namespace", fmt.Sprintf("team-%d", i%12),
			"pod", fmt.Sprintf("service-%d-7d9f8c6b5-%05x", i/3, i*31),
		)
	}
	var out []*promtext.Sample
	for _, f := range cadvisorFamilies() {
		help := []byte("Synthetic " + f.name + ".")
		for _, c := range ctrs {
			combos := [][]promtext.Label{nil}
			for _, l := range f.labels {
				var next [][]promtext.Label
				for _, prefix := range combos {
					for _, v := range l[1] {
						next = append(next, append(append([]promtext.Label{}, prefix...), ls(l[0][0], v)...))
					}
				}
				combos = next
			}
			for _, extra := range combos {
				labels := append(append([]promtext.Label{}, c.labels[:1]...), extra...)
				labels = append(labels, c.labels[1:]...)
				out = append(out, &promtext.Sample{
					Family: []byte(f.name), Type: f.typ, Name: []byte(f.name), Suffix: promtext.SuffixNone,
					Labels: labels, Value: 1, Help: help,
					TimestampMs: t0.UnixMilli(), HasTimestamp: true,
				})
			}
		}
	}
	return out
}

// convertScrape runs scrape i of samples, counters growing by one.
func convertScrape(c *Converter, samples []*promtext.Sample, i int) ([]*metricspb.Metric, Stats) {
	c.Begin(t0.Add(time.Duration(i) * 15 * time.Second))
	ts := t0.UnixMilli() + int64(i)*15_000
	for _, s := range samples {
		s.Value = float64(i + 1)
		s.TimestampMs = ts
		c.Add(s, nil)
	}
	return c.Finish()
}

// BenchmarkConvert30k converts scrapes of 30k cAdvisor-like counter and
// gauge series in steady state (all series known).
func BenchmarkConvert30k(b *testing.B) {
	samples := cadvisorLike(500)
	n := float64(len(samples))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(Options{})
	if _, st := convertScrape(c, samples, 0); st.DataPoints != len(samples) {
		b.Fatalf("%d points for %d samples: %+v", st.DataPoints, len(samples), st)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := float64(after.HeapAlloc-before.HeapAlloc) / n

	b.ReportAllocs()
	b.ResetTimer()
	runtime.ReadMemStats(&before)
	cpu0, cpuOK := cpuTime()
	for i := range b.N {
		if _, st := convertScrape(c, samples, i+1); st.DataPoints != len(samples) || st.Resets != 0 {
			b.Fatalf("scrape %d: %+v", i, st)
		}
	}
	b.StopTimer()
	cpu1, _ := cpuTime()
	runtime.ReadMemStats(&after)
	perSeries := float64(b.N) * n
	b.ReportMetric(retained, "retained-B/series")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/perSeries, "ns/series")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/perSeries, "allocs/series")
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/perSeries, "B/series")
	reportCPU(b, cpuOK, cpu1-cpu0, n)
}

// reportCPU reports process CPU time (GC included) per scrape and series.
func reportCPU(b *testing.B, ok bool, d time.Duration, series float64) {
	if !ok {
		return
	}
	perScrape := float64(d.Nanoseconds()) / float64(b.N)
	b.ReportMetric(perScrape/1e6, "cpu-ms/scrape")
	b.ReportMetric(perScrape/series, "cpu-ns/series")
}

// BenchmarkConvert30kFirstScrape measures a scrape of 30k new series.
func BenchmarkConvert30kFirstScrape(b *testing.B) {
	samples := cadvisorLike(500)
	b.ReportAllocs()
	cpu0, cpuOK := cpuTime()
	for b.Loop() {
		convertScrape(New(Options{}), samples, 0)
	}
	cpu1, _ := cpuTime()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(samples)), "ns/series")
	reportCPU(b, cpuOK, cpu1-cpu0, float64(len(samples)))
}

// BenchmarkConvert30kMarshal adds protobuf encoding of the scrape, for the
// scrape+encode budget.
func BenchmarkConvert30kMarshal(b *testing.B) {
	samples := cadvisorLike(500)
	c := New(Options{})
	convertScrape(c, samples, 0)
	var size int
	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := cpuTime()
	for i := range b.N {
		ms, _ := convertScrape(c, samples, i+1)
		buf, err := proto.Marshal(&metricspb.ScopeMetrics{Metrics: ms})
		if err != nil {
			b.Fatal(err)
		}
		size = len(buf)
	}
	cpu1, _ := cpuTime()
	b.ReportMetric(float64(size), "bytes/scrape")
	reportCPU(b, cpuOK, cpu1-cpu0, float64(len(samples)))
}

// BenchmarkConvert30kChunks is BenchmarkConvert30k on the daemon's path:
// each scrape finished with FinishChunks into a reused buffer (2000 data
// points per chunk).
func BenchmarkConvert30kChunks(b *testing.B) {
	samples := cadvisorLike(500)
	n := float64(len(samples))
	var buf []byte
	emit := func([]byte, int) error { return nil }
	scrape := func(c *Converter, i int) Stats {
		c.Begin(t0.Add(time.Duration(i) * 15 * time.Second))
		ts := t0.UnixMilli() + int64(i)*15_000
		for _, s := range samples {
			s.Value = float64(i + 1)
			s.TimestampMs = ts
			c.Add(s, nil)
		}
		var st Stats
		buf, st, _ = c.FinishChunks(buf, nil, nil, ChunkOptions{MaxDataPoints: 2000}, emit)
		return st
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := New(Options{})
	if st := scrape(c, 0); st.DataPoints != len(samples) {
		b.Fatalf("%d points for %d samples: %+v", st.DataPoints, len(samples), st)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	retained := float64(after.HeapAlloc-before.HeapAlloc) / n

	b.ReportAllocs()
	b.ResetTimer()
	cpu0, cpuOK := cpuTime()
	for i := range b.N {
		if st := scrape(c, i+1); st.DataPoints != len(samples) || st.Resets != 0 {
			b.Fatalf("scrape %d: %+v", i, st)
		}
	}
	b.StopTimer()
	cpu1, _ := cpuTime()
	b.ReportMetric(retained, "retained-B/series")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*n), "ns/series")
	reportCPU(b, cpuOK, cpu1-cpu0, n)
}
