package eventwatcher

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

// awsSource starts the fake EC2 metadata service and the real IMDSv2 client.
func awsSource(t *testing.T) (*imdsfake.AWS, imds.Client) {
	t.Helper()
	fake := imdsfake.NewAWS()
	srv := fake.Start()
	t.Cleanup(srv.Close)
	src, err := imds.NewAWS(imds.AWSOptions{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return fake, src
}

// AWS through the real IMDSv2 client: a scheduled system-reboot whose drain is
// blocked by a PodDisruptionBudget is canceled by EC2 (State canceled) and the
// node is clean again; a spot interruption (2 min notice) is drained at once
// with no false "late" warning.
func TestAWSCancelAndSpotThroughIMDS(t *testing.T) {
	t.Run("cancel-during-blocked-drain", func(t *testing.T) {
		cl := newCluster(t)
		cl.createNode(false)
		cl.createPod("web-guarded", map[string]string{"app": "guarded"}, nil)
		cl.createPDB(0)
		cl.playKubelet()
		fake, src := awsSource(t)
		id := fake.AddScheduled(imdsfake.AWSScheduledEvent{Code: "system-reboot", Description: "scheduled reboot",
			NotBefore: imdsfake.AWSTime(time.Now().Add(time.Hour)), NotAfter: imdsfake.AWSTime(time.Now().Add(2 * time.Hour))})
		r := cl.start(src, cl.testConfig())
		cl.waitNode("blocked drain", func(n *corev1.Node) string {
			if c := condition(n); c == nil || !strings.Contains(c.Message, "blocked by PodDisruptionBudget "+cl.ns+"/guarded") {
				return "not blocked yet"
			}
			return ""
		})
		if err := fake.Cancel(id); err != nil {
			t.Fatal(err)
		}
		cl.waitNode("canceled on the node", func(n *corev1.Node) string {
			if c := condition(n); c == nil || c.Status != corev1.ConditionFalse {
				return "condition not False"
			}
			if ourTaint(n) != nil || n.Spec.Unschedulable || hasDrainAnnotations(n) {
				return "still tainted, cordoned or draining"
			}
			return ""
		})
		cl.waitEvent(ReasonEventCanceled, id)
		if got := r.counter("actions", "drain", resultCanceled); got != 1 {
			t.Errorf("canceled drains = %v", got)
		}
		if got := r.counter("transitions", imds.AWS, string(imds.TypeReboot), statusCanceled); got != 1 {
			t.Errorf("canceled transitions = %v", got)
		}
	})
	t.Run("spot-interruption", func(t *testing.T) {
		cl := newCluster(t)
		cl.createNode(false)
		cl.createPod("web", nil, nil)
		cl.playKubelet()
		fake, src := awsSource(t)
		fake.SetSpotInstanceAction("terminate", time.Now().Add(2*time.Minute))
		cfg := cl.testConfig()
		cfg.DrainMargin = DefaultDrainMargin
		r := cl.start(src, cfg)
		cl.waitNode("drained", drained)
		cl.waitEvent(ReasonDrain, "Draining the node for aws Preempt event")
		if got := cl.nodeEvents(ReasonDrainFailed); len(got) != 0 {
			t.Errorf("DrainFailed for a drain that was on time: %q", got[0].Message)
		}
		if got := r.counter("actions", "drain", resultTimeout); got != 0 {
			t.Errorf("drain timeouts = %v", got)
		}
		if got := r.counter("actions", "evict", resultSuccess); got != 1 {
			t.Errorf("evictions = %v", got)
		}
	})
}
