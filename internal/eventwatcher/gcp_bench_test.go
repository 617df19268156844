package eventwatcher

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// BenchmarkGCPPreemptionToTaint measures, with the defaults (60 s long polls,
// --poll.interval=2s), the time from instance/preempted turning TRUE in the
// (fake) GCP metadata server to the taint on the Node in the real API server,
// while the maintenance-event and upcoming-maintenance long polls are held.
// Next to it, as the baseline of the same run, the same latency for a
// maintenance-event change. GCE stops a preempted VM about 30 s after the
// notice; the target is under 2 s. Reported: means and worst cases, the
// target, worst/target (< 1 meets it) and preempt/maintenance (about 1: a
// preemption is seen as fast as the item that used to be the only long poll).
func BenchmarkGCPPreemptionToTaint(b *testing.B) {
	env := testenv.Get(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodeName := "bench-gcp-" + strings.ToLower(env.Namespace(b))
	n, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), nodeName, metav1.DeleteOptions{}) })
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		b.Fatal(err)
	}
	fake := imdsfake.NewGCP()
	fake.SetUpcomingMaintenanceBody("{ }")
	srv := fake.Start()
	defer srv.Close()
	source, err := imds.NewGCP(imds.GCPOptions{Endpoint: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	ctrl, err := New(env.Client, source, Config{NodeName: nodeName}, nil, nil, "")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = ctrl.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// state reports whether the node carries our taint and is cordoned.
	state := func() (tainted, cordoned bool) {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false, false
		}
		for _, t := range n.Spec.Taints {
			if t.Key == TaintKey {
				tainted = true
			}
		}
		return tainted, n.Spec.Unschedulable
	}
	waitFor := func(what string, cond func() bool) time.Duration {
		d, ok := testkit.Measure(2*time.Millisecond, 2*time.Minute, cond)
		if !ok {
			b.Fatalf("timed out waiting for %s", what)
		}
		return d
	}
	tainted := func() bool { t, _ := state(); return t }
	clean := func() bool { t, c := state(); return !t && !c }
	held := func() bool { return gcpHoldsAll(fake) }
	waitFor("ready", func() bool { return ctrl.Ready(ctx) == nil })

	var preTotal, preWorst, mtTotal, mtWorst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		waitFor("long polls held", held)
		b.StartTimer()
		fake.SetPreempted(true)
		d := waitFor("preempt taint", tainted)
		preTotal += d
		preWorst = max(preWorst, d)
		b.StopTimer()
		fake.SetPreempted(false)
		waitFor("node clean", clean)
		waitFor("long polls held", held)
		fake.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
		d = waitFor("maintenance taint", tainted)
		mtTotal += d
		mtWorst = max(mtWorst, d)
		fake.SetMaintenanceEvent("NONE")
		waitFor("node clean", clean)
		b.StartTimer()
	}
	b.StopTimer()
	const target = 2 * time.Second
	preMean, mtMean := preTotal/time.Duration(b.N), mtTotal/time.Duration(b.N)
	b.ReportMetric(float64(preMean.Microseconds())/1000, "preempt-ms")
	b.ReportMetric(float64(preWorst.Microseconds())/1000, "preempt-worst-ms")
	b.ReportMetric(float64(mtMean.Microseconds())/1000, "maintenance-ms")
	b.ReportMetric(float64(mtWorst.Microseconds())/1000, "maintenance-worst-ms")
	b.ReportMetric(float64(target.Milliseconds()), "target-ms")
	b.ReportMetric(float64(preWorst)/float64(target), "worst/target")
	b.ReportMetric(float64(preMean)/float64(mtMean), "preempt/maintenance")
}
