package eventwatcher

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// drained checks the Drained annotation and the condition that reports it,
// written after it in the same pass.
func drained(n *corev1.Node) string {
	if n.Annotations[DrainStateAnnotation] != DrainStateDrained {
		return "not drained"
	}
	if c := condition(n); c == nil || !strings.Contains(c.Message, "; drained") {
		return "condition does not say drained"
	}
	return ""
}

// metric reads one series of a counter vector.
func (r *running) counter(name string, labels ...string) float64 {
	switch name {
	case "actions":
		return testutil.ToFloat64(r.c.m.actions.WithLabelValues(labels...))
	case "left":
		return testutil.ToFloat64(r.c.m.podsLeft.WithLabelValues(labels...))
	case "transitions":
		return testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(labels...))
	case "blocked":
		return testutil.ToFloat64(r.c.m.evictionsBlocked)
	}
	panic(name)
}

// By default a drain follows kubectl drain: a pod without a controller (nothing
// would recreate it) and a pod with emptyDir data are left on the node and
// reported, the others are evicted and the drain completes. For an event type
// listed in Force and DeleteEmptyDirData both are evicted.
func TestDrainPolicyBarePodAndEmptyDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typ   imds.EventType
		force bool
	}{
		{"reboot-default-policy", imds.TypeReboot, false},
		{"terminate-forced", imds.TypeTerminate, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			cl.createNode(false)
			cl.createPod("web", nil, nil)
			cl.createPod("bare", nil, bare)
			cl.createPod("scratch", nil, withEmptyDir)
			cl.playKubelet()
			src := newFakeSource(imds.Azure)
			id := "E-POLICY"
			ev := azureReboot(id, time.Now().Add(10*time.Minute))
			ev.Type, ev.RawType = tc.typ, string(tc.typ)
			src.set(ev)
			cfg := cl.testConfig()
			if tc.force {
				// Listing another type must not matter.
				cfg.Force = map[imds.EventType]bool{imds.TypeTerminate: true, imds.TypeReboot: false}
				cfg.DeleteEmptyDirData = map[imds.EventType]bool{imds.TypeTerminate: true}
			}
			r := cl.start(src, cfg)
			n := cl.waitNode("drained", drained)
			names := cl.podNames()
			if slices.Contains(names, "web") {
				t.Errorf("pod web not evicted: %v", names)
			}
			msg := condition(n).Message
			if !tc.force {
				if !slices.Contains(names, "bare") || !slices.Contains(names, "scratch") {
					t.Fatalf("bare or emptyDir pod evicted without --drain.force/--drain.delete-emptydir-data: %v", names)
				}
				for _, want := range []string{"drained", "left on the node: pod " + cl.ns + "/bare (no controller)", "pod " + cl.ns + "/scratch (emptydir)"} {
					if !strings.Contains(msg, want) {
						t.Errorf("condition lacks %q: %s", want, msg)
					}
				}
				cl.waitEvent(ReasonPodNotEvicted, "Pod "+cl.ns+"/bare has no controller")
				cl.waitEvent(ReasonPodNotEvicted, "Pod "+cl.ns+"/scratch has emptyDir volumes")
				cl.waitEvent(ReasonDrain, "left on the node: pod "+cl.ns+"/bare")
				if got := r.counter("left", leftNoController); got != 1 {
					t.Errorf("pods left without controller = %v, want 1", got)
				}
				if got := r.counter("left", leftEmptyDir); got != 1 {
					t.Errorf("pods left with emptyDir = %v, want 1", got)
				}
				if got := r.counter("actions", "evict", resultSuccess); got != 1 {
					t.Errorf("evictions = %v, want 1", got)
				}
			} else {
				if slices.Contains(names, "bare") || slices.Contains(names, "scratch") {
					t.Fatalf("pods left although Terminate is forced: %v", names)
				}
				if strings.Contains(msg, "left on the node") {
					t.Errorf("condition: %s", msg)
				}
				if got := cl.nodeEvents(ReasonPodNotEvicted); len(got) != 0 {
					t.Errorf("PodNotEvicted Events: %v", got)
				}
				if got := r.counter("actions", "evict", resultSuccess); got != 3 {
					t.Errorf("evictions = %v, want 3", got)
				}
			}
			if got := r.counter("actions", "drain", resultSuccess); got != 1 {
				t.Errorf("drains = %v", got)
			}
		})
	}
}

