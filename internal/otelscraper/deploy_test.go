package otelscraper

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/trellis-garden/trellis/internal/testenv"
)

func deployObjects(t *testing.T) []runtime.Object {
	return testenv.ReadManifests(t, "../../deploy/otel-shoot-scraper/base")
}

// TestDeployRulesMatchDefaults: the base's rules ConfigMap is the built-in default.
func TestDeployRulesMatchDefaults(t *testing.T) {
	for _, obj := range deployObjects(t) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			if cm.Data["rules.yaml"] != string(DefaultRulesYAML()) {
				t.Fatal("deploy/otel-shoot-scraper/base/rules-configmap.yaml differs from internal/otelscraper/default-rules.yaml")
			}
			if _, err := ParseRules([]byte(cm.Data["rules.yaml"])); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("no rules ConfigMap in the base")
}

// TestDeployBase: the objects are accepted by the real API server (server-side
// dry run), and the RBAC grants what the scraper uses and no more.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var ds *appsv1.DaemonSet
	for _, obj := range deployObjects(t) {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, o, dry)
		case *corev1.ConfigMap:
			_, err = env.Client.CoreV1().ConfigMaps("kube-system").Create(ctx, o, dry)
		case *rbacv1.ClusterRole:
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = env.Client.RbacV1().Roles("kube-system").Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = env.Client.RbacV1().RoleBindings("kube-system").Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.DaemonSet:
			ds = o
			_, err = env.Client.AppsV1().DaemonSets("kube-system").Create(ctx, o, dry)
		default:
			t.Fatalf("unexpected %T", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%T rejected: %v", obj, err)
		}
	}
	if ds == nil || ds.Spec.Template.Spec.Containers[0].ReadinessProbe == nil || ds.Spec.Template.Spec.SecurityContext.RunAsNonRoot == nil {
		t.Fatal("DaemonSet missing or without probes / non-root")
	}
	can := func(verb, resource, sub, ns, name string) bool {
		return env.ServiceAccountMay(t, "kube-system", "otel-shoot-scraper", authorizationv1.ResourceAttributes{Verb: verb, Resource: resource, Subresource: sub, Namespace: ns, Name: name})
	}
	for _, a := range [][5]string{
		{"watch", "nodes", "", "", ""}, {"list", "pods", "", "", ""}, {"get", "nodes", "metrics", "", "n1"},
		{"watch", "configmaps", "", "kube-system", "otel-shoot-scraper-rules"}, {"create", "events", "", "kube-system", ""},
	} {
		if !can(a[0], a[1], a[2], a[3], a[4]) {
			t.Errorf("may not %v", a)
		}
	}
	for _, a := range [][5]string{
		{"get", "configmaps", "", "kube-system", "other"}, {"list", "secrets", "", "kube-system", ""}, {"update", "nodes", "", "", "n1"}, {"get", "nodes", "proxy", "", "n1"},
	} {
		if can(a[0], a[1], a[2], a[3], a[4]) {
			t.Errorf("may %v: more than it needs", a)
		}
	}
}
