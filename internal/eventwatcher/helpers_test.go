package eventwatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// cluster is one test's view of the shared API server: a namespace and a Node
// of its own (Nodes are cluster-scoped, so the name is unique per test).
type cluster struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	node   string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	env := testenv.Get(t)
	ns := env.Namespace(t)
	cl := &cluster{t: t, client: env.Client, ns: ns, node: "node-" + ns}
	if len(cl.node) > 63 {
		cl.node = cl.node[:63]
	}
	return cl
}

// testConfig is a Config with intervals small enough for tests.
func (cl *cluster) testConfig() Config {
	return Config{
		NodeName:         cl.node,
		PodNamespace:     cl.ns,
		PodName:          "event-watcher",
		PollInterval:     20 * time.Millisecond,
		EvictionRetry:    50 * time.Millisecond,
		PodPollInterval:  20 * time.Millisecond,
		MaxRetryInterval: 400 * time.Millisecond,
	}
}

// createNode creates the Node as a kubelet would register it: Ready, with a
// taint of someone else's that must survive.
func (cl *cluster) createNode(unschedulable bool) {
	cl.t.Helper()
	ctx := context.Background()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: cl.node, Labels: map[string]string{"kubernetes.io/hostname": cl.node}},
		Spec: corev1.NodeSpec{Unschedulable: unschedulable,
			Taints: []corev1.Taint{{Key: "example.com/dedicated", Value: "x", Effect: corev1.TaintEffectPreferNoSchedule}}},
	}
	if _, err := cl.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
	cl.t.Cleanup(func() { _ = cl.client.CoreV1().Nodes().Delete(context.Background(), cl.node, metav1.DeleteOptions{}) })
	cl.setReady(true)
}

// setReady sets the kubelet's Ready condition.
func (cl *cluster) setReady(ready bool) {
	cl.t.Helper()
	status, reason := corev1.ConditionTrue, "KubeletReady"
	if !ready {
		status, reason = corev1.ConditionFalse, "KubeletNotReady"
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cl.client.CoreV1().Nodes().Get(context.Background(), cl.node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: status, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
		found := false
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeReady {
				n.Status.Conditions[i], found = cond, true
			}
		}
		if !found {
			n.Status.Conditions = append(n.Status.Conditions, cond)
		}
		_, err = cl.client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		cl.t.Fatal(err)
	}
}

// createPod creates a running, Ready pod bound to the node (or to another),
// owned by a ReplicaSet (mut can make it a bare pod: bare()).
func (cl *cluster) createPod(name string, labels map[string]string, mut func(*corev1.Pod)) *corev1.Pod {
	cl.t.Helper()
	ctx := context.Background()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cl.ns, Labels: labels,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: name + "-rs",
				UID: "5f0e6b34-2222-4a8e-9d6e-000000000002", Controller: ptrTo(true)}}},
		Spec: corev1.PodSpec{NodeName: cl.node, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if mut != nil {
		mut(p)
	}
	p, err := cl.client.CoreV1().Pods(cl.ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		cl.t.Fatalf("create pod %s: %v", name, err)
	}
	// As the kubelet reports it: running and Ready, so a PodDisruptionBudget
	// counts it as healthy (pending pods are evicted regardless of budgets).
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}}}
	if p, err = cl.client.CoreV1().Pods(cl.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		cl.t.Fatalf("pod %s status: %v", name, err)
	}
	return p
}

// standardPods creates what a node typically runs: two workload pods (one
// guarded by a budget), a DaemonSet pod, a mirror (static) pod and
// event-watcher's own pod. It returns the names of the pods a drain must evict
// and of those it must leave.
func (cl *cluster) standardPods() (evict, keep []string) {
	cl.createPod("web-free", map[string]string{"app": "free"}, nil)
	cl.createPod("web-guarded", map[string]string{"app": "guarded"}, nil)
	cl.createPod("ds-agent", nil, func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "agent", UID: "5f0e6b34-1111-4a8e-9d6e-000000000001", Controller: ptrTo(true)}}
	})
	cl.createPod("static-etcd", nil, func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: cl.node, UID: "5f0e6b34-3333-4a8e-9d6e-000000000003", Controller: ptrTo(true)}}
		p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "0123456789abcdef"}
	})
	cl.createPod("event-watcher", nil, nil)
	return []string{"web-free", "web-guarded"}, []string{"ds-agent", "static-etcd", "event-watcher"}
}

func ptrTo[T any](v T) *T { return &v }

// bare makes a pod without a controller (nothing would recreate it).
func bare(p *corev1.Pod) { p.OwnerReferences = nil }

// withEmptyDir gives a pod an emptyDir volume.
func withEmptyDir(p *corev1.Pod) {
	p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
}

// createPDB creates a budget over app=guarded and sets its status as the
// disruption controller would (none runs here).
func (cl *cluster) createPDB(allowed int32) {
	cl.t.Helper()
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: cl.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: ptrTo(intstr.FromInt32(1)),
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
	}
	if _, err := cl.client.PolicyV1().PodDisruptionBudgets(cl.ns).Create(context.Background(), pdb, metav1.CreateOptions{}); err != nil {
		cl.t.Fatal(err)
	}
	cl.setPDBAllowed(allowed)
}