// A pod that keeps terminating (a finalizer nobody removes, a dead kubelet) is
// waited for only until --drain.terminating-timeout after its deletion time:
// then it is reported (Event, condition, metric) and the drain completes.
func TestStuckTerminatingPodIsNotWaitedFor(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("web", nil, nil)
	cl.createPod("held", nil, func(p *corev1.Pod) { p.Finalizers = []string{"example.com/hold"} })
	t.Cleanup(func() {
		_, _ = cl.client.CoreV1().Pods(cl.ns).Patch(context.Background(), "held", "application/merge-patch+json",
			[]byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	})
	cl.playKubelet() // deletes with grace 0: the finalizer keeps the pod
	src := newFakeSource(imds.AWS)
	src.set(imds.Event{ID: "instance-event-held", Provider: imds.AWS, Type: imds.TypeReboot, RawType: "system-reboot",
		Status: imds.StatusScheduled, NotBefore: time.Now().Add(time.Hour), Duration: -1})
	cfg := cl.testConfig()
	cfg.TerminatingTimeout = 500 * time.Millisecond
	r := cl.start(src, cfg)
	n := cl.waitNode("drained", drained)
	if msg := condition(n).Message; !strings.Contains(msg, "left on the node: pod "+cl.ns+"/held stuck terminating") {
		t.Errorf("condition: %s", msg)
	}
	p, err := cl.client.CoreV1().Pods(cl.ns).Get(context.Background(), "held", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("held pod: %v %v", p, err)
	}
	if slices.Contains(cl.podNames(), "web") {
		t.Error("pod web not evicted")
	}
	cl.waitEvent(ReasonPodStuckTerminating, "Pod "+cl.ns+"/held is still terminating")
	if got := r.counter("left", leftStuckTerminating); got != 1 {
		t.Errorf("stuck pods = %v, want 1", got)
	}
	if got := r.counter("actions", "drain", resultSuccess); got != 1 {
		t.Errorf("drains = %v", got)
	}
	if got := r.counter("actions", "drain", resultTimeout); got != 0 {
		t.Errorf("drain timeouts = %v", got)
	}
}

// An eviction answered with 429 because the PodDisruptionBudget's status is not
// observed yet (the API server asks to retry after 10 s) is reported as blocked
// with the budget's name, does not hold up the other pods' evictions, and does
// not hold up a cancellation: the event is withdrawn while the retry waits, and
// the node is clean again before any second attempt.
func TestUnobservedPDBBlocksOnlyItsPod(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("free", map[string]string{"app": "free"}, nil)
	cl.createPod("guarded", map[string]string{"app": "guarded"}, nil)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "slow-budget", Namespace: cl.ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptrTo(intstr.FromInt32(0)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}}},
	}
	// No status: no disruption controller has observed it.
	if _, err := cl.client.PolicyV1().PodDisruptionBudgets(cl.ns).Create(context.Background(), pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cl.playKubelet()
	src := newFakeSource(imds.Azure)
	id := "E-UNOBSERVED"
	src.set(azureReboot(id, time.Now().Add(30*time.Minute)))
	cfg := cl.testConfig()
	cfg.EvictionRetry = time.Second // Retry-After (10 s) is longer: it decides
	r := cl.start(src, cfg)

	cl.waitNode("blocked drain on the condition", func(n *corev1.Node) string {
		c := condition(n)
		if c == nil || !strings.Contains(c.Message, "drain blocked since") ||
			!strings.Contains(c.Message, "pod "+cl.ns+"/guarded: blocked by PodDisruptionBudget "+cl.ns+"/slow-budget") {
			return "condition does not name the budget"
		}
		return ""
	})
	cl.waitEvent(ReasonDrainFailed, "Eviction of pod "+cl.ns+"/guarded is blocked, retrying in 10s: blocked by PodDisruptionBudget "+cl.ns+"/slow-budget")
	testkit.Eventually(cl.t, "free pod gone", func() bool { return !slices.Contains(cl.podNames(), "free") })
	// The free pod went in the first round, while the guarded one waits for its
	// retry: one blocked attempt so far.
	if got := r.counter("blocked"); got != 1 {
		t.Fatalf("blocked evictions before the retry = %v, want 1", got)
	}
	if got := r.counter("actions", "evict", resultBlocked); got != 1 {
		t.Errorf("evictions counted blocked = %v", got)
	}
	if got := r.counter("actions", "evict", resultError); got != 0 {
		t.Errorf("blocked evictions counted as errors: %v", got)
	}

	// Withdrawn while the blocked retry waits.
	src.set()
	cl.waitNode("cancellation on the node", func(n *corev1.Node) string {
		c := condition(n)
		switch {
		case c == nil || c.Status != corev1.ConditionFalse:
			return "condition not False"
		case ourTaint(n) != nil || n.Spec.Unschedulable || hasDrainAnnotations(n):
			return "still tainted, cordoned or draining"
		}
		return ""
	})
	if got := r.counter("blocked"); got != 1 {
		t.Errorf("blocked evictions after the cancellation = %v: the cancellation waited for a retry", got)
	}
	cl.waitEvent(ReasonEventCanceled, id)
	cl.waitEvent(ReasonDrain, "Stopped draining")
	if got := r.counter("actions", "drain", resultCanceled); got != 1 {
		t.Errorf("canceled drains = %v", got)
	}
	if !slices.Contains(cl.podNames(), "guarded") {
		t.Error("guarded pod evicted")
	}
}

