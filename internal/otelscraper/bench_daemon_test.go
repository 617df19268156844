package otelscraper

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

// procStats reads a process's CPU time (user+sys) and resident memory.
func procStats(pid int) (cpu time.Duration, rssMiB float64) {
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
			if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
				rssMiB = kb / 1024
			}
		}
	}
	return cpu, rssMiB
}

// BenchmarkDaemon30k runs the built otel-shoot-scraper binary against a
// 30k-series cAdvisor-like target with the default rules' keep-all default job
// replaced by no rules (every series kept and exported over OTLP/HTTP with gzip
// through the on-disk queue), and measures the daemon process itself: CPU per
// scrape and resident memory in steady state. b.N is the number of scrapes.
func BenchmarkDaemon30k(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "otel-shoot-scraper")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/otel-shoot-scraper").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	payload := cadvisorPayload(30000)
	var scrapes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write(payload)
		scrapes.Add(1)
	}))
	defer srv.Close()
	recv := otlptest.NewHTTP(b)
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("default: {}\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "--discovery.kubernetes=false", "--node.name=bench", "--rules.file="+rules,
		"--target.static=job=bench,url="+srv.URL+"/metrics,interval=1s",
		"--otlp.protocol=http/protobuf", "--otlp.endpoint="+recv.URL(), "--otlp.insecure",
		"--queue.dir="+filepath.Join(dir, "queue"), "--web.listen-address=", "--log.level=error")
	if l := os.Getenv("BENCH_MEMLIMIT_MIB"); l != "" { // to compare runtime memory limits
		cmd.Args = append(cmd.Args, "--runtime.memory-limit-mib="+l)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	wait := func(n int64) {
		deadline := time.Now().Add(time.Duration(n+30) * 2 * time.Second)
		for scrapes.Load() < n {
			if time.Now().After(deadline) {
				b.Fatalf("only %d scrapes", scrapes.Load())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait(3) // warm: series known, buffers grown
	b.ResetTimer()
	start := scrapes.Load()
	cpu0, _ := procStats(cmd.Process.Pid)
	wait(start + int64(b.N))
	cpu1, rss := procStats(cmd.Process.Pid)
	b.StopTimer()
	b.ReportMetric(float64((cpu1-cpu0).Milliseconds())/float64(b.N), "cpu-ms/scrape")
	b.ReportMetric(rss, "rss-MiB")
	b.ReportMetric(float64(len(recv.Requests())), "otlp-requests")
}
