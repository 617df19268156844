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
		start := time.Now()
		for tainted() != want {
			if time.Since(start) > time.Minute {
				b.Fatalf("taint present=%v not reached", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	deadline := time.Now().Add(time.Minute)
	for ctrl.Ready(ctx) != nil {
		if time.Now().After(deadline) {
			b.Fatal("controller not ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
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
