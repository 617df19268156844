package mrsigner

import (
	"context"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

const deployNamespace = "trellis-mr-signer"

// TestDeployBase checks deploy/mr-signer/base (and the deny-untrusted component)
// against the real API server: the objects are accepted (server-side dry run; RBAC
// is created for real to be reviewed), the Deployment and webhooks have what they
// need, and the RBAC grants what mr-signer does and nothing more.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	objs := append(testenv.ReadManifests(t, "../../deploy/mr-signer/base"), testenv.ReadManifests(t, "../../deploy/mr-signer/components/deny-untrusted")...)
	var (
		dep *appsv1.Deployment
		mwc *admissionregistrationv1.MutatingWebhookConfiguration
		vwc *admissionregistrationv1.ValidatingWebhookConfiguration
		pdb *policyv1.PodDisruptionBudget
	)
	rbac := env.Client.RbacV1()
	// Kustomize sets the namespace; the raw files leave it to it. The files are
	// read in name order: the namespace must exist before the rest.
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deployNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.Namespace:
			if o.Name != deployNamespace {
				t.Fatalf("namespace %s, want %s", o.Name, deployNamespace)
			}
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts(deployNamespace).Create(ctx, o, dry)
		case *rbacv1.ClusterRole:
			_, err = rbac.ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = rbac.ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = rbac.Roles(deployNamespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = rbac.RoleBindings(deployNamespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			dep = o
			_, err = env.Client.AppsV1().Deployments(deployNamespace).Create(ctx, o, dry)
		case *corev1.Service:
			_, err = env.Client.CoreV1().Services(deployNamespace).Create(ctx, o, dry)
		case *policyv1.PodDisruptionBudget:
			pdb = o
			_, err = env.Client.PolicyV1().PodDisruptionBudgets(deployNamespace).Create(ctx, o, dry)
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			mwc = o
			_, err = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, o, dry)
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			vwc = o
			_, err = env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, o, dry)
		default:
			t.Fatalf("unexpected %T in the base", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%T rejected: %v", obj, err)
		}
	}
	if dep == nil || mwc == nil || vwc == nil || pdb == nil {
		t.Fatal("base lacks a Deployment, webhook configurations or PDB")
	}

	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if *dep.Spec.Replicas != 2 || !slices.Contains(c.Args, "--leader-elect") || c.ReadinessProbe == nil || c.LivenessProbe == nil ||
		pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || c.Resources.Requests.Cpu().IsZero() ||
		len(pod.Volumes) != 1 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "mr-signer-webhook-tls" {
		t.Fatal("Deployment lacks 2 replicas, --leader-elect, probes, non-root, requests or the serving certificate mount")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Fatal("PDB does not keep one webhook replica")
	}
	for _, w := range []struct {
		name   string
		policy *admissionregistrationv1.FailurePolicyType
		conds  []admissionregistrationv1.MatchCondition
		path   *string
	}{
		{"mutating", mwc.Webhooks[0].FailurePolicy, mwc.Webhooks[0].MatchConditions, mwc.Webhooks[0].ClientConfig.Service.Path},
		{"validating", vwc.Webhooks[0].FailurePolicy, vwc.Webhooks[0].MatchConditions, vwc.Webhooks[0].ClientConfig.Service.Path},
	} {
		if *w.policy != admissionregistrationv1.Fail || len(w.conds) != 1 || w.conds[0].Expression != MatchExpression() {
			t.Errorf("%s webhook: failurePolicy %v, match conditions differ from MatchExpression()", w.name, *w.policy)
		}
	}
	if *mwc.Webhooks[0].ClientConfig.Service.Path != "/mutate" || *vwc.Webhooks[0].ClientConfig.Service.Path != "/validate" {
		t.Error("webhook paths")
	}

	can := func(verb, group, resource, name, ns string) bool {
		return env.ServiceAccountMay(t, deployNamespace, "mr-signer", authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Name: name, Namespace: ns})
	}
	type access struct{ verb, group, res, name, ns string }
	for _, a := range []access{
		{"list", "", "secrets", "", "shoot--p--s"}, {"watch", "", "secrets", "", "garden"}, {"get", "", "secrets", "x", "shoot--p--s"},
		{"list", "resources.gardener.cloud", "managedresources", "", ""}, {"patch", "resources.gardener.cloud", "managedresources", "mr", "shoot--p--s"},
		{"create", "", "events", "", "shoot--p--s"},
		{"watch", "", "secrets", "mr-signer-signing-key", deployNamespace}, {"list", "", "configmaps", "mr-signer-verification-keys", deployNamespace},
		{"create", "coordination.k8s.io", "leases", "", deployNamespace}, {"update", "coordination.k8s.io", "leases", "trellis-mr-signer", deployNamespace},
	} {
		if !can(a.verb, a.group, a.res, a.name, a.ns) {
			t.Errorf("mr-signer may not %s %s %s/%s", a.verb, a.res, a.ns, a.name)
		}
	}
	for _, a := range []access{
		{"update", "", "secrets", "x", "shoot--p--s"}, {"create", "", "secrets", "", "shoot--p--s"}, {"delete", "", "secrets", "x", "shoot--p--s"},
		{"update", "resources.gardener.cloud", "managedresources", "mr", "shoot--p--s"}, {"delete", "resources.gardener.cloud", "managedresources", "mr", "shoot--p--s"},
		{"get", "", "configmaps", "other", deployNamespace}, {"list", "", "configmaps", "", "shoot--p--s"},
		{"update", "coordination.k8s.io", "leases", "someone-else", deployNamespace}, {"update", "coordination.k8s.io", "leases", "trellis-mr-signer", "kube-system"},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "trellis-mr-signer", ""},
	} {
		if can(a.verb, a.group, a.res, a.name, a.ns) {
			t.Errorf("mr-signer may %s %s %s/%s: more than it needs", a.verb, a.res, a.ns, a.name)
		}
	}
}
