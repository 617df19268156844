package otelscraper

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// rss is a process's resident memory in MiB: the total, and its anonymous
// (heap, stacks) and file-backed (the mapped binary and libraries) parts.
type rss struct{ total, anon, file float64 }

// procStats reads a process's CPU time (user+sys) and resident memory.
func procStats(pid int) (cpu time.Duration, mem rss) {
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 13 {
				ut, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(ut+st) * (time.Second / 100) // USER_HZ
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			name, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			switch name {
			case "VmRSS":
				mem.total = kb / 1024
			case "RssAnon":
				mem.anon = kb / 1024
			case "RssFile":
				mem.file = kb / 1024
			}
		}
	}
	return cpu, mem
}

// BenchmarkDaemon30k runs the built otel-shoot-scraper binary (built as the
// Makefile builds it, with the grpcnotrace tag) against a 30k-series target with
// rules that keep every series, so that every series is exported through the
// on-disk queue, and measures the daemon process itself: CPU per scrape and
// resident memory in steady state. b.N is the number of scrapes (one a second).
//
// Payloads: "realistic" (realisticCadvisorPayload: systemd cgroup ids, ~430
// bytes a line, 13 MB, timestamps, histograms and summaries) and "light" (the
// older cadvisorPayload, 8.5 MB), served as promhttp (the kubelet's handler)
// serves them: gzip-compressed when the request accepts gzip. Exporters: "grpc" is the default
// configuration (OTLP/gRPC, gzip level 1), "http" OTLP/HTTP with gzip,
// "grpc-zstd" the zstd option. The baseline, measured in the same run on the
// same bytes, is parsing the payload with prometheus/common/expfmt (parse only,
// in the benchmark process): ratio-to-expfmt is the daemon's whole work per
// scrape (receive, parse, filter, convert, encode, queue, compress, send) over
// that parse alone.
func BenchmarkDaemon30k(b *testing.B) {
	bin := os.Getenv("BENCH_BIN") // another build to compare, e.g. an earlier commit's
	if bin == "" {
		bin = testbin.Build(b, Name)
	}
	payloads := []struct {
		name string
		data []byte
	}{
		{"realistic", realisticCadvisorPayload(30000, 0)},
		{"light", cadvisorPayload(30000)},
	}
	exporters := []struct {
		name string
		args func(grpcAddr, httpURL string) []string
	}{
		{"grpc", func(a, _ string) []string { return []string{"--otlp.endpoint=" + a} }},
		{"http", func(_, u string) []string { return []string{"--otlp.protocol=http/protobuf", "--otlp.endpoint=" + u} }},
		{"grpc-zstd", func(a, _ string) []string { return []string{"--otlp.endpoint=" + a, "--otlp.compression=zstd"} }},
	}
	for _, p := range payloads {
		baseline := expfmtParseCPU(b, p.data)
		for _, e := range exporters {
			b.Run("payload="+p.name+"/exporter="+e.name, func(b *testing.B) {
				benchDaemon(b, bin, p.data, baseline, e.args)
			})
		}
	}
}

// expfmtParseCPU is the process CPU time of parsing payload with
// prometheus/common/expfmt, the median of five runs.
func expfmtParseCPU(b *testing.B, payload []byte) time.Duration {
	var runs []time.Duration
	for range 5 {
		start := cpuTime()
		p := expfmt.NewTextParser(model.LegacyValidation)
		if _, err := p.TextToMetricFamilies(bytes.NewReader(payload)); err != nil {
			b.Fatal(err)
		}
		runs = append(runs, cpuTime()-start)
	}
	slices.Sort(runs)
	return runs[len(runs)/2]
}

