package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/cluster"
)

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func mrGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: "resources.gardener.cloud", Version: "v1alpha1", Resource: "managedresources"}
}

// proveOtel: the scraper, a pod with its ServiceAccount token, scrapes the real
// kubelet's /metrics and /metrics/cadvisor and delivers OTLP/HTTP to the
// receiver pod.
func proveOtel(ctx context.Context, t *testing.T) {
	var st struct {
		Requests int64               `json:"requests"`
		Points   int64               `json:"points"`
		ByMetric map[string]int64    `json:"byMetric"`
		Resource map[string][]string `json:"resource"`
	}
	err := poll(ctx, 2*time.Minute, func() error {
		if err := httpJSON("http://198.19.0.52:8080/stats", &st); err != nil {
			return err
		}
		kubelet, cadvisor := "", ""
		for m := range st.ByMetric {
			if strings.HasPrefix(m, "kubelet_") && kubelet == "" {
				kubelet = m
			}
			if strings.HasPrefix(m, "container_") && cadvisor == "" {
				cadvisor = m
			}
		}
		if kubelet == "" || cadvisor == "" {
			return fmt.Errorf("receiver has %d points in %d requests, kubelet metric %q, cAdvisor metric %q", st.Points, st.Requests, kubelet, cadvisor)
		}
		t.Logf("receiver: %d points in %d requests, e.g. %s and %s; resource %v", st.Points, st.Requests, kubelet, cadvisor, st.Resource)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// proveEgress: the probe DaemonSet (host network) asks the STUN stand-in, which
// answers 203.0.113.50 as a NAT gateway would; the reporter (seed side, through
// the shoot kubeconfig Gardener would provide) publishes it in shoot-info.
func proveEgress(ctx context.Context, t *testing.T) {
	err := poll(ctx, 2*time.Minute, func() error {
		cm, err := env.cl.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "shoot-info", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.Contains(cm.Data["egressCIDRs"], "203.0.113.50/32") {
			n, _ := env.cl.Client.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
			var ann string
			if n != nil {
				ann = n.Annotations["trellis.dev/egress-address"]
			}
			return fmt.Errorf("shoot-info egressCIDRs = %q (node annotation %q)", cm.Data["egressCIDRs"], ann)
		}
		if cm.Data["projectName"] != "e2e" {
			return fmt.Errorf("gardenlet's keys lost: %v", cm.Data)
		}
		t.Logf("shoot-info egressCIDRs = %q", cm.Data["egressCIDRs"])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// standinPod is a bare pod of the stand-in image in namespace trellis-e2e.
func standinPod(name string, args ...string) *corev1.Pod {
	f, nonRoot, uid := false, true, int64(65532)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "trellis-e2e", Labels: map[string]string{"app.kubernetes.io/name": name}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(1)),
			SecurityContext:               &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid},
			Containers: []corev1.Container{{
				Name: name, Image: standinRef, ImagePullPolicy: corev1.PullNever, Args: args,
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

func runPod(ctx context.Context, t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	got := startPod(ctx, t, p)
	t.Cleanup(func() {
		_ = env.cl.Client.CoreV1().Pods(p.Namespace).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	})
	return got
}

// startPod starts p (replacing a pod of that name) and waits until it runs; the
// pod stays until the cluster goes (for proofs that a later step continues).
func startPod(ctx context.Context, t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	cs := env.cl.Client
	_ = cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
	_ = poll(ctx, 30*time.Second, func() error {
		_, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there")
	})
	if _, err := cs.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	if err := poll(ctx, 90*time.Second, func() error {
		var err error
		got, err = cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got.Status.Phase != corev1.PodRunning || got.Status.PodIP == "" {
			return fmt.Errorf("pod %s: %s", p.Name, got.Status.Phase)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

// zoneBytes sums bytes_total{source_zone=from,destination_zone=to,direction=egress}
// of zone-flow-tracer's /metrics (host network, port 8085 on the node), with
// further label matchers (the e2e runs it with --metrics.labels=workload).
func zoneBytes(from, to string, labels ...string) (float64, error) {
	v, _, err := metricValue("http://"+cluster.NodeIP+":8085/metrics", "bytes_total",
		append([]string{`source_zone="` + from + `"`, `destination_zone="` + to + `"`, `direction="egress"`}, labels...)...)
	return v, err
}

// proveZoneFlow: a pod sends 8 MiB over TCP to another pod on the bridge; the
// tracer (host network, NET_ADMIN, the host's conntrack with bridge netfilter)
// counts at least that many bytes from zone e2e-a to zone e2e-a, sent by this
// node's endpoint, and no more than once: the sender's own series
// (workload="pod/flow-sender") grows by at most the payload plus headers, not
// twice it. The zone's total also holds the node's other traffic (kubelet scrapes,
// OTLP, probes), so only the sender's series bounds it from above. A single
// node is one zone: the cross-zone attribution is covered by
// internal/zoneflow's tests in network namespaces and proveCrossZone.
func proveZoneFlow(ctx context.Context, t *testing.T) {
	const n = 8 << 20
	sender := `workload="pod/flow-sender"`
	before, err := zoneBytes(cluster.Zone, cluster.Zone)
	if err != nil {
		t.Fatal(err)
	}
	senderBefore, err := zoneBytes(cluster.Zone, cluster.Zone, sender)
	if err != nil {
		t.Fatal(err)
	}
	sink := runPod(ctx, t, standinPod("flow-sink", "sink"))
	runPod(ctx, t, standinPod("flow-sender", "send", "--to="+sink.Status.PodIP+":9000", "--bytes="+strconv.Itoa(n)))
	var got struct {
		Bytes int64 `json:"bytes"`
	}
	if err := poll(ctx, 60*time.Second, func() error {
		if err := httpJSON("http://"+sink.Status.PodIP+":8080/stats", &got); err != nil {
			return err
		}
		if got.Bytes < n {
			return fmt.Errorf("sink received %d bytes", got.Bytes)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var after, senderAfter float64
	if err := poll(ctx, 90*time.Second, func() error {
		var err error
		if after, err = zoneBytes(cluster.Zone, cluster.Zone); err != nil {
			return err
		}
		if senderAfter, err = zoneBytes(cluster.Zone, cluster.Zone, sender); err != nil {
			return err
		}
		// Bytes counted before the tracer's index knew the new pod have the
		// zone but no workload: the sender's own series may hold less than n.
		if after-before < n || senderAfter == senderBefore {
			return fmt.Errorf("bytes_total{%s->%s,egress} grew by %.0f (want >= %d), the sender's by %.0f (want > 0)",
				cluster.Zone, cluster.Zone, after-before, n, senderAfter-senderBefore)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Each byte once: headers add ~3% for 8 MiB in 1448-byte segments; twice the
	// payload would be double counting.
	if senderAfter-senderBefore > 1.5*n {
		t.Fatalf("the sender's bytes_total grew by %.0f for %d bytes sent: counted more than once", senderAfter-senderBefore, n)
	}
	t.Logf("sent %d bytes pod to pod; bytes_total{%s->%s,egress} grew by %.0f, the sender's series by %.0f",
		n, cluster.Zone, cluster.Zone, after-before, senderAfter-senderBefore)
}

// proveMRSigner: the API server calls the webhook through its Service; a write
// of an MR Secret by the trusted gardenlet ServiceAccount is signed, a write by
// another identity is denied (--webhook.deny-untrusted) or stays unsigned; a
// signed Secret tampered with where no webhook runs (kube-system) gets the
// ManagedResource naming it quarantined by the verifier.
func proveMRSigner(ctx context.Context, t *testing.T) {
	cs := env.cl.Client
	ns := "shoot--e2e--local"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "trellis-e2e:gardenlet"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "gardenlet", Namespace: "garden"}},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	gcfg := rest.CopyConfig(env.cl.REST)
	gcfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:garden:gardenlet"}
	gardenlet, err := kubernetes.NewForConfig(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	secret := func(ns, name string) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"trellis.dev/managed-resource-secret": "true"}},
			Data:       map[string][]byte{"objects.yaml": []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\n  namespace: default\n")},
		}
	}
	var signed *corev1.Secret
	if err := poll(ctx, 90*time.Second, func() error {
		_ = gardenlet.CoreV1().Secrets(ns).Delete(ctx, "mr-signed", metav1.DeleteOptions{})
		var err error
		signed, err = gardenlet.CoreV1().Secrets(ns).Create(ctx, secret(ns, "mr-signed"), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if !strings.HasPrefix(signed.Annotations["trellis.dev/signature"], "v1.") {
			return fmt.Errorf("gardenlet's write not signed: annotations %v", signed.Annotations)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("gardenlet's write signed by the webhook: %.40s...", signed.Annotations["trellis.dev/signature"])
	_ = cs.CoreV1().Secrets(ns).Delete(ctx, "mr-untrusted", metav1.DeleteOptions{})
	untrusted, err := cs.CoreV1().Secrets(ns).Create(ctx, secret(ns, "mr-untrusted"), metav1.CreateOptions{})
	switch {
	case err != nil && (apierrors.IsForbidden(err) || strings.Contains(err.Error(), "denied")):
		t.Logf("untrusted write denied: %v", err)
	case err != nil:
		t.Fatalf("untrusted write: %v", err)
	case untrusted.Annotations["trellis.dev/signature"] != "":
		t.Fatalf("an untrusted write got signed: %s", untrusted.Annotations["trellis.dev/signature"])
	default:
		t.Log("untrusted write stored unsigned")
	}
	// Tampering where no webhook runs: a copy of the signed Secret with changed
	// data, and a ManagedResource naming it, in kube-system.
	tampered := secret("kube-system", "e2e-mr-tampered")
	tampered.Annotations = map[string]string{"trellis.dev/signature": signed.Annotations["trellis.dev/signature"]}
	tampered.Data["objects.yaml"] = []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: evil\n  namespace: default\n")
	_ = cs.CoreV1().Secrets("kube-system").Delete(ctx, tampered.Name, metav1.DeleteOptions{})
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, tampered, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mr := []byte(`{"apiVersion":"resources.gardener.cloud/v1alpha1","kind":"ManagedResource","metadata":{"name":"e2e-tampered","namespace":"kube-system"},"spec":{"secretRefs":[{"name":"e2e-mr-tampered"}]}}`)
	gvr := mrGVR()
	force := true
	if _, err := env.dyn.Resource(gvr).Namespace("kube-system").Patch(ctx, "e2e-tampered", types.ApplyPatchType, mr, metav1.PatchOptions{FieldManager: fieldManger, Force: &force}); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 90*time.Second, func() error {
		u, err := env.dyn.Resource(gvr).Namespace("kube-system").Get(ctx, "e2e-tampered", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if q := u.GetAnnotations()["trellis.dev/quarantined"]; q != "" {
			t.Logf("ManagedResource quarantined: %s", q)
			return nil
		}
		return fmt.Errorf("ManagedResource not quarantined: annotations %v", u.GetAnnotations())
	}); err != nil {
		t.Fatal(err)
	}
}

// proveAPILogs reads a trellis pod's log through the API server, which asks the
// kubelet with its client certificate (what `kubectl logs` and `exec` need).
func proveAPILogs(ctx context.Context, t *testing.T) {
	cs := env.cl.Client
	pods, err := cs.CoreV1().Pods("garden").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=wg-gateway"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatal("no wg-gateway pod")
	}
	p := pods.Items[0]
	tail := int64(5)
	b, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s/%s through the API server: %v: %s", p.Namespace, p.Name, err, b)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		t.Fatalf("logs of %s/%s through the API server are empty", p.Namespace, p.Name)
	}
	t.Logf("%d bytes of %s/%s's log through the API server", len(b), p.Namespace, p.Name)
}

// proveKillRecovery SIGKILLs the main process of one pod of each DaemonSet and
// Deployment through containerd and waits for the kubelet to restart it and
// the workload to be Ready again.
func proveKillRecovery(ctx context.Context, t *testing.T) {
	cs := env.cl.Client
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=trellis"})
	if err != nil {
		t.Fatal(err)
	}
	killed := map[string]int32{}
	seen := map[string]bool{}
	for _, p := range pods.Items {
		app := p.Labels["app.kubernetes.io/name"]
		if seen[app] || p.DeletionTimestamp != nil || len(p.Status.ContainerStatuses) == 0 {
			continue
		}
		seen[app] = true
		c := p.Status.ContainerStatuses[0]
		id := strings.TrimPrefix(c.ContainerID, "containerd://")
		if out, err := cluster.Ctr(ctx, env.cfg, "tasks", "kill", "--signal", "SIGKILL", id); err != nil {
			t.Fatalf("kill %s/%s: %v: %s", p.Namespace, p.Name, err, out)
		}
		killed[p.Namespace+"/"+p.Name] = c.RestartCount
	}
	for name, before := range killed {
		ns, pn, _ := strings.Cut(name, "/")
		if err := poll(ctx, 2*time.Minute, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, pn, metav1.GetOptions{})
			if err != nil {
				return err
			}
			c := p.Status.ContainerStatuses[0]
			if c.RestartCount <= before || !c.Ready {
				return fmt.Errorf("%s: restarts %d (before %d), ready %v", name, c.RestartCount, before, c.Ready)
			}
			return nil
		}); err != nil {
			t.Error(err)
		}
	}
	t.Logf("killed and recovered: %d pods", len(killed))
	waitWorkloadsReady(ctx, t, 2*time.Minute)
}

// proveEventWatcher: the Azure stand-in announces a Reboot of this VM; the
// event-watcher pod sets the ScheduledEvent condition and the taint, cordons
// the node and drains it through the Eviction API, where the real disruption
// controller enforces the seed overlay's PodDisruptionBudgets.
func proveEventWatcher(ctx context.Context, t *testing.T) {
	cs := env.cl.Client
	resp, err := http.Post("http://198.19.0.50/e2e/schedule?type=Reboot&resource="+cluster.NodeName, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("schedule: %s", resp.Status)
	}
	if err := poll(ctx, 90*time.Second, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cond, taint := false, false
		for _, c := range n.Status.Conditions {
			if c.Type == "ScheduledEvent" && c.Status == corev1.ConditionTrue {
				cond = true
			}
		}
		for _, tn := range n.Spec.Taints {
			if tn.Key == "trellis.dev/scheduled-event" && tn.Value == "Reboot" {
				taint = true
			}
		}
		if !cond || !taint || !n.Spec.Unschedulable {
			return fmt.Errorf("node: condition %v, taint %v, cordoned %v", cond, taint, n.Spec.Unschedulable)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Log("condition ScheduledEvent, taint trellis.dev/scheduled-event=Reboot, node cordoned")
	// The drain evicts through the Eviction API: with the seed overlay's three
	// replicas and their budgets (maxUnavailable 1) on a cordoned single node, the
	// first eviction of a Deployment's pod succeeds and the next is refused by
	// the disruption controller's budget until the replacement runs (never here).
	if err := poll(ctx, 3*time.Minute, func() error {
		ok, blocked, err := evictions()
		if err != nil {
			return err
		}
		if ok < 1 || blocked < 1 {
			return fmt.Errorf("evictions: %v succeeded, %v blocked by a budget", ok, blocked)
		}
		t.Logf("evictions: %v succeeded, %v blocked by a PodDisruptionBudget", ok, blocked)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := cs.CoreV1().Nodes().Get(ctx, cluster.NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == "ScheduledEvent" {
			t.Logf("condition: %s", c.Message)
		}
	}
}

// evictions reads event-watcher's actions_total{action="evict"} by result from
// its /metrics (host network, port 8082).
func evictions() (ok, blocked float64, err error) {
	url := "http://" + cluster.NodeIP + ":8082/metrics"
	if ok, _, err = metricValue(url, "actions_total", `action="evict"`, `result="success"`); err != nil {
		return 0, 0, err
	}
	blocked, _, err = metricValue(url, "actions_total", `action="evict"`, `result="blocked"`)
	return ok, blocked, err
}