// An event this daemon approved and that is gone before a poll showed it
// Started ran (Azure starts an approved event at once): it is reported as
// completed, not canceled.
func TestApprovedThenGoneIsCompleted(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("web", nil, nil)
	cl.playKubelet()
	src := newFakeSource(imds.Azure)
	id := "E-APPROVED-GONE"
	src.set(azureReboot(id, time.Now().Add(10*time.Minute)))
	cfg := cl.testConfig()
	cfg.Approve = true
	r := cl.start(src, cfg)
	cl.waitEvent(ReasonApproved, id)
	testkit.Eventually(cl.t, "approval counted", func() bool { return r.counter("actions", "approve", resultSuccess) == 1 })
	src.set() // over before any poll saw it Started
	cl.waitNode("event over, uncordoned", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionFalse {
			return "condition not False"
		}
		if ourTaint(n) != nil || n.Spec.Unschedulable || hasDrainAnnotations(n) {
			return "still tainted, cordoned or draining"
		}
		return ""
	})
	cl.waitEvent(ReasonEventCompleted, id)
	if got := cl.nodeEvents(ReasonEventCanceled); len(got) != 0 {
		t.Errorf("EventCanceled recorded: %v", got[0].Message)
	}
	if got := r.counter("transitions", imds.Azure, "Reboot", statusCompleted); got != 1 {
		t.Errorf("completed = %v", got)
	}
	if got := r.counter("transitions", imds.Azure, "Reboot", statusCanceled); got != 0 {
		t.Errorf("canceled = %v", got)
	}
	if got := r.counter("actions", "drain", resultSuccess); got != 1 {
		t.Errorf("drains = %v", got)
	}
	if got := r.counter("actions", "drain", resultCanceled); got != 0 {
		t.Errorf("canceled drains = %v", got)
	}
}

