package wggateway

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

const deployBase = "../../deploy/wg-gateway/base"

// TestDeployBase checks deploy/wg-gateway/base against the real API server: every
// object is accepted (server-side dry run), the workload is hardened, and the RBAC
// it grants is enough for the Kubernetes source (list/watch Services, Events) and
// nothing more (no Secrets).
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "garden"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var dep *appsv1.Deployment
	for _, obj := range testenv.ReadManifests(t, deployBase) {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts("garden").Create(ctx, o, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		case *rbacv1.ClusterRole: // created for real: the test below uses it
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			dep = o
			_, err = env.Client.AppsV1().Deployments("garden").Create(ctx, o, dry)
		case *corev1.Service:
			_, err = env.Client.CoreV1().Services("garden").Create(ctx, o, dry)
		case *policyv1.PodDisruptionBudget:
			_, err = env.Client.PolicyV1().PodDisruptionBudgets("garden").Create(ctx, o, dry)
		default:
			t.Fatalf("unexpected object %T in the base", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%T rejected: %v", obj, err)
		}
	}
	if dep == nil {
		t.Fatal("no Deployment in the base")
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot ||
		c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation ||
		c.ReadinessProbe == nil || c.LivenessProbe == nil || c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Fatal("Deployment lacks non-root, no privilege escalation, probes or requests")
	}
	if *dep.Spec.Replicas != 2 {
		t.Fatalf("replicas = %d, want 2", *dep.Spec.Replicas)
	}

	// The service account's permissions, as the gateway uses them.
	sa := kubernetes.NewForConfigOrDie(env.ImpersonatedConfig("system:serviceaccount:garden:wg-gateway", "system:serviceaccounts", "system:serviceaccounts:garden"))
	if _, err := sa.CoreV1().Secrets("garden").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("wg-gateway may list Secrets: %v", err)
	}
	ns := env.Namespace(t)
	k, b64 := sourceTestKey(9)
	svc := createTestService(ctx, t, env.Client, ns, kubeTestService{name: "vpn-seed-server", labelled: true, key: b64, extraLabels: map[string]string{"test": ns}})
	createTestService(ctx, t, env.Client, ns, kubeTestService{name: "broken", labelled: true, key: "nope", extraLabels: map[string]string{"test": ns}})
	recorder, stop := kube.NewEventRecorder(sa, Name)
	defer stop()
	src := NewKubeSource(sa, KubeSourceOptions{LabelSelector: "trellis.dev/wg-gateway=true,test=" + ns, EventRecorder: recorder}, nil, nil)
	u := &sourceUpdates{}
	runSource(t, src, u)
	u.waitFor(t, []Backend{{Name: ns + "/vpn-seed-server", PublicKey: k, Endpoint: endpointOf(t, svc, 51820)}})
	// The Event about the broken Service is written with the gateway's identity.
	if !testkit.Until(testkit.Timeout, func() bool {
		evs, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "broken" && e.Reason == ReasonInvalidBackend && strings.Contains(e.Message, "key") {
				return true
			}
		}
		return false
	}) {
		t.Fatal("no InvalidWireGuardBackend Event written with the gateway's RBAC")
	}
}
