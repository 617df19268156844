package zoneflow

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// startDaemon runs the daemon's command in-process with a fake conntrack source
// and returns its web address; the daemon stops (and must return nil) in cleanup.
func startDaemon(t *testing.T, src FlowSource, args ...string) string {
	t.Helper()
	o := NewOptions()
	addr := make(chan string, 1)
	cmd := daemon.NewCommand(daemon.Spec{
		Name: Name, ListenAddress: "127.0.0.1:0", Options: []daemon.Options{o}, Stderr: io.Discard,
		Run: func(ctx context.Context, d *daemon.Daemon) error {
			addr <- d.WebAddr().String()
			return runWith(ctx, d, o, testenv.Get(t).Client, src)
		},
	})
	cmd.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("daemon: %v", err)
		}
	})
	select {
	case a := <-addr:
		return a
	case err := <-done:
		t.Fatalf("daemon ended: %v", err)
	}
	return ""
}

// waitFirstDump waits until the daemon is ready and has finished a dump, so that
// flows the test adds afterwards are new to it (the first dump only sets the
// baseline of the flows already open). /readyz alone is not enough: it answers
// before the daemon has registered its checks.
func waitFirstDump(t *testing.T, web string) {
	t.Helper()
	testkit.Eventually(t, "readiness and a first dump", func() bool {
		if code, _ := testkit.Get("http://" + web + "/readyz"); code != 200 {
			return false
		}
		_, body := testkit.Get("http://" + web + "/metrics")
		v, _ := metricValue(body, "trellis_zone_flow_tracer_dumps_total", "result", "success")
		return v >= 1
	})
}

// metricValue finds the series of name carrying every given label pair.
func metricValue(body, name string, labels ...string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(line, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
			}
		}
		if ok {
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// fakeProcFS is a procfs with nf_conntrack_acct on.
func fakeProcFS(t *testing.T) string {
	dir := t.TempDir()
	p := filepath.Join(dir, conntrack.AccountingPath)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

type testCluster struct {
	nodeA, nodeB string
}

// createCluster makes two Nodes in zones a and b with InternalIPs and podCIDRs,
// and pods as a kubelet would report them: on node A a Deployment's pod and a
// StatefulSet's pod, on node B another Deployment's pod.
func createCluster(t *testing.T, ns string) testCluster {
	t.Helper()
	env := testenv.Get(t)
	ctx := context.Background()
	c := testCluster{nodeA: ns + "-a", nodeB: ns + "-b"}
	for _, n := range []struct {
		name, zone, ip, cidr, provider string
	}{{c.nodeA, "a", "192.168.50.1", "10.201.0.0/24", "aws:///eu-west-1a/i-0a"}, {c.nodeB, "b", "192.168.50.2", "10.202.0.0/24", "aws:///eu-west-1b/i-0b"}} {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{ZoneLabel: n.zone, "unrelated": "dropped"}},
			Spec:       corev1.NodeSpec{PodCIDR: n.cidr, PodCIDRs: []string{n.cidr}, ProviderID: n.provider},
		}
		created, err := env.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), n.name, metav1.DeleteOptions{}) })
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}, {Type: corev1.NodeHostName, Address: n.name}}
		if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createPod(t, ns, "web-5d4f8c7b9-x1", c.nodeA, "ReplicaSet/web-5d4f8c7b9", "10.201.0.5")
	createPod(t, ns, "db-0", c.nodeA, "StatefulSet/db", "10.201.0.6")
	createPod(t, ns, "api-7c9d6b5f4-y2", c.nodeB, "ReplicaSet/api-7c9d6b5f4", "10.202.0.7")
	return c
}

