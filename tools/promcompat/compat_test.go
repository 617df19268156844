package promcompat

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // the Collector's gRPC servers decompress gzip with grpc-go's codec
)

// promConfig is the Prometheus configuration of both sides: the direct scrape
// (scrape_configs, Prometheus 3 defaults otherwise) and the OTLP receiver (the
// settings docs/otel-shoot-scraper.md recommends: Prometheus 3's defaults).
const promConfig = `
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
- job_name: text
- job_name: openmetrics
otlp:
  translation_strategy: UnderscoreEscapingWithSuffixes
`

// sample is the last value a store received for a series.
type sample struct {
	v    float64
	hist bool
}

// store is a storage.AppendableV2 keeping the last committed sample of every
// series, keyed by its label set.
type store struct {
	mu      sync.Mutex
	series  map[string]sample
	commits int
}

func newStore() *store { return &store{series: map[string]sample{}} }

func (s *store) AppenderV2(context.Context) storage.AppenderV2 { return &appender{s: s} }

func (s *store) snapshot() (map[string]sample, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]sample, len(s.series))
	for k, v := range s.series {
		out[k] = v
	}
	return out, s.commits
}

type appender struct {
	s       *store
	pending map[string]sample
}

func (a *appender) Append(_ storage.SeriesRef, ls labels.Labels, _, _ int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, _ storage.AOptions) (storage.SeriesRef, error) {
	if a.pending == nil {
		a.pending = map[string]sample{}
	}
	a.pending[ls.String()] = sample{v: v, hist: h != nil || fh != nil}
	return storage.SeriesRef(ls.Hash()), nil
}

func (a *appender) Commit() error {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	for k, v := range a.pending {
		a.s.series[k] = v
	}
	a.s.commits++
	return nil
}

func (a *appender) Rollback() error { a.pending = nil; return nil }

// textTarget is a Prometheus text format 0.0.4 exposition with what
// node-exporter, the kubelet and cAdvisor expose: counters, gauges, untyped,
// a histogram and a summary, escaped label values, a label named like a target
// label, explicit timestamps, special values, a recording-rule style name.
const textTarget = `# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 12345.67
node_cpu_seconds_total{cpu="0",mode="user"} 234.5
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 8.123456e+09
# HELP node_filesystem_avail_bytes Filesystem space available.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/sda1",fstype="ext4",mountpoint="/"} 1.2e+10
node_filesystem_avail_bytes{device="tmpfs",fstype="tmpfs",mountpoint="/run/a \"quoted\" \\ path\nline"} 0
# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",cpu="total",id="/kubepods.slice/kubepods-burstable.slice/cri-containerd-0a1b.scope",image="registry.example/app:v1",name="0a1b",namespace="shop",pod="app-1"} 1234.5 TS
# HELP container_memory_working_set_bytes Current working set in bytes.
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",id="/kubepods.slice/x",image="registry.example/app:v1",name="0a1b",namespace="shop",pod="app-1"} 5.24288e+07 TS
# HELP kubelet_running_pods Number of pods that have a running pod sandbox
# TYPE kubelet_running_pods gauge
kubelet_running_pods 12
# HELP apiserver_request_duration_seconds Response latency distribution in seconds.
# TYPE apiserver_request_duration_seconds histogram
apiserver_request_duration_seconds_bucket{verb="GET",le="0.05"} 10
apiserver_request_duration_seconds_bucket{verb="GET",le="0.1"} 15
apiserver_request_duration_seconds_bucket{verb="GET",le="1"} 19
apiserver_request_duration_seconds_bucket{verb="GET",le="+Inf"} 20
apiserver_request_duration_seconds_sum{verb="GET"} 3.5
apiserver_request_duration_seconds_count{verb="GET"} 20
# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.3e-05
go_gc_duration_seconds{quantile="0.5"} 5.1e-05
go_gc_duration_seconds{quantile="1"} 0.000412
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 130
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1.7e+09
# HELP rest_client_requests_total Number of HTTP requests, partitioned by status code, method, and host.
# TYPE rest_client_requests_total counter
rest_client_requests_total{code="200",host="10.0.0.1:443",method="GET"} 4321
# HELP storage_operation_errors_total Storage errors (a label named like a target label).
# TYPE storage_operation_errors_total counter
storage_operation_errors_total{instance="other:9100",job="other"} 3
# HELP node_scrape_collector_success Whether a collector succeeded.
# TYPE node_scrape_collector_success gauge
node_scrape_collector_success{collector="cpu"} 1
node_textfile_mtime_seconds{file="a.prom"} 1.6e+09
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 NaN
# HELP node_network_speed_bytes speed.
# TYPE node_network_speed_bytes gauge
node_network_speed_bytes{device="lo"} +Inf
# HELP instance:node_cpu:rate5m A recording-rule style name.
# TYPE instance:node_cpu:rate5m gauge
instance:node_cpu:rate5m 0.25
`

