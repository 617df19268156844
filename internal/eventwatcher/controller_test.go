package eventwatcher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// azureReboot is an approvable Azure Reboot event starting at notBefore.
func azureReboot(id string, notBefore time.Time) imds.Event {
	return imds.Event{ID: id, Provider: imds.Azure, Type: imds.TypeReboot, RawType: "Reboot", Status: imds.StatusScheduled,
		NotBefore: notBefore, Duration: -1, Description: "Virtual machine is going to be restarted as requested by authorized user.", Approvable: true}
}

// The whole life of an Azure Reboot on a node with a PodDisruptionBudget that
// first blocks the drain: condition, taint, label, cordon, a blocked drain that
// is retried with backoff, the drain finishing once the budget allows it, the
// approval only after that, the event starting and ending, and the uncordon
// once the node is Ready again.
func TestRebootDrainBlockedByPDBThenApproved(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	evict, keep := cl.standardPods()
	cl.createPDB(0)
	cl.playKubelet()

	src := newFakeSource(imds.Azure)
	notBefore := time.Now().Add(15 * time.Minute).Truncate(time.Second)
	id := "C7061BAC-AFDC-4513-B24B-AA5F13A16123"
	src.set(azureReboot(id, notBefore))
	// The first approval fails (the metadata service has a bad moment); the hook
	// checks what was on the node at each approval attempt.
	src.approveErr = []error{&imds.RequestError{Provider: imds.Azure, Path: "/metadata/scheduledevents", Status: 500}}
	var (
		hookMu        sync.Mutex
		podsAtApprove [][]string
		stateAtApprv  []string
	)
	src.onApprove = func(string) {
		hookMu.Lock()
		defer hookMu.Unlock()
		podsAtApprove = append(podsAtApprove, cl.podNames())
		stateAtApprv = append(stateAtApprv, cl.getNode().Annotations[DrainStateAnnotation])
	}
	cfg := cl.testConfig()
	cfg.Approve = true
	r := cl.start(src, cfg)

	// Recorded and acted on: condition, taint, label, cordon with our claim.
	n := cl.waitNode("event on the node", func(n *corev1.Node) string {
		c := condition(n)
		switch {
		case c == nil || c.Status != corev1.ConditionTrue || c.Reason != ConditionReasonScheduled:
			return "condition not True/EventScheduled"
		case ourTaint(n) == nil || ourTaint(n).Value != "Reboot" || ourTaint(n).Effect != corev1.TaintEffectNoSchedule:
			return "no Reboot taint"
		case n.Labels[TimeLabel] != strconv.FormatInt(notBefore.Unix(), 10):
			return "no time label"
		case !n.Spec.Unschedulable || n.Annotations[CordonedAnnotation] != id:
			return "not cordoned by us"
		}
		return ""
	})
	msg := condition(n).Message
	for _, want := range []string{id, "Reboot", "not before " + notBefore.UTC().Format(time.RFC3339), "duration unknown", "action drain"} {
		if !strings.Contains(msg, want) {
			t.Errorf("condition message lacks %q: %s", want, msg)
		}
	}
	if err := r.c.Ready(context.Background()); err != nil {
		t.Errorf("not ready after the first poll and the node: %v", err)
	}
	cl.waitEvent(ReasonEventScheduled, id)
	cl.waitEvent(ReasonCordon, id)
	cl.waitEvent(ReasonDrain, "Draining the node for azure Reboot event "+id)

	// The free pod goes; the guarded one is blocked by its budget, retried with
	// backoff, and reported on the condition and in DrainFailed Events.
	blockedFrom := time.Now()
	cl.waitNode("blocked drain on the condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || !strings.Contains(c.Message, "drain blocked since") || !strings.Contains(c.Message, "pod "+cl.ns+"/web-guarded") {
			return "condition does not say the drain is blocked"
		}
		if n.Annotations[DrainStateAnnotation] != DrainStateDraining || n.Annotations[DrainEventAnnotation] != id {
			return "drain annotations missing"
		}
		return ""
	})
	cl.waitEvent(ReasonDrainFailed, "disruption budget")
	// From the next blocked retry on, the situation is steady: no more writes.
	blocked0 := testutil.ToFloat64(r.c.m.evictionsBlocked)
	testkit.Eventually(cl.t, "another blocked retry", func() bool { return testutil.ToFloat64(r.c.m.evictionsBlocked) >= blocked0+1 })
	cl.assertNoWrites("blocked eviction retries", func() bool { return testutil.ToFloat64(r.c.m.evictionsBlocked) >= blocked0+3 })
	blocked, elapsed := testutil.ToFloat64(r.c.m.evictionsBlocked), time.Since(blockedFrom)
	// 50 ms doubling to 400 ms: a hot loop would try hundreds of times.
	if limit := 6 + elapsed.Seconds()/cfg.MaxRetryInterval.Seconds(); blocked > limit {
		t.Errorf("%v blocked evictions in %s: no backoff (limit %.0f)", blocked, elapsed, limit)
	}
	if names := cl.podNames(); slices.Contains(names, "web-free") || !slices.Contains(names, "web-guarded") {
		t.Fatalf("pods while blocked: %v", names)
	}
	if got := src.approved(); len(got) != 0 {
		t.Fatalf("approved before the drain finished: %v", got)
	}

	// The budget allows one disruption: the drain finishes, then the approval.
	cl.setPDBAllowed(1)
	cl.waitNode("drained", func(n *corev1.Node) string {
		if n.Annotations[DrainStateAnnotation] != DrainStateDrained {
			return "not drained"
		}
		if c := condition(n); c == nil || strings.Contains(c.Message, "blocked") {
			return "condition still says blocked"
		}
		return ""
	})
	cl.waitEvent(ReasonDrain, "Drained the node for scheduled event "+id)
	cl.waitEvent(ReasonApproveFailed, "HTTP 500")
	cl.waitEvent(ReasonApproved, id)
	testkit.EventuallyWithin(t, 30*time.Second, "approval", func() bool { return len(src.approved()) == 1 })
	names := cl.podNames()
	for _, p := range evict {
		if slices.Contains(names, p) {
			t.Errorf("pod %s not evicted", p)
		}
	}
	for _, p := range keep {
		if !slices.Contains(names, p) {
			t.Errorf("pod %s evicted, must stay", p)
		}
	}
	hookMu.Lock()
	if len(podsAtApprove) != 2 {
		t.Errorf("approval attempts = %d, want 2 (one failed, one succeeded)", len(podsAtApprove))
	}
	for i, pods := range podsAtApprove {
		if slices.Contains(pods, "web-guarded") || stateAtApprv[i] != DrainStateDrained {
			t.Errorf("approval attempt %d before the drain finished: pods %v, drain state %q", i, pods, stateAtApprv[i])
		}
	}
	hookMu.Unlock()
	if got := src.approved(); len(got) != 1 || got[0] != id {
		t.Fatalf("approvals = %v", got)
	}
	if c := condition(cl.getNode()); !strings.Contains(c.Message, "drained") || !strings.Contains(c.Message, "approved "+id) {
		t.Errorf("condition after approval: %s", c.Message)
	}

	// The event starts (Azure clears NotBefore), the VM reboots: the node is
	// NotReady when the event disappears.
	started := azureReboot(id, time.Time{})
	started.Status = imds.StatusStarted
	src.set(started)
	cl.waitEvent(ReasonEventStarted, id)
	cl.setReady(false)
	src.set()
	n = cl.waitNode("event over, node not Ready", func(n *corev1.Node) string {
		c := condition(n)
		switch {
		case c == nil || c.Status != corev1.ConditionFalse || c.Reason != ConditionReasonNone:
			return "condition not False"
		case !strings.Contains(c.Message, "waiting for the node to be Ready"):
			return "condition does not say it waits for Ready"
		case ourTaint(n) != nil:
			return "taint still there"
		case n.Labels[TimeLabel] != "":
			return "label still there"
		case hasDrainAnnotations(n):
			return "drain annotations still there"
		}
		return ""
	})
	if !n.Spec.Unschedulable || n.Annotations[CordonedAnnotation] != id {
		t.Fatalf("uncordoned before the node was Ready: unschedulable=%v annotations=%v", n.Spec.Unschedulable, n.Annotations)
	}
	cl.waitEvent(ReasonEventCompleted, id)

	// The kubelet reports Ready again: uncordon, claim dropped.
	cl.setReady(true)
	n = cl.waitNode("uncordoned", func(n *corev1.Node) string {
		if n.Spec.Unschedulable || n.Annotations[CordonedAnnotation] != "" {
			return "still cordoned"
		}
		if c := condition(n); c == nil || c.Message != "No scheduled events" {
			return "condition message not reset"
		}
		return ""
	})
	cl.waitEvent(ReasonUncordon, id)
	// Someone else's taint and the kubelet's condition survived every write.
	// (The API server's admission adds node.kubernetes.io/not-ready on create.)
	if !slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == "example.com/dedicated" }) || ourTaint(n) != nil {
		t.Errorf("taints = %v", n.Spec.Taints)
	}
	if !nodeReady(n) {
		t.Error("the kubelet's Ready condition was lost")
	}

	for _, m := range []struct {
		got  float64
		want float64
		name string
	}{
		{testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(imds.Azure, "Reboot", statusScheduled)), 1, "scheduled transitions"},
		{testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(imds.Azure, "Reboot", statusStarted)), 1, "started transitions"},
		{testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(imds.Azure, "Reboot", statusCompleted)), 1, "completed transitions"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("drain", resultSuccess)), 1, "successful drains"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("cordon", resultSuccess)), 1, "cordons"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("uncordon", resultSuccess)), 1, "uncordons"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("approve", resultSuccess)), 1, "approvals"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("approve", resultError)), 1, "failed approvals"},
		{testutil.ToFloat64(r.c.m.actions.WithLabelValues("evict", resultSuccess)), 2, "evictions"},
		{testutil.ToFloat64(r.c.m.metadataErrors.WithLabelValues("http_5xx")), 1, "approval errors"},
	} {
		if m.got != m.want {
			t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
		}
	}
	if n := testutil.CollectAndCount(r.c.m.drainDuration); n != 1 {
		t.Errorf("drain duration series = %d", n)
	}
	if err := testutil.GatherAndCompare(r.reg, strings.NewReader(""), "trellis_event_watcher_active_events"); err != nil {
		t.Errorf("events gauge after the event: %v", err)
	}
}