func createPod(t *testing.T, ns, name, node, owner, ip string) {
	t.Helper()
	env := testenv.Get(t)
	ctx := context.Background()
	pod := podOwnedBy(name, owner)
	pod.Namespace = ns
	pod.Spec = corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	created, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing deletes namespaces in the test API server: remove the pod so that a
	// later test (or -count=2) never sees its IP.
	t.Cleanup(func() {
		zero := int64(0)
		_ = env.Client.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	created.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestEnrichment runs the daemon against the real API server with fake
// conntrack data: Nodes give zones (from the cluster-wide, stripped Node
// informer), this node's Pods give namespaces and workloads, the provider comes
// from the providerID, a pod created later is picked up, and an event overflow
// triggers a resync.
func TestEnrichment(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	c := createCluster(t, ns)
	fake := conntrack.NewFake()
	web := startDaemon(t, fake, "--kubeconfig="+env.Kubeconfig, "--node.name="+c.nodeA, "--web.listen-address=127.0.0.1:0",
		"--path.procfs="+fakeProcFS(t), "--metrics.labels=workload", "--conntrack.dump-interval=100ms", "--log.level=debug")
	waitFirstDump(t, web)

	webPod, dbPod, apiPod := "10.201.0.5", "10.201.0.6", "10.202.0.7"
	mk := func(id uint32, src, dst, rsrc string, ob, rb uint64) conntrack.Flow {
		f := flow(id, addr4(src), addr4(dst), addr4(rsrc), addr4(src), ob, rb)
		return f
	}
	fake.Set(mk(1, webPod, apiPod, apiPod, 1<<30, 1000))       // 1 GiB web -> api, cross-zone
	fake.Set(mk(2, dbPod, "203.0.113.9", "203.0.113.9", 5, 7)) // db -> internet (SNAT)
	fake.Set(mk(3, apiPod, webPod, webPod, 11, 13))            // api (node B) -> web: only web's reply is ours

	var body string
	testkit.Eventually(t, "web's cross-zone bytes", func() bool {
		_, body = testkit.Get("http://" + web + "/metrics")
		v, _ := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "source_zone", "a", "destination_zone", "b", "workload", "deployment/web")
		return v == 1<<30+13
	})
	for _, want := range []struct {
		labels []string
		v      float64
	}{
		{[]string{"source_zone", "a", "destination_zone", "internet", "direction", "egress", "namespace", ns, "workload", "statefulset/db"}, 5},
		{[]string{"source_zone", "internet", "destination_zone", "a", "direction", "ingress", "workload", "statefulset/db"}, 7},
	} {
		if v, ok := metricValue(body, "trellis_zone_flow_tracer_bytes_total", want.labels...); !ok || v != want.v {
			t.Errorf("bytes_total %v = %v, want %v\n%s", want.labels, v, want.v, body)
		}
	}
	if _, ok := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "workload", "deployment/api"); ok {
		t.Error("node B's workload reported on node A")
	}
	// AWS from the providerID: 1 GiB (+13 bytes) cross-zone at $0.02/GiB.
	if v, _ := metricValue(body, "trellis_zone_flow_tracer_cost_dollars_total", "class", "cross-zone"); v < 0.02 || v > 0.0201 {
		t.Errorf("cross-zone cost %v, want 0.02", v)
	}
	if v, _ := metricValue(body, "trellis_zone_flow_tracer_accounting_enabled"); v != 1 {
		t.Error("accounting_enabled not 1")
	}

	var summary FlowSummary
	_, fl := testkit.Get("http://" + web + "/flows")
	if err := json.Unmarshal([]byte(fl), &summary); err != nil {
		t.Fatal(err)
	}
	if summary.Node != c.nodeA || len(summary.Top) == 0 || summary.Top[0].Workload != "deployment/web" || summary.Top[0].DestinationZone != "b" || summary.Top[0].Class != ClassCrossZone {
		t.Fatalf("/flows: %s", fl)
	}

	// A pod that starts later is resolved once the informer has it.
	createPod(t, ns, "late-28930000-zz", c.nodeA, "Job/late-28930000", "10.201.0.8")
	testkit.Eventually(t, "the late pod's workload", func() bool {
		fake.Set(mk(4, "10.201.0.8", apiPod, apiPod, 99, 0))
		_, body = testkit.Get("http://" + web + "/metrics")
		_, ok := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "workload", "cronjob/late")
		return ok
	})

	// A lost DESTROY event and a socket overflow: resync by dump, the vanished
	// flow is counted as lost.
	fake.Destroy(2, true)
	fake.Overflow()
	testkit.Eventually(t, "the resync", func() bool {
		_, body = testkit.Get("http://" + web + "/metrics")
		o, _ := metricValue(body, "trellis_zone_flow_tracer_event_overflows_total")
		l, _ := metricValue(body, "trellis_zone_flow_tracer_flows_lost_total")
		return o == 1 && l == 1
	})
	// A DESTROY event with final counters adds the last bytes.
	f := mk(3, apiPod, webPod, webPod, 11, 20)
	fake.Set(f)
	fake.Destroy(3, false)
	testkit.Eventually(t, "the destroy", func() bool {
		_, body = testkit.Get("http://" + web + "/metrics")
		v, _ := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "source_zone", "a", "destination_zone", "b", "workload", "deployment/web")
		return v == 1<<30+20
	})
}

