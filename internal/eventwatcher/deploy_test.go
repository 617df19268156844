package eventwatcher

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestDeployBase checks deploy/event-watcher/base against the real API server: the
// objects are accepted (server-side dry run), the DaemonSet has what a per-node
// daemon needs, and the RBAC grants what the controller does and nothing more.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ds := env.CreateManifests(t, testenv.ReadManifests(t, "../../deploy/event-watcher/base"), "kube-system")
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	nodeNameFromDownwardAPI := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeNameFromDownwardAPI = true
		}
	}
	tolerateAll := len(pod.Tolerations) == 1 && pod.Tolerations[0].Operator == corev1.TolerationOpExists && pod.Tolerations[0].Key == ""
	if !pod.HostNetwork || !nodeNameFromDownwardAPI || !tolerateAll || c.ReadinessProbe == nil || c.LivenessProbe == nil ||
		pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || c.Resources.Requests.Cpu().IsZero() {
		t.Fatal("DaemonSet lacks hostNetwork, NODE_NAME from the downward API, tolerate-all, probes, non-root or requests")
	}

	can := func(verb, resource, sub, ns string) bool {
		return env.ServiceAccountMay(t, "kube-system", "event-watcher", authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns})
	}
	for _, a := range []struct{ verb, res, sub, ns string }{
		{"get", "nodes", "", ""}, {"watch", "nodes", "", ""}, {"update", "nodes", "", ""}, {"patch", "nodes", "", ""},
		{"patch", "nodes", "status", ""}, {"list", "pods", "", ""}, {"create", "pods", "eviction", "shoot"},
		{"create", "events", "", "default"}, {"patch", "events", "", "default"},
	} {
		if !can(a.verb, a.res, a.sub, a.ns) {
			t.Errorf("event-watcher may not %s %s/%s", a.verb, a.res, a.sub)
		}
	}
	// To name the budget that blocks an eviction.
	if !env.ServiceAccountMay(t, "kube-system", "event-watcher", authorizationv1.ResourceAttributes{Verb: "list", Group: "policy", Resource: "poddisruptionbudgets", Namespace: "shoot"}) {
		t.Error("event-watcher may not list poddisruptionbudgets")
	}

	// The admission policies that narrow the ClusterRole to its own Node
	// (TestAdmissionPolicyOwnNodeOnly tests them with real tokens) match the
	// base's service account by name.
	policies, bindings := 0, map[string]bool{}
	for _, obj := range testenv.ReadManifests(t, "../../deploy/event-watcher/base") {
		switch o := obj.(type) {
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			policies++
			if len(o.Spec.MatchConditions) != 1 || o.Spec.MatchConditions[0].Expression != "request.userInfo.username == 'system:serviceaccount:kube-system:event-watcher'" ||
				o.Spec.FailurePolicy == nil || *o.Spec.FailurePolicy != admissionregistrationv1.Fail {
				t.Errorf("policy %s: match conditions %+v, failure policy %v", o.Name, o.Spec.MatchConditions, o.Spec.FailurePolicy)
			}
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			if len(o.Spec.ValidationActions) == 1 && o.Spec.ValidationActions[0] == admissionregistrationv1.Deny {
				bindings[o.Spec.PolicyName] = true
			}
		}
	}
	if policies != 2 || !bindings["trellis-event-watcher-own-node"] || !bindings["trellis-event-watcher-own-pods"] {
		t.Errorf("admission policies %d, Deny bindings %v", policies, bindings)
	}

	for _, a := range []struct{ verb, res, sub string }{
		{"list", "secrets", ""}, {"delete", "pods", ""}, {"delete", "nodes", ""}, {"update", "pods", ""}, {"create", "pods", ""},
	} {
		if can(a.verb, a.res, a.sub, "default") {
			t.Errorf("event-watcher may %s %s: more than it needs", a.verb, a.res)
		}
	}
}
