package metricstest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestEveryDaemonHasGolden: every daemon under cmd/ has its golden file, so a new
// daemon cannot skip the check, and every golden file belongs to a daemon (or to
// egress-reporter's probe, the egress-probe daemon).
func TestEveryDaemonHasGolden(t *testing.T) {
	root := Root(t)
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"egress-probe"}
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) < 7 {
		t.Fatalf("only %v under cmd/", names)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("testdata", n+".txt")); err != nil {
			t.Errorf("%s: no golden file (call metricstest.Check in internal/<daemon>/metrics_conformance_test.go, then -update): %v", n, err)
		}
	}
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*.txt"))
	for _, g := range goldens {
		if n := strings.TrimSuffix(filepath.Base(g), ".txt"); !slices.Contains(names, n) {
			t.Errorf("%s belongs to no daemon", g)
		}
	}
}

// TestChecksCatch: each check reports what it is there for.
func TestChecksCatch(t *testing.T) {
	const ns = "trellis_x"
	reg := prometheus.NewRegistry()
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests", Help: "h"}, []string{"code"})
	latency := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "latency_milliseconds", Help: "h"})
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "queue_entries", Help: "h"})
	other := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "trellis_y", Name: "things", Help: "h"})
	reg.MustRegister(requests, latency, queue, other)
	requests.WithLabelValues("200").Inc()
	fams := gather(t, reg, nil)

	doc := filepath.Join(t.TempDir(), "x.md")
	if err := os.WriteFile(doc, []byte(strings.Join([]string{
		"# x", "", "## Metrics", "", "Namespace `trellis_x`:", "",
		"| metric | type | labels |", "|---|---|---|",
		"| `requests` | counter | result (`Success`, `not_found`) |",
		"| `latency_milliseconds` | histogram | |",
		"| `gone_total` | counter | |",
		"", "## Next", "",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(slices.Concat(checkNames(ns, fams), checkLint(reg), checkDoc(doc, ns, fams)), "\n")
	for _, want := range []string{
		"trellis_y_things: not in the daemon's namespace",                  // namespace
		"lint: trellis_x_requests: counter metrics should have \"_total\"", // lint
		"lint: trellis_x_latency_milliseconds: use base unit",              // lint: units
		"trellis_x_queue_entries is not in the metrics table",              // missing row
		"trellis_x_latency_milliseconds is a gauge, the table says \"histogram\"",
		"trellis_x_requests has the label code, not named",
		"trellis_x_gone_total is in the table but not registered",
		"label result has the value \"Success\": label values are snake_case",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("not reported: %s", want)
		}
	}
	if strings.Contains(problems, `value "not_found"`) {
		t.Errorf("snake_case value reported:\n%s", problems)
	}
	if t.Failed() {
		t.Logf("problems:\n%s", problems)
	}
}
