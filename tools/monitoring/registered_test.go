package monitoring

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// root is the repository, seen from this package.
const root = "../.."

// family is a metric family a daemon registers.
type family struct {
	name   string
	typ    string // counter, gauge, histogram, summary, untyped; "" when unknown
	labels []string
	pos    string // where it is defined
}

// series reports whether name is one of the family's series (name, or a
// histogram's or summary's _bucket, _sum, _count) and which extra label it has.
func (f *family) series(name string) (extra string, ok bool) {
	switch {
	case name == f.name:
		if f.typ == "summary" {
			return "quantile", true
		}
		return "", true
	case (f.typ == "histogram" || f.typ == "summary") && (name == f.name+"_sum" || name == f.name+"_count"):
		return "", true
	case f.typ == "histogram" && name == f.name+"_bucket":
		return "le", true
	}
	return "", false
}

// extraRegistries: registries a daemon's binary serves besides its own:
// egress-reporter's `probe` command is the egress-probe daemon (its own Spec
// name, so namespace trellis_egress_probe), whose pods the egress-reporter
// dashboard and rules watch too.
var extraRegistries = map[string][]string{
	"egress-reporter": {"egress-probe"},
}

func metricNamespace(daemon string) string {
	return "trellis_" + strings.ReplaceAll(daemon, "-", "_")
}

// daemons lists the daemons: the folders under cmd/.
func daemons(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no daemons under cmd/")
	}
	return out
}

// registered returns the metric families the daemon registers: the golden files
// of the metrics conformance check (internal/metricstest/testdata/<daemon>.txt,
// name, type and label names per line), which every daemon's TestMetrics compares
// with the registry its run function builds, plus the Go runtime and process
// collectors every daemon registry carries (read from client_golang itself).
func registered(t *testing.T, daemon string) map[string]*family {
	t.Helper()
	fams := map[string]*family{}
	add := func(f *family) {
		if old, ok := fams[f.name]; ok && (old.typ != f.typ || !slices.Equal(old.labels, f.labels)) {
			t.Errorf("%s: metric %s defined twice, differently (%s and %s)", daemon, f.name, old.pos, f.pos)
		}
		fams[f.name] = f
	}
	for _, name := range append([]string{daemon}, extraRegistries[daemon]...) {
		path := filepath.Join(root, "internal", "metricstest", "testdata", name+".txt")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v (the metrics conformance golden file)", daemon, err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			fields := strings.Fields(line)
			if len(fields) < 2 || len(fields) > 3 {
				t.Fatalf("%s:%d: want name type [labels]: %q", path, i+1, line)
			}
			f := &family{name: fields[0], typ: fields[1], pos: fmt.Sprintf("%s:%d", strings.TrimPrefix(path, root+"/"), i+1)}
			if len(fields) == 3 {
				f.labels = strings.Split(fields[2], ",")
			}
			add(f)
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		f := &family{name: mf.GetName(), typ: strings.ToLower(mf.GetType().String()), pos: "client_golang collectors"}
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			f.labels = append(f.labels, lp.GetName())
		}
		add(f)
	}
	return fams
}

// TestRegisteredMetrics: the golden files hold what the query checks need (types,
// labels, histograms, the probe's namespace, the common collectors), so a missing
// or truncated file cannot make them vacuous.
func TestRegisteredMetrics(t *testing.T) {
	want := map[string]map[string][]string{
		// a Desc through a helper, variadic labels
		"wg-gateway": {"trellis_wg_gateway_backend_packets_total": {"backend", "direction"}, "trellis_wg_gateway_backends": nil},
		// labels appended in a switch: their union
		"zone-flow-tracer": {"trellis_zone_flow_tracer_bytes_total": {"destination_zone", "direction", "namespace", "source_zone", "workload"}},
		// a library package of the daemon (otlpexport), GaugeFunc
		"otel-shoot-scraper": {"trellis_otel_shoot_scraper_queue_oldest_age_seconds": nil, "trellis_otel_shoot_scraper_scrapes_total": {"job", "result"}},
		// the probe's namespace, build_info for both
		"egress-reporter": {"trellis_egress_probe_attempts_total": {"family", "method", "result", "server"}, "trellis_egress_probe_build_info": {"goversion", "revision", "version"}, "trellis_egress_reporter_build_info": {"goversion", "revision", "version"}},
		"mr-signer":       {"trellis_mr_signer_quarantined_managed_resources": nil, "go_goroutines": nil, "process_start_time_seconds": nil},
		"event-watcher":   {"trellis_event_watcher_drain_duration_seconds": {"result"}},
	}
	for _, d := range daemons(t) {
		fams := registered(t, d)
		if len(fams) < 10 {
			t.Errorf("%s: only %d metric families found", d, len(fams))
		}
		for name, labels := range want[d] {
			f, ok := fams[name]
			switch {
			case !ok:
				t.Errorf("%s: %s not found", d, name)
			case !slices.Equal(f.labels, labels):
				t.Errorf("%s: %s labels %v, want %v", d, name, f.labels, labels)
			}
		}
		for _, f := range fams {
			if strings.HasPrefix(f.name, "trellis_") && !strings.HasPrefix(f.name, metricNamespace(d)+"_") && !strings.HasPrefix(f.name, "trellis_egress_probe_") {
				t.Errorf("%s: %s outside the daemon's namespace (%s)", d, f.name, f.pos)
			}
			if f.typ == "" {
				t.Errorf("%s: %s: type unknown (%s)", d, f.name, f.pos)
			}
		}
	}
	if _, ok := registered(t, "wg-gateway")["trellis_wg_gateway_backend_handshakes_total"]; !ok {
		t.Error("wg-gateway: handshakes counter missing")
	}
	if f := registered(t, "wg-gateway")["trellis_wg_gateway_backend_handshakes_total"]; f != nil && f.typ != "counter" {
		t.Errorf("handshakes counter typed %q", f.typ)
	}
}
