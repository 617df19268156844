package eventwatcher

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestBinary builds cmd/event-watcher and runs it against a fake Azure metadata
// service and the real API server: provider detection from the providerID, an
// event for this VM becomes a taint (an event for another VM of the group does
// not), the taint goes when the event is over, SIGTERM exits 0.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	env := testenv.Get(t)
	ctx := context.Background()
	bin := testbin.Build(t, "event-watcher")

	// Bad flags: exit 2 with every problem named.
	testbin.UsageError(t, bin, []string{"--metadata.provider=openstack", "--events.actions=Freeze=explode", "--node.name="}, "--events.actions")

	nodeName := "binary-" + strings.ToLower(env.Namespace(t))
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Spec:       corev1.NodeSpec{ProviderID: "azure:///subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/pool/virtualMachines/3"},
	}
	created, err := env.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	fake := imdsfake.NewAzure()
	srv := fake.Start()
	defer srv.Close()

	cmd := exec.Command(bin, "--kubeconfig="+env.Kubeconfig, "--node.name="+nodeName, "--metadata.provider=auto",
		"--metadata.endpoint="+srv.URL, "--poll.interval=100ms", "--web.listen-address=127.0.0.1:0", "--log.format=json")
	web := testbin.Start(t, cmd)
	testkit.Eventually(t, "readiness", func() bool { code, _ := testkit.Get("http://" + web + "/readyz"); return code == 200 })
	tainted := func() bool {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, tn := range n.Spec.Taints {
			if tn.Key == TaintKey {
				return true
			}
		}
		return false
	}

	// Another VM's event (the document is broadcast to the whole group) changes nothing.
	other := fake.Schedule(imdsfake.AzureEvent{EventType: "Freeze", Resources: []string{"pool_4"}, NotBefore: imdsfake.AzureTime(time.Now().Add(15 * time.Minute)), DurationInSeconds: 5})
	id := fake.Schedule(imdsfake.AzureEvent{EventType: "Freeze", Resources: []string{"pool_3"}, NotBefore: imdsfake.AzureTime(time.Now().Add(15 * time.Minute)), DurationInSeconds: 5})
	testkit.Eventually(t, "the taint", tainted)
	// The condition is a separate write (status subresource): poll for it too.
	var n *corev1.Node
	testkit.Eventually(t, "the condition", func() bool {
		n, _ = env.Client.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
		for _, c := range n.Status.Conditions {
			if c.Type == ConditionType && c.Status == corev1.ConditionTrue {
				if !strings.Contains(c.Message, id) || strings.Contains(c.Message, other) {
					t.Fatalf("condition message %q, want it to name %s only", c.Message, id)
				}
				return true
			}
		}
		return false
	})
	if n.Spec.Unschedulable {
		t.Fatal("a Freeze (default action taint) cordoned the node")
	}
	if err := fake.Complete(id); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the taint to go", func() bool { return !tainted() })
	resp, err := http.Get("http://" + web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "trellis_event_watcher_build_info{") || !strings.Contains(string(body), "trellis_event_watcher_") {
		t.Fatal("metrics missing")
	}

	testbin.Terminate(t, cmd)
}
