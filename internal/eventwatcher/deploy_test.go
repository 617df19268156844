package eventwatcher

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestDeployBase checks deploy/event-watcher/base against the real API server: the
// objects are accepted (server-side dry run), the DaemonSet has what a per-node
// daemon needs, and the RBAC grants what the controller does and nothing more.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var ds *appsv1.DaemonSet
	for _, obj := range testenv.ReadManifests(t, "../../deploy/event-watcher/base") {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, o, dry)
		case *rbacv1.ClusterRole:
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.DaemonSet:
			ds = o
			_, err = env.Client.AppsV1().DaemonSets("kube-system").Create(ctx, o, dry)
		default:
			t.Fatalf("unexpected %T in the base", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%T rejected: %v", obj, err)
		}
	}
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
	for _, a := range []struct{ verb, res, sub string }{
		{"list", "secrets", ""}, {"delete", "pods", ""}, {"delete", "nodes", ""}, {"update", "pods", ""}, {"create", "pods", ""},
	} {
		if can(a.verb, a.res, a.sub, "default") {
			t.Errorf("event-watcher may %s %s: more than it needs", a.verb, a.res)
		}
	}
}
