package zoneflow

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestBinary builds cmd/zone-flow-tracer and runs it as root against the real API
// server and this machine's own conntrack table (accounting left as it is: the
// test does not change the host's sysctls): it becomes ready, serves /metrics
// with the daemon's series and /flows, and exits 0 on SIGTERM. Bad flags exit 2.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	netnstest.Require(t) // ctnetlink needs CAP_NET_ADMIN
	env := testenv.Get(t)
	bin := testbin.Build(t, Name)

	testbin.UsageError(t, bin, []string{"--metrics.labels=pod", "--node.name=x"}, "--metrics.labels")

	ns := env.Namespace(t)
	c := createCluster(t, ns)
	cmd := exec.Command(bin, "--kubeconfig="+env.Kubeconfig, "--node.name="+c.nodeA, "--web.listen-address=127.0.0.1:0",
		"--conntrack.accounting=false", "--conntrack.dump-interval=200ms", "--log.format=json")
	web := testbin.Start(t, cmd)
	testkit.Eventually(t, "readiness", func() bool { code, _ := testkit.Get("http://" + web + "/readyz"); return code == 200 })
	testkit.Eventually(t, "two dumps", func() bool {
		_, body := testkit.Get("http://" + web + "/metrics")
		v, _ := metricValue(body, "trellis_zone_flow_tracer_dumps_total", "result", "success")
		return v >= 2
	})
	_, body := testkit.Get("http://" + web + "/metrics")
	for _, series := range []string{"trellis_zone_flow_tracer_build_info", "trellis_zone_flow_tracer_tracked_flows", "trellis_zone_flow_tracer_accounting_enabled",
		"trellis_zone_flow_tracer_dump_duration_seconds_count", `trellis_zone_flow_tracer_price_dollars_per_byte{class="cross-zone"} 1.862645149230957e-11`} {
		if !strings.Contains(body, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	code, fl := testkit.Get("http://" + web + "/flows")
	var s FlowSummary
	if code != 200 || json.Unmarshal([]byte(fl), &s) != nil || s.Node != c.nodeA {
		t.Fatalf("/flows %d: %s", code, fl)
	}
	testbin.Terminate(t, cmd)
}