// openMetricsTarget is an OpenMetrics 1.0 exposition: counters with _created,
// units, an info family, a stateset, a histogram and a summary with _created.
const openMetricsTarget = `# TYPE http_requests counter
# HELP http_requests Requests served.
http_requests_total{code="200",path="/api"} 1027
http_requests_created{code="200",path="/api"} 1.6e+09
# TYPE process_cpu_seconds counter
# UNIT process_cpu_seconds seconds
# HELP process_cpu_seconds CPU time.
process_cpu_seconds_total 12.5
# TYPE memory_used_bytes gauge
# UNIT memory_used_bytes bytes
# HELP memory_used_bytes Memory in use.
memory_used_bytes 1048576
# TYPE build info
# HELP build Build information.
build_info{version="1.2.3",revision="abc"} 1
# TYPE feature stateset
# HELP feature Feature flags.
feature{feature="a"} 1
feature{feature="b"} 0
# TYPE rpc_duration_seconds histogram
# UNIT rpc_duration_seconds seconds
# HELP rpc_duration_seconds RPC latency.
rpc_duration_seconds_bucket{le="0.1"} 3
rpc_duration_seconds_bucket{le="1.0"} 7
rpc_duration_seconds_bucket{le="+Inf"} 8
rpc_duration_seconds_sum 4.5
rpc_duration_seconds_count 8
rpc_duration_seconds_created 1.6e+09
# TYPE queue_wait_seconds summary
# UNIT queue_wait_seconds seconds
# HELP queue_wait_seconds Queue wait.
queue_wait_seconds{quantile="0.5"} 0.01
queue_wait_seconds{quantile="0.99"} 0.2
queue_wait_seconds_sum 3.2
queue_wait_seconds_count 100
queue_wait_seconds_created 1.6e+09
# TYPE temperature_celsius gauge
# UNIT temperature_celsius celsius
temperature_celsius{sensor="cpu"} 48.5
# TYPE last_run_timestamp_seconds gauge
last_run_timestamp_seconds 1.7e+09
# EOF
`

// expectedDifferences are the differences between what a direct scrape stores
// and what arrives through trellis and Prometheus's OTLP translation, all
// caused by the translation (docs/otel-shoot-scraper.md lists them). Keys are
// series; "only direct", "only otlp" or "value".
var expectedDifferences = map[string]string{
	// Prometheus 3 stores the le and quantile values of a direct scrape as
	// floats ("1.0"); the translation formats the OTLP bounds and quantiles
	// shortest ("1").
	`{__name__="apiserver_request_duration_seconds_bucket", instance="TEXT", job="text", le="1.0", verb="GET"}`: "only direct",
	`{__name__="apiserver_request_duration_seconds_bucket", instance="TEXT", job="text", le="1", verb="GET"}`:   "only otlp",
	`{__name__="go_gc_duration_seconds", instance="TEXT", job="text", quantile="0.0"}`:                          "only direct",
	`{__name__="go_gc_duration_seconds", instance="TEXT", job="text", quantile="0"}`:                            "only otlp",
	`{__name__="go_gc_duration_seconds", instance="TEXT", job="text", quantile="1.0"}`:                          "only direct",
	`{__name__="go_gc_duration_seconds", instance="TEXT", job="text", quantile="1"}`:                            "only otlp",
	`{__name__="rpc_duration_seconds_bucket", instance="OPENMETRICS", job="openmetrics", le="1.0"}`:             "only direct",
	`{__name__="rpc_duration_seconds_bucket", instance="OPENMETRICS", job="openmetrics", le="1"}`:               "only otlp",
	// OpenMetrics _created samples: a direct scrape stores them as series;
	// through OTLP they are the points' start time, which the translation
	// does not turn into series.
	`{__name__="http_requests_created", code="200", instance="OPENMETRICS", job="openmetrics", path="/api"}`: "only direct",
	`{__name__="queue_wait_seconds_created", instance="OPENMETRICS", job="openmetrics"}`:                     "only direct",
	`{__name__="rpc_duration_seconds_created", instance="OPENMETRICS", job="openmetrics"}`:                   "only direct",
	// target_info: the translation adds one series per resource (the
	// resource attributes that are not job and instance).
	`{__name__="target_info", instance="OPENMETRICS", job="openmetrics", k8s_node_name="compat", server_address="127.0.0.1", server_port="PORT", url_scheme="http"}`: "only otlp",
	`{__name__="target_info", instance="TEXT", job="text", k8s_node_name="compat", server_address="127.0.0.1", server_port="PORT", url_scheme="http"}`:               "only otlp",
}

