package egressreporter

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/testenv"
)

// sar asks the API server whether the ServiceAccount may do something.
func sar(t *testing.T, env *testenv.Env, sa, saNamespace, verb, group, resource, name, ns string) bool {
	t.Helper()
	return env.ServiceAccountMay(t, saNamespace, sa, authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Name: name, Namespace: ns})
}

// TestDeployBase checks deploy/egress-reporter/base (the seed side) against the
// real API server: accepted (server-side dry run), a leader-elected Deployment
// with two replicas and a PDB, and RBAC limited to the Infrastructure and the
// Lease in the shoot's namespace.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t) // the shoot's namespace in the seed
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var dep *appsv1.Deployment
	var pdb *policyv1.PodDisruptionBudget
	for _, obj := range testenv.ReadManifests(t, "../../deploy/egress-reporter/base") {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts(ns).Create(ctx, o, dry)
		case *corev1.Secret:
			_, err = env.Client.CoreV1().Secrets(ns).Create(ctx, o, dry)
		case *rbacv1.Role: // for real: the checks below use it
			_, err = env.Client.RbacV1().Roles(ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Subjects[0].Namespace = ns // kustomize's namespace transformer does this
			_, err = env.Client.RbacV1().RoleBindings(ns).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			dep = o
			_, err = env.Client.AppsV1().Deployments(ns).Create(ctx, o, dry)
		case *policyv1.PodDisruptionBudget:
			pdb = o
			_, err = env.Client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, o, dry)
		default:
			t.Fatalf("unexpected %T in the base", obj)
		}
		if err != nil {
			t.Fatalf("%T rejected: %v", obj, err)
		}
	}
	if dep == nil || pdb == nil {
		t.Fatal("no Deployment or PDB")
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	args := map[string]bool{}
	for _, a := range c.Args {
		args[a] = true
	}
	podNS := false
	for _, e := range c.Env {
		podNS = podNS || (e.Name == "POD_NAMESPACE" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace")
	}
	if *dep.Spec.Replicas != 2 || !args["--leader-elect"] || !podNS || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Fatal("Deployment lacks 2 replicas, --leader-elect, POD_NAMESPACE, or the PDB maxUnavailable 1")
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() {
		t.Fatal("Deployment lacks non-root, read-only root, probes or requests")
	}

	can := func(verb, group, resource, name, namespace string) bool {
		return sar(t, env, "egress-reporter", ns, verb, group, resource, name, namespace)
	}
	for _, a := range []struct{ verb, group, res, name string }{
		{"get", "extensions.gardener.cloud", "infrastructures", ""}, {"list", "extensions.gardener.cloud", "infrastructures", ""},
		{"watch", "extensions.gardener.cloud", "infrastructures", ""}, {"create", "coordination.k8s.io", "leases", ""},
		{"get", "coordination.k8s.io", "leases", "trellis-egress-reporter"}, {"update", "coordination.k8s.io", "leases", "trellis-egress-reporter"},
	} {
		if !can(a.verb, a.group, a.res, a.name, ns) {
			t.Errorf("reporter may not %s %s %s", a.verb, a.res, a.name)
		}
	}
	for _, a := range []struct{ verb, group, res, name, ns string }{
		{"list", "extensions.gardener.cloud", "infrastructures", "", "other"}, {"update", "extensions.gardener.cloud", "infrastructures", "", ns},
		{"update", "coordination.k8s.io", "leases", "someone-else", ns}, {"get", "", "secrets", "", ns}, {"list", "", "configmaps", "", ns},
	} {
		if can(a.verb, a.group, a.res, a.name, a.ns) {
			t.Errorf("reporter may %s %s %s in %s: more than it needs", a.verb, a.res, a.name, a.ns)
		}
	}
}

// TestDeployShoot checks deploy/egress-reporter/shoot: the probe DaemonSet is
// accepted and has what a per-node probe needs; the reporter's shoot identity can
// server-side apply shoot-info (create and patch) and nothing else of
// kube-system's ConfigMaps; the probe can annotate an existing Node but not
// create one.
func TestDeployShoot(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ds := env.CreateManifests(t, testenv.ReadManifests(t, "../../deploy/egress-reporter/shoot"), "kube-system")
	if ds == nil {
		t.Fatal("no DaemonSet")
	}
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	nodeName := false
	for _, e := range c.Env {
		nodeName = nodeName || (e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName")
	}
	if len(c.Args) == 0 || c.Args[0] != "probe" || !nodeName || !pod.HostNetwork || len(pod.Tolerations) != 1 || pod.Tolerations[0].Operator != corev1.TolerationOpExists ||
		c.ReadinessProbe == nil || c.LivenessProbe == nil || pod.SecurityContext == nil || !*pod.SecurityContext.RunAsNonRoot || c.Resources.Requests.Cpu().IsZero() {
		t.Fatal("DaemonSet lacks the probe subcommand, NODE_NAME, hostNetwork, tolerate-all, probes, non-root or requests")
	}

	// The reporter's shoot identity, for real.
	groups := []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"}
	reporter := kubernetes.NewForConfigOrDie(env.ImpersonatedConfig("system:serviceaccount:kube-system:egress-reporter", groups...))
	cms := reporter.CoreV1().ConfigMaps(ShootInfoNamespace)
	applier := kube.Applier{FieldManager: FieldManager}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().ConfigMaps(ShootInfoNamespace).Delete(context.Background(), ShootInfoName, metav1.DeleteOptions{})
	})
	for _, v := range []string{"203.0.113.1/32", "203.0.113.2/32"} { // create, then patch
		if _, err := kube.Apply(ctx, applier, cms.Apply, applycorev1.ConfigMap(ShootInfoName, ShootInfoNamespace).WithData(map[string]string{EgressCIDRsKey: v})); err != nil {
			t.Fatalf("reporter's apply of shoot-info: %v", err)
		}
	}
	if _, err := cms.Get(ctx, ShootInfoName, metav1.GetOptions{}); err != nil {
		t.Fatalf("reporter cannot read shoot-info: %v", err)
	}
	if _, err := kube.Apply(ctx, applier, cms.Apply, applycorev1.ConfigMap("other", ShootInfoNamespace).WithData(map[string]string{"x": "y"})); !apierrors.IsForbidden(err) {
		t.Fatalf("reporter may apply another ConfigMap: %v", err)
	}
	for _, a := range []struct{ verb, res string }{{"list", "nodes"}, {"watch", "nodes"}, {"create", "events"}, {"patch", "events"}} {
		ns := ShootInfoNamespace
		if a.res == "nodes" {
			ns = ""
		}
		if !sar(t, env, "egress-reporter", "kube-system", a.verb, "", a.res, "", ns) {
			t.Errorf("reporter may not %s %s", a.verb, a.res)
		}
	}
	for _, a := range []struct{ verb, res, name, ns string }{
		{"patch", "nodes", "", ""}, {"list", "configmaps", "", "kube-system"}, {"get", "configmaps", "other", "kube-system"},
		{"delete", "configmaps", "shoot-info", "kube-system"}, {"get", "secrets", "", "kube-system"},
	} {
		if sar(t, env, "egress-reporter", "kube-system", a.verb, "", a.res, a.name, a.ns) {
			t.Errorf("reporter may %s %s %s: more than it needs", a.verb, a.res, a.name)
		}
	}

	// The probe: annotate an existing Node, never create one.
	name := "deploy-" + env.Namespace(t)
	if _, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	probe := kubernetes.NewForConfigOrDie(env.ImpersonatedConfig("system:serviceaccount:kube-system:egress-probe", groups...))
	papply := kube.Applier{FieldManager: ProbeFieldManager, Force: true}
	if _, err := kube.Apply(ctx, papply, probe.CoreV1().Nodes().Apply, applycorev1.Node(name).WithAnnotations(map[string]string{AddressAnnotation: "203.0.113.1"})); err != nil {
		t.Fatalf("probe's apply on its Node: %v", err)
	}
	if _, err := kube.Apply(ctx, papply, probe.CoreV1().Nodes().Apply, applycorev1.Node(name+"-new").WithAnnotations(map[string]string{AddressAnnotation: "203.0.113.1"})); !apierrors.IsForbidden(err) {
		t.Fatalf("probe may create a Node: %v", err)
	}
	for _, a := range []struct{ verb, res, ns string }{{"get", "nodes", ""}, {"list", "pods", ""}, {"get", "configmaps", "kube-system"}, {"delete", "nodes", ""}} {
		if sar(t, env, "egress-probe", "kube-system", a.verb, "", a.res, "", a.ns) {
			t.Errorf("probe may %s %s: more than it needs", a.verb, a.res)
		}
	}
}