// A node that was already cordoned (by an operator, or another tool) is drained
// for the event but never uncordoned by event-watcher.
func TestForeignCordonIsNeverUncordoned(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(true)
	cl.createPod("web", nil, nil)
	cl.playKubelet()
	src := newFakeSource(imds.AWS)
	id := "instance-event-0d59937288b749b32"
	src.set(imds.Event{ID: id, Provider: imds.AWS, Type: imds.TypeReboot, RawType: "system-reboot", Status: imds.StatusScheduled, NotBefore: time.Now().Add(time.Hour), Duration: -1})
	r := cl.start(src, cl.testConfig())
	cl.waitNode("drained", func(n *corev1.Node) string {
		if n.Annotations[DrainStateAnnotation] != DrainStateDrained {
			return "not drained"
		}
		if c := condition(n); c == nil || !strings.Contains(c.Message, "already unschedulable") {
			return "condition does not say the node was already unschedulable"
		}
		return ""
	})
	cl.waitEvent(ReasonCordon, "will not be uncordoned")
	if n := cl.getNode(); n.Annotations[CordonedAnnotation] != "" {
		t.Fatalf("claimed a cordon it did not make: %v", n.Annotations)
	}
	src.set()
	n := cl.waitNode("event over", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionFalse {
			return "condition not False"
		}
		if ourTaint(n) != nil || hasDrainAnnotations(n) {
			return "taint or drain annotations left"
		}
		return ""
	})
	if !n.Spec.Unschedulable {
		t.Fatal("uncordoned a node someone else cordoned")
	}
	if got := testutil.ToFloat64(r.c.m.actions.WithLabelValues("uncordon", resultSuccess)); got != 0 {
		t.Fatalf("uncordons = %v", got)
	}
	if got := cl.nodeEvents(ReasonUncordon); len(got) != 0 {
		t.Fatalf("Uncordon Events: %v", got)
	}
}

