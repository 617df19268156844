package otelscraper

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// cadvisorPayload renders n series of a cAdvisor-like exposition: per container
// 10 series over counters and gauges with cAdvisor's labels; a third of the
// containers are in kube-system.
func cadvisorPayload(n int) []byte {
	families := []struct{ name, typ string }{
		{"container_cpu_usage_seconds_total", "counter"}, {"container_cpu_cfs_periods_total", "counter"},
		{"container_cpu_cfs_throttled_periods_total", "counter"}, {"container_memory_working_set_bytes", "gauge"},
		{"container_memory_rss", "gauge"}, {"container_memory_cache", "gauge"}, {"container_fs_usage_bytes", "gauge"},
		{"container_fs_limit_bytes", "gauge"}, {"container_network_receive_bytes_total", "counter"},
		{"container_network_transmit_bytes_total", "counter"},
	}
	containers := n / len(families)
	var b bytes.Buffer
	for _, f := range families {
		fmt.Fprintf(&b, "# HELP %s cAdvisor metric.\n# TYPE %s %s\n", f.name, f.name, f.typ)
		for c := 0; c < containers; c++ {
			ns := "shop"
			if c%3 == 0 {
				ns = "kube-system"
			}
			fmt.Fprintf(&b, `%s{container="app-%d",id="/kubepods/burstable/pod%08d/%064d",image="registry.example/app:v1.%d",interface="eth0",name="k8s_app_%d",namespace="%s",pod="app-%d-7f9c"} %d 1700000000000`+"\n",
				f.name, c, c, c, c%7, c, ns, c, 1000+c)
		}
	}
	return b.Bytes()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssMiB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// BenchmarkScrape30k measures one scrape of a 30k-series cAdvisor-like target:
// HTTP GET on loopback, parse, filter, convert to OTLP and protobuf-encode the
// export request, in steady state (series known from earlier scrapes). It reports
// CPU time per scrape (process user+sys, so it includes the in-process HTTP
// server), allocations per series, heap and RSS after the run, and the ratio to
// parsing the same payload with prometheus/common/expfmt (parse only, no filter,
// conversion or encoding) measured in the same run.
func BenchmarkScrape30k(b *testing.B) {
	const series = 30000
	payload := cadvisorPayload(series)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(payload)
	}))
	defer srv.Close()

	// Baseline: expfmt parse of the same bytes, same run.
	start := cpuTime()
	const baseRuns = 5
	for i := 0; i < baseRuns; i++ {
		p := expfmt.NewTextParser(model.LegacyValidation)
		if _, err := p.TextToMetricFamilies(bytes.NewReader(payload)); err != nil {
			b.Fatal(err)
		}
	}
	baseline := (cpuTime() - start) / baseRuns

	keepAll, err := ParseRules([]byte("default: {}\n"))
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name, job string
		rules     *Rules
	}{{"keep-all", "bench", keepAll}, {"cadvisor-default-rules", "cadvisor", DefaultRules()}} {
		b.Run(tc.name, func(b *testing.B) {
			var encoded int
			sink := func(data []byte, _ int) error {
				encoded += len(data) // already encoded: the chunks of the export request
				return nil
			}
			m := newMetrics(nil, "bench")
			s, err := newScraper(Target{Job: tc.job, URL: srv.URL, Interval: 15 * time.Second, Timeout: 10 * time.Second},
				func() *Rules { return tc.rules }, sink, m, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			s.scrapeOnce(ctx, time.Now()) // first scrape learns the series
			if encoded == 0 {
				b.Fatal("nothing exported")
			}
			perScrape := encoded
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i < b.N; i++ {
				s.scrapeOnce(ctx, time.Now())
			}
			cpu := (cpuTime() - cpu0) / time.Duration(b.N)
			b.StopTimer()
			var ms runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms/scrape")
			b.ReportMetric(float64(baseline.Microseconds())/1000, "expfmt-parse-cpu-ms")
			b.ReportMetric(float64(cpu)/float64(baseline), "ratio-to-expfmt")
			b.ReportMetric(float64(testing.AllocsPerRun(1, func() { s.scrapeOnce(ctx, time.Now()) }))/series, "allocs/series")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
			b.ReportMetric(rssMiB(), "rss-MiB")
			b.ReportMetric(float64(perScrape)/1024, "otlp-KiB")
		})
	}
}