// TestPrometheusTranslation scrapes a text-format and an OpenMetrics target
// directly with Prometheus's scrape manager and, beside it, with the
// otel-shoot-scraper binary (built from this repository with its defaults:
// OTLP/gRPC with gzip, and once over OTLP/HTTP), whose export arrives at
// Prometheus's own OTLP receiver (remote.NewOTLPWriteHandler: pdata decoding
// and Prometheus's translation); the gRPC export is decoded by pdata's gRPC
// server, as the Collector does, and handed on to the same receiver. The
// stored series must be the same except for the documented differences the
// translation causes.
func TestPrometheusTranslation(t *testing.T) {
	cfg, err := config.Load(promConfig, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	targets := map[string]*httptest.Server{}
	// Explicit timestamps a little in the past (the translation writes
	// target_info samples from the oldest timestamp of a request on).
	stamped := strings.ReplaceAll(textTarget, "TS", fmt.Sprint(time.Now().Add(-30*time.Second).UnixMilli()))
	for job, body := range map[string]struct{ ct, body string }{
		"text":        {"text/plain; version=0.0.4; charset=utf-8", stamped},
		"openmetrics": {"application/openmetrics-text; version=1.0.0; charset=utf-8", openMetricsTarget},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", body.ct)
			_, _ = io.WriteString(w, body.body)
		}))
		t.Cleanup(srv.Close)
		targets[job] = srv
	}

	// Direct: Prometheus's scrape manager.
	direct := newStore()
	mgr, err := scrape.NewManager(&scrape.Options{DiscoveryReloadOnStartup: true}, slog.New(slog.DiscardHandler), nil, nil, direct, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	tsets := make(chan map[string][]*targetgroup.Group, 1)
	groups := map[string][]*targetgroup.Group{}
	for job, srv := range targets {
		u, _ := url.Parse(srv.URL)
		groups[job] = []*targetgroup.Group{{Source: job, Targets: []model.LabelSet{{model.AddressLabel: model.LabelValue(u.Host)}}}}
	}
	tsets <- groups
	go func() { _ = mgr.Run(tsets) }()
	t.Cleanup(mgr.Stop)

	// Through trellis: Prometheus's OTLP receiver, over HTTP directly and
	// behind pdata's gRPC server.
	viaHTTP, viaGRPC := newStore(), newStore()
	cfgFunc := func() config.Config { return *cfg }
	handler := func(s *store) http.Handler {
		return remote.NewOTLPWriteHandler(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), s, cfgFunc, remote.OTLPOptions{LookbackDelta: 5 * time.Minute})
	}
	httpRecv := httptest.NewServer(handler(viaHTTP))
	t.Cleanup(httpRecv.Close)
	grpcAddr := startPdataGRPC(t, handler(viaGRPC))

	bin := buildScraper(t)
	var staticTargets []string
	for job, srv := range targets {
		staticTargets = append(staticTargets, "--target.static=job="+job+",url="+srv.URL+"/metrics,interval=1s,timeout=1s")
	}
	runScraper(t, bin, append(staticTargets, "--otlp.endpoint="+grpcAddr)...)
	runScraper(t, bin, append(staticTargets, "--otlp.protocol=http/protobuf", "--otlp.endpoint="+httpRecv.URL+"/api/v1/otlp/v1/metrics")...)

	// Two scrapes of each target stored on every side (the second is steady
	// state: scrape_series_added 0).
	wantSeries := func(s *store, prefix string) func() bool {
		return func() bool {
			got, _ := s.snapshot()
			for _, job := range []string{"text", "openmetrics"} {
				k := fmt.Sprintf(`{__name__="scrape_series_added", instance="%s", job="%s"}`, hostOf(targets[job].URL), job)
				if v, ok := got[k]; !ok || v.v != 0 {
					return false
				}
			}
			return true
		}
	}
	for name, s := range map[string]*store{"direct": direct, "otlp/grpc": viaGRPC, "otlp/http": viaHTTP} {
		if !poll(90*time.Second, wantSeries(s, name)) {
			got, _ := s.snapshot()
			t.Fatalf("%s: no steady-state scrape of both targets stored within 90 s; stored:\n%s", name, strings.Join(sortedKeys(got), "\n"))
		}
	}
	// Series keys without the targets' random ports.
	normalize := func(m map[string]sample) map[string]sample {
		out := map[string]sample{}
		for k, v := range m {
			for job, srv := range targets {
				host := hostOf(srv.URL)
				k = strings.ReplaceAll(k, `"`+host+`"`, `"`+strings.ToUpper(job)+`"`)
				k = strings.ReplaceAll(k, `server_port="`+host[strings.LastIndexByte(host, ':')+1:]+`"`, `server_port="PORT"`)
			}
			out[k] = v
		}
		return out
	}
	want, _ := direct.snapshot()
	want = normalize(want)
	for name, s := range map[string]*store{"otlp/grpc": viaGRPC, "otlp/http": viaHTTP} {
		got, _ := s.snapshot()
		got = normalize(got)
		diffs := compare(want, got)
		var unexpected []string
		for _, d := range diffs {
			if expectedDifferences[d.series] != d.kind {
				unexpected = append(unexpected, d.String())
			}
		}
		for series, kind := range expectedDifferences {
			if !slices.ContainsFunc(diffs, func(d difference) bool { return d.series == series && d.kind == kind }) {
				unexpected = append(unexpected, "documented but not seen: "+kind+" "+series)
			}
		}
		if len(unexpected) > 0 {
			t.Errorf("%s: %d unexpected differences from a direct scrape:\n%s", name, len(unexpected), strings.Join(unexpected, "\n"))
		}
		var all []string
		for _, d := range diffs {
			all = append(all, d.String())
		}
		t.Logf("%s: %d series direct, %d through OTLP; differences:\n%s", name, len(want), len(got), strings.Join(all, "\n"))
	}
}