// Short notices, per cloud, with the default drain margin (30 s): an Azure spot
// eviction (Preempt, 30 s notice), an AWS spot interruption (2 min) and a GCP
// preemption (already started, no date) are drained at once, and a drain that
// takes well under its notice is not reported late.
func TestShortNoticeDrainsWithoutFalseAlarm(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		ev     imds.Event
		margin time.Duration // the expected distance of the deadline before NotBefore
	}{
		{"azure-preempt", imds.Event{ID: "E-SPOT", Provider: imds.Azure, Type: imds.TypePreempt, RawType: "Preempt", Status: imds.StatusScheduled,
			NotBefore: now.Add(30 * time.Second), Duration: -1, Description: "Spot eviction"}, 15 * time.Second},
		{"aws-spot", imds.Event{ID: "spot-instance-action", Provider: imds.AWS, Type: imds.TypePreempt, RawType: "terminate", Status: imds.StatusScheduled,
			NotBefore: now.Add(2 * time.Minute), Duration: -1}, 30 * time.Second},
		{"gcp-preempted", imds.Event{ID: "gcp-preempted", Provider: imds.GCP, Type: imds.TypePreempt, RawType: "preempted", Status: imds.StatusStarted,
			Duration: -1}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newCluster(t)
			cl.createNode(false)
			cl.createPod("web", nil, nil)
			cl.createPod("api", nil, nil)
			cl.playKubelet()
			src := newFakeSource(tc.ev.Provider)
			src.set(tc.ev)
			cfg := cl.testConfig()
			cfg.DrainMargin = DefaultDrainMargin
			r := cl.start(src, cfg)
			cl.waitNode("drained", drained)
			e := cl.waitEvent(ReasonDrain, "Draining the node for "+tc.ev.Provider+" Preempt event "+tc.ev.ID)
			_, after, _ := strings.Cut(e.Message, "; deadline ")
			deadline, err := time.Parse(time.RFC3339, after)
			if err != nil {
				t.Fatalf("deadline in %q: %v", e.Message, err)
			}
			if !tc.ev.NotBefore.IsZero() {
				// The drain started after the event was created: its notice is at most
				// the event's, so the deadline is at most margin before NotBefore.
				if d := tc.ev.NotBefore.Sub(deadline); d > tc.margin+time.Second || d < 0 {
					t.Errorf("deadline %s is %s before NotBefore, want at most %s", deadline, d, tc.margin)
				}
			} else if d := deadline.Sub(time.Now()); d < DefaultDrainTimeout-time.Minute {
				t.Errorf("deadline of a started event %s: %s from now, want about --drain.timeout", deadline, d)
			}
			if got := cl.nodeEvents(ReasonDrainFailed); len(got) != 0 {
				t.Errorf("DrainFailed for a drain that was on time: %q", got[0].Message)
			}
			if got := r.counter("actions", "drain", resultTimeout); got != 0 {
				t.Errorf("drain timeouts = %v", got)
			}
			if got := r.counter("actions", "evict", resultSuccess); got != 2 {
				t.Errorf("evictions = %v", got)
			}
		})
	}
}

// Cancellation during a drain blocked by a PodDisruptionBudget, per cloud: the
// cloud withdraws the event (Azure drops it, AWS marks it canceled and the
// client drops it, GCP's maintenance goes back to NONE) and the node is
// uncordoned and untainted, the drain stopped and counted canceled.
func TestCancelDuringBlockedDrain(t *testing.T) {
	later := time.Now().Add(time.Hour)
	for _, ev := range []imds.Event{
		azureReboot("E-CANCEL", later),
		{ID: "instance-event-0cancel", Provider: imds.AWS, Type: imds.TypeReboot, RawType: "system-reboot", Status: imds.StatusScheduled, NotBefore: later, Duration: -1},
		{ID: "gcp-maintenance", Provider: imds.GCP, Type: imds.TypeTerminate, RawType: "TERMINATE_ON_HOST_MAINTENANCE", Status: imds.StatusScheduled, NotBefore: later, Duration: -1},
	} {
		t.Run(ev.Provider, func(t *testing.T) {
			cl := newCluster(t)
			cl.createNode(false)
			cl.createPod("web-guarded", map[string]string{"app": "guarded"}, nil)
			cl.createPDB(0)
			cl.playKubelet()
			src := newFakeSource(ev.Provider)
			src.set(ev)
			r := cl.start(src, cl.testConfig())
			cl.waitNode("blocked drain", func(n *corev1.Node) string {
				if c := condition(n); c == nil || !strings.Contains(c.Message, "blocked by PodDisruptionBudget "+cl.ns+"/guarded") {
					return "not blocked yet"
				}
				return ""
			})
			src.set()
			cl.waitNode("canceled on the node", func(n *corev1.Node) string {
				if c := condition(n); c == nil || c.Status != corev1.ConditionFalse {
					return "condition not False"
				}
				if ourTaint(n) != nil || n.Spec.Unschedulable || hasDrainAnnotations(n) || n.Labels[TimeLabel] != "" {
					return "still tainted, cordoned, labelled or draining"
				}
				return ""
			})
			cl.waitEvent(ReasonEventCanceled, ev.ID)
			cl.waitEvent(ReasonUncordon, ev.ID)
			if got := r.counter("actions", "drain", resultCanceled); got != 1 {
				t.Errorf("canceled drains = %v", got)
			}
			if got := r.counter("transitions", ev.Provider, string(ev.Type), statusCanceled); got != 1 {
				t.Errorf("canceled transitions = %v", got)
			}
			if !slices.Contains(cl.podNames(), "web-guarded") {
				t.Error("guarded pod evicted")
			}
		})
	}
}
