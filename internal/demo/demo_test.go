package demo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestDemo builds the six daemons and runs the demo until every scenario
// reached its proof point (80 s deadline): the gateway forwarded both clients'
// handshakes to their own servers and dropped the unknown one's, the scheduled
// event became condition + taint and the pod was evicted, OTLP points arrived,
// the tampered ManagedResource was quarantined, egressCIDRs appeared in
// shoot-info, and (as root) both zone-flow-tracers counted cross-zone bytes,
// each direction once. Then every daemon must exit 0 on SIGTERM and the work
// and API server folders must be gone.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs six binaries; skipped in -short mode")
	}
	assets := testenv.AssetsDir()
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		if testenv.Required() {
			t.Fatalf("real kube-apiserver unavailable: %v", err)
		}
		t.Skipf("real kube-apiserver unavailable (run `make testenv`): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, Config{Assets: assets, Duration: 80 * time.Second, UntilProven: true, Refresh: time.Second, Out: &out})
	if err != nil {
		t.Fatalf("demo did not start: %v\n%s", err, out.String())
	}
	if len(rep.Scenarios) != len(Daemons) {
		t.Fatalf("%d scenarios reported, want %d\n%s", len(rep.Scenarios), len(Daemons), out.String())
	}
	for i, s := range rep.Scenarios {
		if s.Name != Daemons[i] {
			t.Errorf("scenario %d is %s, want %s", i, s.Name, Daemons[i])
		}
		switch {
		case s.Name == "zone-flow-tracer" && os.Geteuid() != 0:
			if !strings.Contains(s.Skipped, "needs root") {
				t.Errorf("zone-flow-tracer as non-root: skipped %q, want a reason", s.Skipped)
			}
		case s.Skipped != "" || s.Err != "" || !s.Proven:
			t.Errorf("%s not proven (skipped %q, error %q):\n  %s", s.Name, s.Skipped, s.Err, strings.Join(s.Lines, "\n  "))
		}
	}
	if !rep.AllProven {
		t.Error("report says not every scenario was proven")
	}
	for _, s := range rep.Stops {
		if !strings.HasSuffix(s, ": exited 0") {
			t.Errorf("stop: %s", s)
		}
	}
	// wg-gateway, event-watcher, otel-shoot-scraper, mr-signer, the egress probe
	// and reporter, and as root a zone-flow-tracer per node.
	wantProcs := 6
	if os.Geteuid() == 0 {
		wantProcs += 2
	}
	if len(rep.Stops) != wantProcs {
		t.Errorf("%d daemon processes stopped, want %d: %v", len(rep.Stops), wantProcs, rep.Stops)
	}
	for _, dir := range []string{rep.WorkDir, rep.EnvDir} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s left behind (%v)", dir, err)
		}
	}
	if t.Failed() {
		t.Logf("demo output:\n%s", out.String())
	} else {
		t.Logf("all proven after %s", rep.Elapsed.Round(time.Second))
	}
}

func TestMetricsSum(t *testing.T) {
	m := metrics(`# TYPE x_total counter
x_total{a="1",b="2"} 3
x_total{a="1",b="3"} 4
x_total_other{a="1"} 100
x_total2 7
y 5
x_total{a="2"} 1e3
`)
	for _, tc := range []struct {
		labels []string
		want   float64
	}{
		{nil, 1007},
		{[]string{"a", "1"}, 7},
		{[]string{"a", "1", "b", "3"}, 4},
		{[]string{"b", "9"}, 0},
	} {
		if got := m.sum("x_total", tc.labels...); got != tc.want {
			t.Errorf("sum(x_total, %v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
	if got := m.sum("y"); got != 5 {
		t.Errorf("sum(y) = %v", got)
	}
}