// difference is one series that differs between the two stores.
type difference struct{ series, kind, detail string }

func (d difference) String() string { return d.kind + " " + d.series + " " + d.detail }

// compare lists the series only one side has, and the values that differ
// (scrape_duration_seconds is compared by presence only).
func compare(direct, otlp map[string]sample) []difference {
	var out []difference
	for _, k := range sortedKeys(direct) {
		o, ok := otlp[k]
		switch {
		case !ok:
			out = append(out, difference{k, "only direct", ""})
		case strings.Contains(k, `__name__="scrape_duration_seconds"`):
		case !sameValue(direct[k], o):
			out = append(out, difference{k, "value", fmt.Sprintf("direct %v, otlp %v", direct[k].v, o.v)})
		}
	}
	for _, k := range sortedKeys(otlp) {
		if _, ok := direct[k]; !ok {
			out = append(out, difference{k, "only otlp", ""})
		}
	}
	return out
}

func sameValue(a, b sample) bool {
	return a.hist == b.hist && (a.v == b.v || a.v != a.v && b.v != b.v) // NaN equals NaN
}

func sortedKeys(m map[string]sample) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func hostOf(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// pdataServer is an OTLP/gRPC metrics receiver built on pdata's gRPC server,
// as the Collector's: it hands every request on to next (Prometheus's OTLP
// receiver) as OTLP/HTTP.
type pdataServer struct {
	pmetricotlp.UnimplementedGRPCServer
	next http.Handler
}

func (s *pdataServer) Export(_ context.Context, req pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	body, err := req.MarshalProto()
	if err != nil {
		return pmetricotlp.NewExportResponse(), err
	}
	hr := httptest.NewRequest(http.MethodPost, "/api/v1/otlp/v1/metrics", bytes.NewReader(body))
	hr.Header.Set("Content-Type", "application/x-protobuf")
	rec := httptest.NewRecorder()
	s.next.ServeHTTP(rec, hr)
	if rec.Code/100 != 2 {
		return pmetricotlp.NewExportResponse(), fmt.Errorf("prometheus OTLP receiver: %d %s", rec.Code, rec.Body.String())
	}
	return pmetricotlp.NewExportResponse(), nil
}

func startPdataGRPC(t *testing.T, next http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pmetricotlp.RegisterGRPCServer(srv, &pdataServer{next: next})
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// buildScraper builds the daemon from the repository (its own module, with the
// Makefile's grpcnotrace tag).
func buildScraper(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "otel-shoot-scraper")
	cmd := exec.Command("go", "build", "-tags", "grpcnotrace", "-o", bin, "./cmd/otel-shoot-scraper")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "GOWORK=", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/otel-shoot-scraper: %v\n%s", err, out)
	}
	return bin
}

// runScraper starts the daemon with its defaults except for discovery (off),
// the targets and the receiver, keeping every series.
func runScraper(t *testing.T, bin string, args ...string) {
	t.Helper()
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, []byte("default: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--discovery.kubernetes=false", "--node.name=compat", "--rules.file=" + rules,
		"--otlp.insecure", "--queue.dir=" + filepath.Join(dir, "queue"), "--web.listen-address=", "--otlp.retry.max=1s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("otel-shoot-scraper %v:\n%s", args, stderr.String())
		}
	})
}
