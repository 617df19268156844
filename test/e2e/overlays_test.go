package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/trellis-garden/trellis/internal/cluster"
)

// metricValue sums the samples of the metric whose name is name or ends in
// "_"+name (the daemons prefix their namespace) and whose labels include every
// `key="value"` of labels, from a Prometheus text endpoint. found is false when
// no sample matched.
func metricValue(url, name string, labels ...string) (sum float64, found bool, err error) {
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(url)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, false, fmt.Errorf("%s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		n := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			n = l[:i]
		}
		if n != name && !strings.HasSuffix(n, "_"+name) {
			continue
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(l, lb)
		}
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found, sc.Err()
}

// proveSingleNode: the single-node overlay applied over local (one replica
// each, the monitoring component's dashboards, requests made small) rolls every
// workload and each Deployment's PodDisruptionBudget, as evaluated by the real
// disruption controller, allows evicting its one pod: a drain is never blocked.
func proveSingleNode(ctx context.Context, t *testing.T, tag string) {
	applyOverlay(ctx, t, "single-node", tag)
	waitWorkloadsReady(ctx, t, 4*time.Minute)
	cs := env.cl.Client
	n := 0
	for _, u := range env.objects {
		if u.GetKind() != "PodDisruptionBudget" {
			continue
		}
		ns, name := u.GetNamespace(), u.GetName()
		if err := poll(ctx, 60*time.Second, func() error {
			p, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s := p.Status
			if s.ObservedGeneration < p.Generation || s.ExpectedPods != 1 || s.DisruptionsAllowed < 1 {
				return fmt.Errorf("PDB %s/%s: generation %d observed %d, expected pods %d, healthy %d, disruptions allowed %d",
					ns, name, p.Generation, s.ObservedGeneration, s.ExpectedPods, s.CurrentHealthy, s.DisruptionsAllowed)
			}
			return nil
		}); err != nil {
			t.Error(err)
			continue
		}
		n++
	}
	if n == 0 {
		t.Fatal("the single-node overlay has no PodDisruptionBudget")
	}
	dash, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{LabelSelector: "grafana_dashboard"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d PodDisruptionBudgets each allow evicting their one pod; %d dashboard ConfigMaps", n, len(dash.Items))
}

// queuePatch is the e2e's patch of the shoot overlay: otel-shoot-scraper's
// queue on a hostPath (a folder owned by the daemon's user, as a node's
// provisioning would create it), so that it outlives the pod.
func queuePatch(dir string) string {
	return fmt.Sprintf(`  - target: {kind: DaemonSet, name: otel-shoot-scraper}
    patch: |-
      - op: replace
        path: /spec/template/spec/volumes/0
        value: {name: queue, hostPath: {path: %q, type: Directory}}
`, dir)
}

// proveShoot applies the shoot overlay over single-node: the per-node
// DaemonSets, here with the scraper's queue on a hostPath.
func proveShoot(ctx context.Context, t *testing.T, tag string) {
	dir, err := env.cl.HostPathDir("otel-shoot-scraper")
	if err != nil {
		t.Fatal(err)
	}
	applyOverlay(ctx, t, "shoot", tag, queuePatch(dir))
	waitWorkloadsReady(ctx, t, 4*time.Minute)
	ds, err := env.cl.Client.AppsV1().DaemonSets("kube-system").Get(ctx, "otel-shoot-scraper", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.Name == "queue" && (v.HostPath == nil || v.HostPath.Path != dir) {
			t.Fatalf("otel-shoot-scraper's queue volume is %+v, want hostPath %s", v.VolumeSource, dir)
		}
	}
	n := 0
	for _, u := range workloads() {
		if u.GetKind() == "DaemonSet" {
			n++
		}
	}
	t.Logf("%d DaemonSets Ready in kube-system; otel-shoot-scraper's queue on hostPath %s", n, dir)
}

// scraperPod returns the running, not terminating otel-shoot-scraper pod.
func scraperPod(ctx context.Context) (*corev1.Pod, error) {
	pods, err := env.cl.Client.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=otel-shoot-scraper"})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.Spec.NodeName == cluster.NodeName {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no running otel-shoot-scraper pod (%d pods)", len(pods.Items))
}

