package eventwatcher

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// BenchmarkEventToTaint measures the time from an event appearing in the (fake)
// Azure metadata service to the taint on the Node in the real API server, with
// the default poll interval. The target is under the poll interval + 1 s; the
// benchmark reports the latency, the target and their ratio (< 1 meets it).
func BenchmarkEventToTaint(b *testing.B) {
	env := testenv.Get(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodeName := "bench-" + strings.ToLower(env.Namespace(b))
	n, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	fake := imdsfake.NewAzure()
	srv := fake.Start()
	defer srv.Close()
	source, err := imds.NewAzure(imds.AzureOptions{Endpoint: srv.URL, Resources: []string{"vm-0"}})
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{NodeName: nodeName, PollInterval: DefaultPollInterval}
	ctrl, err := New(env.Client, source, cfg, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	go ctrl.Run(ctx)
	tainted := func() bool {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, t := range n.Spec.Taints {
			if t.Key == TaintKey {
				return true
			}
		}
		return false
	}
	wait := func(want bool) time.Duration {
		d, ok := testkit.Measure(5*time.Millisecond, time.Minute, func() bool { return tainted() == want })
		if !ok {
			b.Fatalf("taint present=%v not reached", want)
		}
		return d
	}
	testkit.EventuallyWithin(b, time.Minute, "the controller ready", func() bool { return ctrl.Ready(ctx) == nil })
	var total, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fake.Schedule(imdsfake.AzureEvent{EventType: "Freeze", Resources: []string{"vm-0"}, NotBefore: imdsfake.AzureTime(time.Now().Add(15 * time.Minute)), DurationInSeconds: 5})
		d := wait(true)
		total += d
		worst = max(worst, d)
		b.StopTimer()
		if err := fake.Complete(id); err != nil {
			b.Fatal(err)
		}
		wait(false)
		b.StartTimer()
	}
	target := cfg.PollInterval + time.Second
	mean := total / time.Duration(b.N)
	b.ReportMetric(float64(mean.Milliseconds()), "ms/event")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
	b.ReportMetric(float64(target.Milliseconds()), "target-ms")
	b.ReportMetric(float64(worst)/float64(target), "worst/target")
}

// BenchmarkCancelDuringBlockedDrain measures the time from the cloud withdrawing
// an event (Azure drops it from the document) to the taint leaving the Node while
// the event's drain is blocked: a pod's eviction is refused by its
// PodDisruptionBudget and waits for its retry. The target is the poll interval
// + 1 s whatever the drain is doing; reported as for BenchmarkEventToTaint.
func BenchmarkCancelDuringBlockedDrain(b *testing.B) {
	env := testenv.Get(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := env.Namespace(b)
	nodeName := "bench-cancel-" + strings.ToLower(ns)
	if len(nodeName) > 63 {
		nodeName = nodeName[:63]
	}
	n, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) }()
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	// A Ready pod that a budget with no disruption allowed guards.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: ns, Labels: map[string]string{"app": "guarded"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "guarded", UID: "5f0e6b34-4444-4a8e-9d6e-000000000004", Controller: ptrTo(true)}}},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if pod, err = env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}}
	if _, err = env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	pdb, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "guarded", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptrTo(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	pdb.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: pdb.Generation, CurrentHealthy: 1, DesiredHealthy: 1, ExpectedPods: 1}
	if _, err := env.Client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}

	fake := imdsfake.NewAzure()
	srv := fake.Start()
	defer srv.Close()
	source, err := imds.NewAzure(imds.AzureOptions{Endpoint: srv.URL, Resources: []string{"vm-0"}})
	if err != nil {
		b.Fatal(err)
	}
	// Default intervals: the blocked eviction is retried after 5 s, then 10 s...
	cfg := Config{NodeName: nodeName, PollInterval: DefaultPollInterval}
	ctrl, err := New(env.Client, source, cfg, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = ctrl.Run(ctx) }()
	defer func() { cancel(); <-done }()
	node := func() *corev1.Node {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	waitFor := func(what string, cond func(*corev1.Node) bool) time.Duration {
		d, ok := testkit.Measure(5*time.Millisecond, time.Minute, func() bool { return cond(node()) })
		if !ok {
			b.Fatalf("%s not reached", what)
		}
		return d
	}
	blocked := func(n *corev1.Node) bool {
		for _, c := range n.Status.Conditions {
			if c.Type == ConditionType && strings.Contains(c.Message, "drain blocked") {
				return true
			}
		}
		return false
	}
	untainted := func(n *corev1.Node) bool {
		for _, t := range n.Spec.Taints {
			if t.Key == TaintKey {
				return false
			}
		}
		return !n.Spec.Unschedulable
	}
	var total, worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		id := fake.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"vm-0"}, NotBefore: imdsfake.AzureTime(time.Now().Add(15 * time.Minute))})
		waitFor("blocked drain", blocked)
		b.StartTimer()
		if err := fake.Cancel(id); err != nil {
			b.Fatal(err)
		}
		d := waitFor("taint and cordon removed", untainted)
		total += d
		worst = max(worst, d)
	}
	b.StopTimer()
	target := cfg.PollInterval + time.Second
	mean := total / time.Duration(b.N)
	b.ReportMetric(float64(mean.Milliseconds()), "ms/cancel")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
	b.ReportMetric(float64(target.Milliseconds()), "target-ms")
	b.ReportMetric(float64(worst)/float64(target), "worst/target")
}