// A controller stopped in the middle of a blocked drain and started again
// resumes it from the Node's annotations: same drain start, no second cordon,
// and it still knows that it cordoned the node, so it uncordons it at the end.
func TestRestartResumesDrain(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("web-guarded", map[string]string{"app": "guarded"}, nil)
	cl.createPDB(0)
	cl.playKubelet()
	src := newFakeSource(imds.Azure)
	id := "E-RESTART"
	src.set(azureReboot(id, time.Now().Add(10*time.Minute)))
	first := cl.start(src, cl.testConfig())
	n := cl.waitNode("blocked drain", func(n *corev1.Node) string {
		if c := condition(n); c == nil || !strings.Contains(c.Message, "drain blocked") {
			return "not blocked yet"
		}
		return ""
	})
	first.stop()
	startedAt := n.Annotations[DrainStartedAnnotation]
	if n.Annotations[DrainStateAnnotation] != DrainStateDraining || startedAt == "" || n.Annotations[CordonedAnnotation] != id {
		t.Fatalf("annotations after stop: %v", n.Annotations)
	}

	second := cl.start(src, cl.testConfig())
	cl.waitEvent(ReasonDrain, "Resumed draining the node for scheduled event "+id)
	cl.setPDBAllowed(1)
	n = cl.waitNode("drained", func(n *corev1.Node) string {
		if n.Annotations[DrainStateAnnotation] != DrainStateDrained {
			return "not drained"
		}
		return ""
	})
	if n.Annotations[DrainStartedAnnotation] != startedAt {
		t.Errorf("drain start moved on restart: %s -> %s", startedAt, n.Annotations[DrainStartedAnnotation])
	}
	if got := testutil.ToFloat64(second.c.m.actions.WithLabelValues("cordon", resultSuccess)); got != 0 {
		t.Errorf("second controller cordoned again (%v)", got)
	}
	// The drain is counted after the node's Drained annotation is written.
	testkit.Eventually(cl.t, "second controller counted its drain", func() bool {
		return testutil.ToFloat64(second.c.m.actions.WithLabelValues("drain", resultSuccess)) == 1
	})
	src.set()
	cl.waitNode("uncordoned after restart", func(n *corev1.Node) string {
		if n.Spec.Unschedulable || n.Annotations[CordonedAnnotation] != "" || hasDrainAnnotations(n) {
			return "still cordoned or annotated"
		}
		return ""
	})
	cl.waitEvent(ReasonEventCanceled, id)
}