func benchDaemon(b *testing.B, bin string, payload []byte, baseline time.Duration, exporter func(grpcAddr, httpURL string) []string) {
	dir := b.TempDir()
	var scrapes atomic.Int64
	// The target answers as promhttp (the kubelet's and node-exporter's
	// handler) does: gzip at compress/gzip's default level when the request
	// accepts it. Compressed once here: the target's CPU is not the daemon's.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(payload)
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(gz.Bytes())
		} else {
			_, _ = w.Write(payload)
		}
		scrapes.Add(1)
	}))
	defer srv.Close()
	grpcRecv, httpRecv := otlptest.NewGRPC(b, otlptest.WithoutMetrics()), otlptest.NewHTTP(b, otlptest.WithoutMetrics())
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("default: {}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--discovery.kubernetes=false", "--node.name=bench", "--rules.file="+rules,
		"--target.static=job=bench,url="+srv.URL+"/metrics,interval=1s", "--otlp.insecure",
		"--queue.dir="+filepath.Join(dir, "queue"), "--web.listen-address=", "--log.level=error")
	cmd.Args = append(cmd.Args, exporter(grpcRecv.Addr(), httpRecv.URL())...)
	if a := os.Getenv("BENCH_PPROF_ADDR"); a != "" { // to profile the daemon: go tool pprof http://<addr>/debug/pprof/heap
		cmd.Args = append(cmd.Args, "--web.listen-address="+a, "--web.pprof")
	}
	if a := os.Getenv("BENCH_ARGS"); a != "" { // to compare flags, e.g. "--memory.limit=40Mi --memory.gc-percent=100"
		cmd.Args = append(cmd.Args, strings.Fields(a)...)
	}
	if os.Getenv("BENCH_STDERR") != "" { // e.g. with GODEBUG=gctrace=1
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	received := func() int { return len(grpcRecv.Requests()) + len(httpRecv.Requests()) }
	wait := func(n int64) {
		if !testkit.Until(time.Duration(n+30)*2*time.Second, func() bool { return scrapes.Load() >= n }) {
			b.Fatalf("only %d scrapes", scrapes.Load())
		}
	}
	wait(3) // warm: series known, buffers grown
	testkit.Eventually(b, "a first export", func() bool { return received() > 0 })
	b.ResetTimer()
	profiled := make(chan struct{})
	if a, out := os.Getenv("BENCH_PPROF_ADDR"), os.Getenv("BENCH_CPU_OUT"); a != "" && out != "" && b.N > 2 {
		go func() { // a CPU profile of the daemon over the measured scrapes
			defer close(profiled)
			saveProfile(b, "http://"+a+"/debug/pprof/profile?seconds="+strconv.Itoa(b.N-1), out)
		}()
	} else {
		close(profiled)
	}
	start := scrapes.Load()
	cpu0, _ := procStats(cmd.Process.Pid)
	wait(start + int64(b.N))
	cpu1, rss := procStats(cmd.Process.Pid)
	b.StopTimer()
	<-profiled
	if os.Getenv("BENCH_SMAPS") != "" { // where the resident memory is, by mapping
		logSmaps(b, cmd.Process.Pid)
	}
	if a := os.Getenv("BENCH_PPROF_ADDR"); a != "" && os.Getenv("BENCH_PPROF_OUT") != "" {
		saveProfile(b, "http://"+a+"/debug/pprof/heap", os.Getenv("BENCH_PPROF_OUT"))
		saveProfile(b, "http://"+a+"/debug/pprof/heap?debug=1&gc=1", os.Getenv("BENCH_PPROF_OUT")+".txt")
	}
	cpu := float64((cpu1 - cpu0).Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(cpu, "cpu-ms/scrape")
	b.ReportMetric(float64(baseline.Microseconds())/1000, "expfmt-parse-cpu-ms")
	b.ReportMetric(cpu/(float64(baseline.Microseconds())/1000), "ratio-to-expfmt")
	b.ReportMetric(rss.total, "rss-MiB")
	b.ReportMetric(rss.anon, "rss-anon-MiB")
	b.ReportMetric(rss.file, "rss-file-MiB")
	b.ReportMetric(float64(len(payload))/(1<<20), "payload-MiB")
}

// logSmaps logs the resident size of each mapping of a process that holds at
// least 256 KiB.
func logSmaps(b *testing.B, pid int) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		b.Log(err)
		return
	}
	var mapping string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-"):
			mapping = l
		case len(f) == 3 && f[0] == "Rss:":
			if kb, _ := strconv.Atoi(f[1]); kb >= 256 {
				b.Logf("%6d KiB  %s", kb, mapping)
			}
		}
	}
}

// saveProfile saves the profile at url to file (when set).
func saveProfile(b *testing.B, url, file string) {
	if file == "" {
		return
	}
	resp, err := http.Get(url) //nolint:noctx // a benchmark helper
	if err != nil {
		b.Log(err)
		return
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(file, data, 0o600)
	}
	if err != nil {
		b.Log(err)
	}
}