// setPDBAllowed sets disruptionsAllowed (0: evictions answer 429).
func (cl *cluster) setPDBAllowed(allowed int32) {
	cl.t.Helper()
	pdbs := cl.client.PolicyV1().PodDisruptionBudgets(cl.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pdb, err := pdbs.Get(context.Background(), "guarded", metav1.GetOptions{})
		if err != nil {
			return err
		}
		pdb.Status.ObservedGeneration = pdb.Generation
		pdb.Status.DisruptionsAllowed = allowed
		pdb.Status.CurrentHealthy, pdb.Status.DesiredHealthy, pdb.Status.ExpectedPods = 1, max(1-allowed, 0), 1
		_, err = pdbs.UpdateStatus(context.Background(), pdb, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		cl.t.Fatal(err)
	}
}

// playKubelet stands in for the kubelet, which would stop an evicted pod's
// containers and then delete the pod for good: it force-deletes every pod on
// the node that has a deletionTimestamp, until the test ends.
func (cl *cluster) playKubelet() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cl.t.Cleanup(func() { cancel(); wg.Wait() })
	sel := fields.OneTermEqualSelector("spec.nodeName", cl.node).String()
	wg.Go(func() {
		for {
			pods, err := cl.client.CoreV1().Pods(cl.ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
			if err == nil {
				for _, p := range pods.Items {
					if p.DeletionTimestamp != nil {
						_ = cl.client.CoreV1().Pods(cl.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))})
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
}

// podNames lists the names of the pods on the node.
func (cl *cluster) podNames() []string {
	cl.t.Helper()
	pods, err := cl.client.CoreV1().Pods(cl.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names
}

func (cl *cluster) getNode() *corev1.Node {
	cl.t.Helper()
	n, err := cl.client.CoreV1().Nodes().Get(context.Background(), cl.node, metav1.GetOptions{})
	if err != nil {
		cl.t.Fatal(err)
	}
	return n
}

// waitNode polls the Node until check returns "" (all good) or the deadline
// passes; the last complaint is the failure message.
func (cl *cluster) waitNode(what string, check func(n *corev1.Node) string) *corev1.Node {
	cl.t.Helper()
	var n *corev1.Node
	testkit.EventuallyNil(cl.t, what, func() error {
		n = cl.getNode()
		if problem := check(n); problem != "" {
			return fmt.Errorf("%s\nnode: spec=%+v annotations=%v labels=%v conditions=%+v", problem, n.Spec, n.Annotations, n.Labels, n.Status.Conditions)
		}
		return nil
	})
	return n
}

// assertNoWrites checks that the Node is not written while more happens (the
// until condition, e.g. more polls or more eviction attempts): a level-triggered
// controller writes only on change.
func (cl *cluster) assertNoWrites(what string, until func() bool) {
	cl.t.Helper()
	before := cl.getNode()
	rv := before.ResourceVersion
	testkit.Eventually(cl.t, what, until)
	if n := cl.getNode(); n.ResourceVersion != rv {
		b1, _ := json.Marshal(before.Status.Conditions)
		b2, _ := json.Marshal(n.ManagedFields)
		cl.t.Logf("conditions before: %s\nmanaged fields after: %s", b1, b2)
		cl.t.Fatalf("node written during %s: resourceVersion %s -> %s; annotations=%v conditions=%+v", what, rv, n.ResourceVersion, n.Annotations, n.Status.Conditions)
	}
}

// nodeEvents lists the Events recorded on the node with a reason.
func (cl *cluster) nodeEvents(reason string) []corev1.Event {
	cl.t.Helper()
	sel := fields.Set{"involvedObject.kind": "Node", "involvedObject.name": cl.node, "reason": reason}.AsSelector().String()
	list, err := cl.client.CoreV1().Events(metav1.NamespaceDefault).List(context.Background(), metav1.ListOptions{FieldSelector: sel})
	if err != nil {
		cl.t.Fatal(err)
	}
	return list.Items
}

// waitEvent waits for an Event with reason whose message contains substr.
func (cl *cluster) waitEvent(reason, substr string) corev1.Event {
	cl.t.Helper()
	var found corev1.Event
	testkit.EventuallyNil(cl.t, "a "+reason+" Event", func() error {
		var msgs []string
		for _, e := range cl.nodeEvents(reason) {
			if strings.Contains(e.Message, substr) {
				if e.Source.Component != Component {
					cl.t.Fatalf("event %s from component %q", reason, e.Source.Component)
				}
				found = e
				return nil
			}
			msgs = append(msgs, e.Message)
		}
		return fmt.Errorf("none containing %q; have %q", substr, msgs)
	})
	return found
}

// running is a controller started by a test.
type running struct {
	c    *Controller
	reg  *prometheus.Registry
	stop func()
}

// start runs a controller until stop or the end of the test.
func (cl *cluster) start(src imds.Client, cfg Config) *running {
	cl.t.Helper()
	return cl.startWith(cl.client, src, cfg)
}

// startWith runs a controller on client's credentials.
func (cl *cluster) startWith(client kubernetes.Interface, src imds.Client, cfg Config) *running {
	cl.t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(cl.t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := New(client, src, cfg, log, reg, "")
	if err != nil {
		cl.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					cl.t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				cl.t.Error("controller did not stop")
			}
		})
	}
	cl.t.Cleanup(stop)
	return &running{c: c, reg: reg, stop: stop}
}

func condition(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == ConditionType {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func ourTaint(n *corev1.Node) *corev1.Taint {
	for i := range n.Spec.Taints {
		if n.Spec.Taints[i].Key == TaintKey {
			return &n.Spec.Taints[i]
		}
	}
	return nil
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