// Dry run records (condition, Events, metrics) and changes nothing else.
func TestDryRunOnlyRecords(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("web", nil, nil)
	src := newFakeSource(imds.GCP)
	id := "gcp-terminate-1"
	src.set(imds.Event{ID: id, Provider: imds.GCP, Type: imds.TypeTerminate, RawType: "TERMINATE_ON_HOST_MAINTENANCE", Status: imds.StatusScheduled, Duration: -1})
	cfg := cl.testConfig()
	cfg.DryRun, cfg.Approve = true, true
	before := cl.getNode()
	r := cl.start(src, cfg)
	cl.waitNode("condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionTrue || !strings.Contains(c.Message, "action drain (dry run: not acted on)") {
			return "no dry-run condition"
		}
		return ""
	})
	cl.waitEvent(ReasonEventScheduled, id)
	cl.waitEvent(ReasonDrain, "Dry run: would taint, cordon and drain")
	testkit.EventuallyWithin(t, 30*time.Second, "more polls", func() bool { return src.pollCount() > 20 })
	after := cl.getNode()
	if after.Spec.Unschedulable || ourTaint(after) != nil || len(after.Spec.Taints) != len(before.Spec.Taints) {
		t.Errorf("dry run changed the spec: %+v", after.Spec)
	}
	for k := range after.Labels {
		if strings.HasPrefix(k, "trellis.dev/") {
			t.Errorf("dry run set label %s", k)
		}
	}
	for k := range after.Annotations {
		if strings.HasPrefix(k, "trellis.dev/") {
			t.Errorf("dry run set annotation %s", k)
		}
	}
	if !slices.Contains(cl.podNames(), "web") {
		t.Error("dry run evicted a pod")
	}
	if got := testutil.ToFloat64(r.c.m.actions.WithLabelValues("drain", resultDryRun)); got != 1 {
		t.Errorf("dry-run drains = %v", got)
	}
	if got := src.approved(); len(got) != 0 {
		t.Errorf("dry run approved %v", got)
	}
}

