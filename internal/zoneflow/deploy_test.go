package zoneflow

import (
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestDeployBase checks deploy/zone-flow-tracer/base against the real API server:
// the objects are accepted (server-side dry run), the DaemonSet has what a
// per-node conntrack reader needs and nothing more (host network, NET_ADMIN
// only, not privileged), and the RBAC grants reads of Nodes and Pods only.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ds := env.CreateManifests(t, testenv.ReadManifests(t, "../../deploy/zone-flow-tracer/base"), "kube-system")
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	nodeName := false
	for _, e := range c.Env {
		if e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	sc := c.SecurityContext
	if !pod.HostNetwork || !nodeName || c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Fatal("DaemonSet lacks hostNetwork, NODE_NAME from the downward API, probes or requests")
	}
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" ||
		len(sc.Capabilities.Add) != 1 || sc.Capabilities.Add[0] != "NET_ADMIN" || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Fatalf("container security context is not NET_ADMIN only: %+v", sc)
	}

	can := func(verb, resource, ns string) bool {
		return env.ServiceAccountMay(t, "kube-system", "zone-flow-tracer", authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Namespace: ns})
	}
	for _, a := range []struct{ verb, res, ns string }{
		{"get", "nodes", ""}, {"list", "nodes", ""}, {"watch", "nodes", ""}, {"list", "pods", ""}, {"watch", "pods", ""}, {"get", "pods", "shop"},
	} {
		if !can(a.verb, a.res, a.ns) {
			t.Errorf("zone-flow-tracer may not %s %s", a.verb, a.res)
		}
	}
	for _, a := range []struct{ verb, res string }{
		{"update", "nodes"}, {"patch", "nodes"}, {"delete", "pods"}, {"list", "secrets"}, {"create", "events"}, {"list", "services"},
	} {
		if can(a.verb, a.res, "default") {
			t.Errorf("zone-flow-tracer may %s %s: more than it needs", a.verb, a.res)
		}
	}
}
