package egressreporter

import (
	"context"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// startBinary runs bin with args and returns the process and its web address
// (from the "serving web endpoints" log line).
func startBinary(t *testing.T, bin string, args ...string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--web.listen-address=127.0.0.1:0", "--log.format=json")...)
	return cmd, testbin.Start(t, cmd)
}

// TestBinary builds cmd/egress-reporter and runs the probe (against a loopback
// STUN server) and two reporter replicas (shoot mode, leader election, sources
// probe and static) against the real API server: the probe annotates its Node,
// one replica leads and publishes the merged CIDRs in shoot-info; when it gets
// SIGTERM the other takes over and follows a change of the node's address. All
// are ready, serve their metrics, and exit 0 on SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	env := testenv.Get(t)
	ctx := context.Background()
	bin := testbin.Build(t, "egress-reporter")

	// Bad flags: exit 2 with every problem named.
	for _, args := range [][]string{
		{"--egress.sources=magic", "--static.cidrs=nope", "--hysteresis.add=-1s"},
		{"probe", "--probe.families=ipv5", "--node.name=x"},
		{"probe", "--node.name=", "--probe.stun.servers=", "--probe.interval=0s"},
	} {
		testbin.UsageError(t, bin, args, "--")
	}

	ns := env.Namespace(t)
	node := "binary-" + ns
	if _, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Nodes().Delete(context.Background(), node, metav1.DeleteOptions{})
		_ = env.Client.CoreV1().ConfigMaps(ShootInfoNamespace).Delete(context.Background(), ShootInfoName, metav1.DeleteOptions{})
	})
	stun := probetest.NewSTUNServer(t, "udp4")
	stun.Set(probetest.Answer, netip.MustParseAddr("203.0.113.50"))

	probe, probeWeb := startBinary(t, bin, "probe", "--kubeconfig="+env.Kubeconfig, "--node.name="+node,
		"--probe.stun.servers="+stun.Addr, "--probe.interval=200ms", "--probe.timeout=2s")
	reporterArgs := []string{"--kubeconfig=" + env.Kubeconfig, "--egress.sources=probe,static", "--static.cidrs=198.51.100.0/24",
		"--hysteresis.add=0s", "--hysteresis.remove=1s", "--sync.interval=200ms",
		"--leader-elect", "--leader-elect.namespace=" + ns, "--leader-elect.lease-duration=3s", "--leader-elect.renew-deadline=2s", "--leader-elect.retry-period=200ms"}
	// Two replicas, as the Deployment runs them.
	a, webA := startBinary(t, bin, reporterArgs...)
	b, webB := startBinary(t, bin, reporterArgs...)

	egress := func() string {
		cm, err := env.Client.CoreV1().ConfigMaps(ShootInfoNamespace).Get(ctx, ShootInfoName, metav1.GetOptions{})
		if err != nil {
			return ""
		}
		return cm.Data[EgressCIDRsKey]
	}
	testkit.Eventually(t, "the first egressCIDRs", func() bool { return egress() == "198.51.100.0/24,203.0.113.50/32" })
	leads := func(web string) bool {
		_, m := testkit.Get("http://" + web + "/metrics")
		return strings.Contains(m, "\ntrellis_egress_reporter_leader 1\n")
	}
	var leader, follower *exec.Cmd
	var web, followerWeb string
	testkit.Eventually(t, "one leader", func() bool {
		la, lb := leads(webA), leads(webB)
		switch {
		case la && !lb:
			leader, follower, web, followerWeb = a, b, webA, webB
		case lb && !la:
			leader, follower, web, followerWeb = b, a, webB, webA
		default:
			return false
		}
		return true
	})
	for _, w := range []string{webA, webB, probeWeb} {
		testkit.Eventually(t, "readiness of "+w, func() bool { code, _ := testkit.Get("http://" + w + "/readyz"); return code == 200 })
	}
	_, metrics := testkit.Get("http://" + web + "/metrics")
	for _, want := range []string{"trellis_egress_reporter_build_info{", "trellis_egress_reporter_changes_total ",
		`trellis_egress_reporter_published_cidrs{family="ipv4"} 2`, `trellis_egress_reporter_applies_total{result="success"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("reporter metrics lack %q", want)
		}
	}

	// The leader goes (SIGTERM, exit 0, Lease released); the follower takes over
	// and follows the node's new address.
	testbin.Terminate(t, leader)
	testkit.Eventually(t, "the follower to lead", func() bool { return leads(followerWeb) })
	stun.Set(probetest.Answer, netip.MustParseAddr("203.0.113.51"))
	testkit.Eventually(t, "the changed egressCIDRs", func() bool { return egress() == "198.51.100.0/24,203.0.113.51/32" })
	n, err := env.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil || n.Annotations[AddressAnnotation] != "203.0.113.51" {
		t.Fatalf("node annotations %v, %v", n.Annotations, err)
	}
	_, metrics = testkit.Get("http://" + probeWeb + "/metrics")
	for _, want := range []string{"trellis_egress_probe_build_info{", `trellis_egress_probe_attempts_total{family="ipv4",method="stun",result="success",server="` + stun.Addr + `"}`,
		`trellis_egress_probe_address_info{address="203.0.113.51",family="ipv4"} 1`, `trellis_egress_probe_node_writes_total{result="success"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("probe metrics lack %q", want)
		}
	}
	events, err := env.Client.CoreV1().Events(ShootInfoNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, e := range events.Items {
		if e.Reason == ReasonChanged && e.InvolvedObject.Name == ShootInfoName {
			changed++
		}
	}
	if changed == 0 {
		t.Error("no EgressCIDRsChanged Event")
	}

	testbin.Terminate(t, follower)
	testbin.Terminate(t, probe)
	// The Lease was released on shutdown.
	lease, err := env.Client.CoordinationV1().Leases(ns).Get(ctx, "trellis-"+Name, metav1.GetOptions{})
	if err != nil || (lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "") {
		t.Fatalf("lease after shutdown: %v, %v", lease, err)
	}
}