func addr4(s string) netip.Addr { return netip.MustParseAddr(s) }

// TestBadFlags: every invalid value is reported.
func TestBadFlags(t *testing.T) {
	cmd := NewCommand()
	var out bytes.Buffer
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"--metrics.labels=pod", "--cost.provider=ibm", "--network.same-region-cidrs=nope", "--node.name=x", "--flows.top=0"})
	err := cmd.Execute()
	var ue *daemon.UsageError
	if !errors.As(err, &ue) {
		t.Fatalf("want a usage error, got %v", err)
	}
	// Complete fails first (CIDRs); then Validate names the rest.
	if !strings.Contains(err.Error(), "--network.same-region-cidrs") {
		t.Fatalf("error %v", err)
	}
	cmd = NewCommand()
	cmd.SetArgs([]string{"--metrics.labels=pod", "--cost.provider=ibm", "--node.name=x", "--flows.top=0"})
	err = cmd.Execute()
	for _, flag := range []string{"--metrics.labels", "--cost.provider", "--flows.top"} {
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("error %v does not name %s", err, flag)
		}
	}
}

// TestClusterPods: with --enrich.cluster-pods, pod IPs outside every podCIDR (as
// with the AWS VPC CNI) resolve to their node's zone; without it the remote pod
// is just an in-region address.
func TestClusterPods(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	c := createCluster(t, ns)
	createPod(t, ns, "vpc-web-5d4f8c7b9-a", c.nodeA, "ReplicaSet/vpc-web-5d4f8c7b9", "10.250.0.5")
	createPod(t, ns, "vpc-api-5d4f8c7b9-b", c.nodeB, "ReplicaSet/vpc-api-5d4f8c7b9", "10.250.0.7")
	for _, tc := range []struct {
		flag, zone string
	}{{"--enrich.cluster-pods=true", "b"}, {"--enrich.cluster-pods=false", zoneInRegion}} {
		t.Run(tc.flag, func(t *testing.T) {
			fake := conntrack.NewFake()
			web := startDaemon(t, fake, "--kubeconfig="+env.Kubeconfig, "--node.name="+c.nodeA, "--web.listen-address=127.0.0.1:0",
				"--path.procfs="+fakeProcFS(t), "--metrics.labels=workload", "--conntrack.dump-interval=100ms", tc.flag)
			waitFirstDump(t, web)
			fake.Set(flow(1, addr4("10.250.0.5"), addr4("10.250.0.7"), addr4("10.250.0.7"), addr4("10.250.0.5"), 42, 0))
			testkit.Eventually(t, "the flow", func() bool {
				_, body := testkit.Get("http://" + web + "/metrics")
				v, _ := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "source_zone", "a", "destination_zone", tc.zone, "workload", "deployment/vpc-web")
				return v == 42
			})
		})
	}
}
