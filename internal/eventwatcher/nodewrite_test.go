package eventwatcher

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testNode(unschedulable, ready bool, annotations map[string]string, taints ...corev1.Taint) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Annotations: annotations},
		Spec:       corev1.NodeSpec{Unschedulable: unschedulable, Taints: taints},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}},
	}
}

func TestMutateSpec(t *testing.T) {
	other := corev1.Taint{Key: "example.com/other", Effect: corev1.TaintEffectNoExecute}
	ours := corev1.Taint{Key: TaintKey, Value: "Reboot", Effect: corev1.TaintEffectNoSchedule}
	stale := corev1.Taint{Key: TaintKey, Value: "Freeze", Effect: corev1.TaintEffectNoSchedule}
	mine := map[string]string{CordonedAnnotation: "E1"}
	now := time.Now()
	cases := []struct {
		name string
		node *corev1.Node
		want specWant
		// expected outcome
		ch            specChange
		taints        []corev1.Taint
		unschedulable bool
		annotated     bool
	}{
		{"taint added, others kept", testNode(false, true, nil, other), specWant{taint: &ours},
			specChange{taint: true, taintValue: "Reboot"}, []corev1.Taint{other, ours}, false, false},
		{"stale value replaced", testNode(false, true, nil, stale, other), specWant{taint: &ours},
			specChange{taint: true, taintValue: "Reboot"}, []corev1.Taint{other, ours}, false, false},
		{"already right: no write", testNode(false, true, nil, other, ours), specWant{taint: &ours},
			specChange{}, []corev1.Taint{other, ours}, false, false},
		{"taint removed", testNode(false, true, nil, ours, other), specWant{},
			specChange{untaint: true}, []corev1.Taint{other}, false, false},
		{"cordon claims the node", testNode(false, true, nil), specWant{cordon: true, eventID: "E1"},
			specChange{cordon: true, cordID: "E1"}, nil, true, true},
		{"cordoned by someone else: not claimed", testNode(true, true, nil), specWant{cordon: true, eventID: "E1"},
			specChange{foreign: true}, nil, true, false},
		{"uncordoned by someone else mid-event: cordoned again", testNode(false, true, mine), specWant{cordon: true, eventID: "E2"},
			specChange{cordon: true, cordID: "E1"}, nil, true, true},
		{"uncordon when Ready", testNode(true, true, mine), specWant{},
			specChange{uncordon: true, cordID: "E1"}, nil, false, false},
		{"no uncordon while not Ready", testNode(true, false, mine), specWant{},
			specChange{waitReady: true}, nil, true, true},
		{"never uncordon a node someone else cordoned", testNode(true, true, nil), specWant{},
			specChange{}, nil, true, false},
		{"someone else uncordoned: forget the claim", testNode(false, true, mine), specWant{},
			specChange{release: true}, nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.node.DeepCopy()
			ch := mutateSpec(n, tc.want, now)
			if ch != tc.ch {
				t.Errorf("change = %+v, want %+v", ch, tc.ch)
			}
			if len(n.Spec.Taints) != len(tc.taints) {
				t.Fatalf("taints = %v, want %v", n.Spec.Taints, tc.taints)
			}
			for i := range tc.taints {
				if n.Spec.Taints[i].Key != tc.taints[i].Key || n.Spec.Taints[i].Value != tc.taints[i].Value {
					t.Errorf("taints = %v, want %v", n.Spec.Taints, tc.taints)
				}
			}
			if n.Spec.Unschedulable != tc.unschedulable {
				t.Errorf("unschedulable = %v", n.Spec.Unschedulable)
			}
			if _, ok := n.Annotations[CordonedAnnotation]; ok != tc.annotated {
				t.Errorf("cordon annotation present = %v", ok)
			}
		})
	}
	noExec := corev1.Taint{Key: TaintKey, Value: "Preempt", Effect: corev1.TaintEffectNoExecute}
	n := testNode(false, true, nil)
	mutateSpec(n, specWant{taint: &noExec}, now)
	if n.Spec.Taints[0].TimeAdded == nil {
		t.Error("NoExecute taint without TimeAdded")
	}
}

func TestSkipReason(t *testing.T) {
	pod := func(mut func(p *corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
		mut(p)
		return p
	}
	cases := map[string]struct {
		pod  *corev1.Pod
		skip bool
	}{
		"plain": {pod(func(*corev1.Pod) {}), false},
		"replica": {pod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet"}}
		}), false},
		"daemonset": {pod(func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet"}}
		}), true},
		"mirror":                        {pod(func(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} }), true},
		"self":                          {pod(func(p *corev1.Pod) { p.Name = "event-watcher-abc" }), true},
		"finished":                      {pod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), true},
		"terminating, still waited for": {pod(func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }), false},
	}
	for name, tc := range cases {
		if got := skipReason(tc.pod, "ns", "event-watcher-abc"); (got != "") != tc.skip {
			t.Errorf("%s: skipReason = %q", name, got)
		}
	}
}