// Metadata errors keep the last known state: the taint stays through 5xx, 401,
// timeouts and malformed data, and goes only when a good poll says the event
// is over. Unknown types are recorded and counted but not acted on.
func TestMetadataErrorsKeepState(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	src := newFakeSource(imds.Azure)
	freeze := imds.Event{ID: "F1", Provider: imds.Azure, Type: imds.TypeFreeze, RawType: "Freeze", Status: imds.StatusScheduled, NotBefore: time.Now().Add(time.Hour), Duration: 5 * time.Second}
	src.set(freeze)
	r := cl.start(src, cl.testConfig())
	cl.waitNode("Freeze taint", func(n *corev1.Node) string {
		if t := ourTaint(n); t == nil || t.Value != "Freeze" {
			return "no Freeze taint"
		}
		return ""
	})
	n := cl.waitNode("condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionTrue {
			return "condition not True"
		}
		return ""
	})
	if n.Spec.Unschedulable {
		t.Fatal("Freeze (taint) cordoned the node")
	}
	polls := src.pollCount()
	cl.assertNoWrites("steady polls", func() bool { return src.pollCount() >= polls+20 })
	for _, err := range []error{
		&imds.RequestError{Provider: imds.Azure, Path: "/metadata/scheduledevents", Status: 503},
		&imds.RequestError{Provider: imds.Azure, Path: "/metadata/scheduledevents", Status: 429},
		&imds.RequestError{Provider: imds.Azure, Path: "/metadata/scheduledevents", Err: context.DeadlineExceeded},
		&imds.ParseError{Provider: imds.Azure, Path: "/metadata/scheduledevents", Err: strconvErr()},
	} {
		kind := errorKind(err)
		before := testutil.ToFloat64(r.c.m.metadataErrors.WithLabelValues(kind))
		src.fail(err)
		testkit.EventuallyWithin(t, 30*time.Second, kind+" errors", func() bool {
			return testutil.ToFloat64(r.c.m.metadataErrors.WithLabelValues(kind)) >= before+3
		})
		if n := cl.getNode(); ourTaint(n) == nil || condition(n).Status != corev1.ConditionTrue {
			t.Fatalf("%s: state dropped on a metadata error", kind)
		}
	}
	// Back, with an event of a type nobody knows: recorded, counted, no action.
	unknown := imds.Event{ID: "U1", Provider: imds.Azure, Type: "Hibernate", RawType: "Hibernate", Status: imds.StatusScheduled, NotBefore: time.Now().Add(time.Hour), Duration: -1}
	src.set(unknown)
	cl.waitNode("unknown event recorded only", func(n *corev1.Node) string {
		c := condition(n)
		if c == nil || c.Status != corev1.ConditionTrue || !strings.Contains(c.Message, "Hibernate event U1") || !strings.Contains(c.Message, "action none") {
			return "condition does not describe the unknown event"
		}
		if ourTaint(n) != nil {
			return "taint left for an event of unknown type"
		}
		return ""
	})
	cl.waitEvent(ReasonEventCanceled, "F1") // gone before its NotBefore
	if got := testutil.ToFloat64(r.c.m.unknownTypes.WithLabelValues(imds.Azure, "Hibernate")); got != 1 {
		t.Errorf("unknown types = %v", got)
	}
	// A notice the client could not parse: counted once, reported, no action.
	src.setUnknown(imds.UnknownEvent{ID: "X9", Provider: imds.Azure, RawType: "Reincarnate"})
	cl.waitNode("notice not understood on the condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || !strings.Contains(c.Message, `not understood, no action: azure notice "Reincarnate" (X9)`) {
			return "condition does not mention the notice"
		}
		return ""
	})
	cl.waitEvent(ReasonEventNotUnderstood, "Reincarnate")
	if got := testutil.ToFloat64(r.c.m.unknownTypes.WithLabelValues(imds.Azure, "Reincarnate")); got != 1 {
		t.Errorf("notices not understood = %v", got)
	}
	src.setUnknown()
	src.set()
	cl.waitNode("all clear", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionFalse || c.Message != "No scheduled events" || n.Labels[TimeLabel] != "" {
			return "not cleared"
		}
		return ""
	})
}

func strconvErr() error {
	_, err := strconv.Atoi("not a number")
	return err
}

// Without a NotBefore the drain has DrainTimeout; a pod that never goes away
// (here: no kubelet finishes it) makes the drain overdue, which is reported
// once while the drain goes on.
func TestDrainDeadlineWithoutNotBefore(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cl.createPod("stuck", nil, nil) // no playKubelet: stays Terminating
	src := newFakeSource(imds.GCP)
	src.set(imds.Event{ID: "gcp-preempt", Provider: imds.GCP, Type: imds.TypePreempt, RawType: "preempted", Status: imds.StatusStarted, Duration: -1})
	cfg := cl.testConfig()
	cfg.DrainTimeout = 300 * time.Millisecond
	r := cl.start(src, cfg)
	cl.waitEvent(ReasonDrainFailed, "did not finish by its deadline")
	cl.waitNode("overdue on the condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || !strings.Contains(c.Message, "drain overdue") {
			return "condition does not say overdue"
		}
		return ""
	})
	p, err := cl.client.CoreV1().Pods(cl.ns).Get(context.Background(), "stuck", metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		t.Fatalf("stuck pod not evicted: %v %v", p, err)
	}
	if got := testutil.ToFloat64(r.c.m.actions.WithLabelValues("drain", resultTimeout)); got != 1 {
		t.Errorf("drain timeouts = %v", got)
	}
	// The pod finally goes: the drain completes after all.
	if err := cl.client.CoreV1().Pods(cl.ns).Delete(context.Background(), "stuck", metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))}); err != nil && !isNotFound(err) {
		t.Fatal(err)
	}
	cl.waitNode("drained late", func(n *corev1.Node) string {
		if n.Annotations[DrainStateAnnotation] != DrainStateDrained {
			return "not drained"
		}
		return ""
	})
}