func scaleReceiver(ctx context.Context, t *testing.T, replicas int32) {
	t.Helper()
	cs := env.cl.Client
	if _, err := cs.AppsV1().Deployments("trellis-e2e").UpdateScale(ctx, "otlp", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "otlp", Namespace: "trellis-e2e"},
		Spec:       autoscalingv1.ScaleSpec{Replicas: replicas},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 90*time.Second, func() error {
		pods, err := cs.CoreV1().Pods("trellis-e2e").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=otlp"})
		if err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
					ready++
				}
			}
		}
		if replicas == 0 && len(pods.Items) != 0 {
			return fmt.Errorf("%d receiver pods left", len(pods.Items))
		}
		if replicas > 0 && ready != int(replicas) {
			return fmt.Errorf("%d of %d receiver pods ready", ready, replicas)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// receiverTimes returns the distinct timestamps (ms) the receiver stand-in got
// for metric.
func receiverTimes(metric string) ([]int64, error) {
	var ts []int64
	err := httpJSON("http://198.19.0.52:8080/times?metric="+metric, &ts)
	return ts, err
}

// proveOtelQueue: otel-shoot-scraper "loses nothing when the receiver is down",
// also across the re-creation of its pod. The receiver (a Deployment behind a
// Service) is scaled to zero; the scraper queues its scrapes on its hostPath
// volume; its pod is deleted and the DaemonSet starts a new one, which finds
// the queue; the receiver comes back. Proven from the receiver's side: the
// scrape timestamps of one kubelet series, from the last one delivered before
// the outage to the first one scraped after it, have no gap longer than the
// scrape interval allows except across the pod's re-creation (no scrapes while
// no pod runs), and the scrapes the deleted pod took during the outage (which
// only it ever held) arrive after the receiver is back.
func proveOtelQueue(ctx context.Context, t *testing.T) {
	const interval = 5 * time.Second // --scrape.interval of the e2e patch
	// One series that every kubelet scrape has (no exposition timestamps: the
	// data point's time is the scrape's).
	var st struct {
		ByMetric map[string]int64 `json:"byMetric"`
	}
	if err := httpJSON("http://198.19.0.52:8080/stats", &st); err != nil {
		t.Fatal(err)
	}
	metric := ""
	for _, m := range []string{"kubelet_running_pods", "kubelet_running_containers", "kubelet_node_name"} {
		if st.ByMetric[m] > 0 {
			metric = m
			break
		}
	}
	if metric == "" {
		var ms []string
		for m := range st.ByMetric {
			if strings.HasPrefix(m, "kubelet_") {
				ms = append(ms, m)
			}
		}
		sort.Strings(ms)
		if len(ms) == 0 {
			t.Fatalf("the receiver has no kubelet metric: %v", st.ByMetric)
		}
		metric = ms[0]
	}
	var before []int64
	if err := poll(ctx, 60*time.Second, func() error {
		var err error
		if before, err = receiverTimes(metric); err != nil {
			return err
		}
		if len(before) < 2 {
			return fmt.Errorf("%d scrapes of %s delivered", len(before), metric)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	scaleReceiver(ctx, t, 0)
	last := before[len(before)-1]
	if ts, err := receiverTimes(metric); err == nil && len(ts) > 0 {
		last = ts[len(ts)-1]
	}
	downAt := time.Now()
	old, err := scraperPod(ctx)
	if err != nil {
		t.Fatal(err)
	}
	metricsURL := func(p *corev1.Pod) string { return "http://" + p.Status.PodIP + ":8083/metrics" }
	var queued float64
	if err := poll(ctx, 90*time.Second, func() error {
		v, found, err := metricValue(metricsURL(old), "queue_entries")
		if err != nil {
			return err
		}
		// At least two scrapes taken in the outage, queued by this pod only.
		if !found || v < 2 || time.Since(downAt) < 2*interval+time.Second {
			return fmt.Errorf("queue_entries %v (found %v) %s into the outage", v, found, time.Since(downAt).Round(time.Second))
		}
		queued = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deleteAt := time.Now()
	if err := env.cl.Client.CoreV1().Pods("kube-system").Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var fresh *corev1.Pod
	if err := poll(ctx, 2*time.Minute, func() error {
		p, err := scraperPod(ctx)
		if err != nil {
			return err
		}
		if p.UID == old.UID {
			return fmt.Errorf("the old pod still runs")
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				fresh = p
				return nil
			}
		}
		return fmt.Errorf("new pod %s not Ready", p.Name)
	}); err != nil {
		t.Fatal(err)
	}
	readyAt := time.Now()
	// The new pod starts from the queue the old one left, and adds to it.
	var after float64
	if err := poll(ctx, 90*time.Second, func() error {
		v, found, err := metricValue(metricsURL(fresh), "queue_entries")
		if err != nil {
			return err
		}
		if !found || v <= queued {
			return fmt.Errorf("the new pod's queue_entries %v, the old pod had %v", v, queued)
		}
		after = v
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	scaleReceiver(ctx, t, 1)
	upAt := time.Now()
	var got []int64
	if err := poll(ctx, 2*time.Minute, func() error {
		var err error
		if got, err = receiverTimes(metric); err != nil {
			return err
		}
		if len(got) == 0 || got[len(got)-1] < upAt.UnixMilli() {
			return fmt.Errorf("%d scrapes of %s at the receiver, none after it came back", len(got), metric)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// From the last scrape delivered before the outage to the first one after it.
	var window []int64
	window = append(window, last)
	for _, ts := range got {
		if ts > last {
			window = append(window, ts)
			if ts >= upAt.UnixMilli() {
				break
			}
		}
	}
	restart := readyAt.Sub(deleteAt)
	allowed := 3 * interval // a scrape late on a loaded machine
	maxGap, restartGap := time.Duration(0), time.Duration(0)
	fromOld := 0
	for i, ts := range window {
		if ts > downAt.UnixMilli() && ts < deleteAt.UnixMilli() {
			fromOld++
		}
		if i == 0 {
			continue
		}
		gap := time.Duration(ts-window[i-1]) * time.Millisecond
		prev := time.UnixMilli(window[i-1])
		if !prev.After(deleteAt) && time.UnixMilli(ts).After(deleteAt) {
			restartGap = gap
			if gap > restart+allowed {
				t.Errorf("gap of %s across the pod's re-creation (%s without a Ready pod) from %s", gap, restart.Round(time.Millisecond), prev.Format(time.RFC3339Nano))
			}
			continue
		}
		if gap > maxGap {
			maxGap = gap
		}
		if gap > allowed {
			t.Errorf("gap of %s in the scrapes of %s from %s: data lost", gap, metric, prev.Format(time.RFC3339Nano))
		}
	}
	if fromOld == 0 {
		t.Errorf("no scrape the deleted pod took during the outage (%s to %s) reached the receiver", downAt.Format(time.RFC3339), deleteAt.Format(time.RFC3339))
	}
	t.Logf("receiver down %s (pod re-created after %s, %s until the new pod was Ready); queue_entries %v in the old pod, %v in the new one; "+
		"%d scrapes of %s delivered from the outage, %d of them taken by the deleted pod; largest gap %s, across the restart %s (took %s)",
		upAt.Sub(downAt).Round(time.Second), deleteAt.Sub(downAt).Round(time.Second), restart.Round(time.Second), queued, after,
		len(window)-1, metric, fromOld, maxGap, restartGap, time.Since(start).Round(time.Second))
}

// proveCrossZone: a stand-in second Node (no kubelet) in zone e2e-b, whose
// InternalIP (cluster.PeerNodeIP) is put on this host's lo with a listener
// behind it; a pod of this node (zone e2e-a) sends 8 MiB to that address. The
// tracer attributes the destination to the other node's zone through the Node
// object and reports the bytes as cross-zone egress of this node, priced with
// the aws table (--cost.provider=aws in the e2e patch).
func proveCrossZone(ctx context.Context, t *testing.T) {
	const n = 8 << 20
	const peerZone = "e2e-b"
	cs := env.cl.Client
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "trellis-e2e-b", Labels: map[string]string{
		"topology.kubernetes.io/zone": peerZone, "topology.kubernetes.io/region": "e2e",
	}}, Spec: corev1.NodeSpec{
		// Nothing may run there: there is no kubelet. (DaemonSets tolerate
		// everything, so their pods for this node stay Pending until it goes.)
		Taints: []corev1.Taint{{Key: "trellis.dev/e2e-stand-in", Effect: corev1.TaintEffectNoSchedule}},
	}}
	metrics := "http://" + cluster.NodeIP + ":8085/metrics"
	indexBefore, _, err := metricValue(metrics, "index_addresses")
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Nodes().Delete(context.Background(), node.Name, metav1.DeleteOptions{})
		// The DaemonSets' pods of the stand-in node go with it.
		for _, ns := range []string{"kube-system"} {
			pods, _ := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "spec.nodeName=" + node.Name})
			if pods != nil {
				for _, p := range pods.Items {
					_ = cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
				}
			}
		}
		_ = cluster.RemovePeerAddress()
	})
	// A merge patch of the status, not an update: the node controllers change the
	// new Node at once (taints, conditions), so an update of the created object
	// conflicts ("the object has been modified"). Also when it already existed.
	addresses := fmt.Sprintf(`{"status":{"addresses":[{"type":%q,"address":%q}]}}`, corev1.NodeInternalIP, cluster.PeerNodeIP)
	if _, err := cs.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, []byte(addresses), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	// The tracer rebuilds its address index when Nodes change (at most once a
	// second): wait until it holds the stand-in node's address.
	if err := poll(ctx, 60*time.Second, func() error {
		v, _, err := metricValue(metrics, "index_addresses")
		if err != nil {
			return err
		}
		if v <= indexBefore {
			return fmt.Errorf("index_addresses %v, %v before the stand-in node", v, indexBefore)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.AddPeerAddress(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cluster.PeerNodeIP+":9100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var received atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				k, _ := io.Copy(io.Discard, c)
				received.Add(k)
			}()
		}
	}()
	perByte, found, err := metricValue(metrics, "price_dollars_per_byte", `class="cross-zone"`)
	if err != nil || !found || perByte <= 0 {
		t.Fatalf("price_dollars_per_byte{class=cross-zone} = %v (found %v, %v): want the aws price", perByte, found, err)
	}
	price := perByte * (1 << 30) // per GiB
	bytesBefore, _, err := metricValue(metrics, "bytes_total", `source_zone="`+cluster.Zone+`"`, `destination_zone="`+peerZone+`"`, `direction="egress"`)
	if err != nil {
		t.Fatal(err)
	}
	costBefore, _, err := metricValue(metrics, "cost_dollars_total", `class="cross-zone"`)
	if err != nil {
		t.Fatal(err)
	}
	runPod(ctx, t, standinPod("flow-cross-zone", "send", "--to="+cluster.PeerNodeIP+":9100", "--bytes="+strconv.Itoa(n)))
	if err := poll(ctx, 60*time.Second, func() error {
		if received.Load() < n {
			return fmt.Errorf("listener on %s received %d bytes", cluster.PeerNodeIP, received.Load())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var bytes, cost float64
	if err := poll(ctx, 90*time.Second, func() error {
		b, _, err := metricValue(metrics, "bytes_total", `source_zone="`+cluster.Zone+`"`, `destination_zone="`+peerZone+`"`, `direction="egress"`)
		if err != nil {
			return err
		}
		c, _, err := metricValue(metrics, "cost_dollars_total", `class="cross-zone"`)
		if err != nil {
			return err
		}
		bytes, cost = b-bytesBefore, c-costBefore
		if bytes < n {
			return fmt.Errorf("bytes_total{%s->%s,egress} grew by %.0f, want >= %d", cluster.Zone, peerZone, bytes, n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bytes > 1.5*n {
		t.Fatalf("bytes_total{%s->%s} grew by %.0f for %d bytes sent: counted more than once", cluster.Zone, peerZone, bytes, n)
	}
	want := bytes / (1 << 30) * price
	if cost < want*0.99 || cost > want*1.01 {
		t.Fatalf("cost_dollars_total{class=cross-zone} grew by %g, want %g (%.0f bytes at $%g/GiB)", cost, want, bytes, price)
	}
	t.Logf("pod (zone %s) sent %d bytes to %s (stand-in node trellis-e2e-b, zone %s): bytes_total egress %s->%s grew by %.0f, cost_dollars_total{cross-zone} by $%.6f ($%g/GiB)",
		cluster.Zone, n, cluster.PeerNodeIP, peerZone, cluster.Zone, peerZone, bytes, cost, price)
}
