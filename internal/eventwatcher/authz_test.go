package eventwatcher

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// nodeNameExtra is the user extra key a pod-bound service account token's node
// name arrives in.
const nodeNameExtra = "authentication.kubernetes.io/node-name"

// installAuthz creates the base's RBAC, ServiceAccount and admission policies
// for real (the deploy test only dry-runs all but RBAC).
func installAuthz(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	objs := testenv.ReadManifests(t, "../../deploy/event-watcher/base")
	env.CreateManifests(t, objs, "kube-system") // RBAC for real, the rest checked by a dry run
	policies := 0
	for _, obj := range objs {
		var err error
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = env.Client.CoreV1().ServiceAccounts("kube-system").Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicy:
			policies++
			_, err = env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(ctx, o, metav1.CreateOptions{})
		case *admissionregistrationv1.ValidatingAdmissionPolicyBinding:
			_, err = env.Client.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("%T: %v", obj, err)
		}
	}
	if policies != 2 {
		t.Fatalf("base has %d ValidatingAdmissionPolicies, want 2 (own node, own pods)", policies)
	}
}

// tokenClient returns a client that authenticates with a real service account
// token of kube-system/event-watcher from the TokenRequest API, bound to pod
// (nil: not bound to anything).
func tokenClient(t *testing.T, env *testenv.Env, pod *corev1.Pod) kubernetes.Interface {
	t.Helper()
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptrTo(int64(3600))}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := env.Client.CoreV1().ServiceAccounts("kube-system").CreateToken(context.Background(), "event-watcher", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	cfg := &rest.Config{Host: env.Config.Host, BearerToken: tr.Status.Token, TLSClientConfig: env.Config.TLSClientConfig, QPS: 100, Burst: 200}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// forbiddenBy reports whether err is the admission policy's refusal naming want.
func forbiddenBy(err error, want string) bool {
	return (apierrors.IsForbidden(err) || apierrors.IsInvalid(err)) && strings.Contains(err.Error(), want)
}

// The admission policies of the base, on the real API server with real bound
// service account tokens: event-watcher's service account, with the token the
// kubelet would mount (bound to its pod, so it names the pod's node), may change
// its own Node and record Events about it, and evict pods bound to that node;
// it may not touch another Node, another node's pods or an unscheduled pod, and
// a token that names no node may change nothing. The controller itself, running
// on such a token, drains its node.
func TestAdmissionPolicyOwnNodeOnly(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	installAuthz(t, env)
	cl := newCluster(t)
	cl.createNode(false)
	other := &cluster{t: t, client: cl.client, ns: cl.ns, node: "other-" + cl.ns}
	if len(other.node) > 63 {
		other.node = other.node[:63]
	}
	other.createNode(false)

	// event-watcher's own pod on cl.node, in kube-system with its service account.
	self := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "event-watcher-" + cl.ns, Namespace: "kube-system"},
		Spec: corev1.PodSpec{NodeName: cl.node, ServiceAccountName: "event-watcher",
			Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if len(self.Name) > 63 {
		self.Name = self.Name[:63]
	}
	self, err := env.Client.CoreV1().Pods("kube-system").Create(ctx, self, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.CoreV1().Pods("kube-system").Delete(context.Background(), self.Name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))})
	})
	bound := tokenClient(t, env, self)
	unbound := tokenClient(t, env, nil)

	// The API server puts the pod's node into the token's user info.
	review, err := bound.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ui := review.Status.UserInfo
	if ui.Username != "system:serviceaccount:kube-system:event-watcher" || len(ui.Extra[nodeNameExtra]) != 1 || ui.Extra[nodeNameExtra][0] != cl.node {
		t.Fatalf("bound token's user info: %+v", ui)
	}

	label := func(v string) []byte {
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]string{"trellis.dev/authz-test": v}}})
		return b
	}
	patchNode := func(c kubernetes.Interface, node string, sub ...string) error {
		_, err := c.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, label("x"), metav1.PatchOptions{}, sub...)
		return err
	}
	// Policies take effect once the API server has loaded them.
	testkit.Eventually(cl.t, "node policy in force", func() bool {
		return forbiddenBy(patchNode(bound, other.node), "may change only its own Node")
	})
	err = patchNode(bound, other.node)
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "event-watcher on node "+cl.node+" may change only its own Node, not "+other.node) {
		t.Errorf("patch of another Node: %v", err)
	}
	if err := patchNode(bound, cl.node); err != nil {
		t.Errorf("patch of its own Node refused: %v", err)
	}
	if err := patchNode(bound, cl.node, "status"); err != nil {
		t.Errorf("status patch of its own Node refused: %v", err)
	}
	if err := patchNode(bound, other.node, "status"); !forbiddenBy(err, "may change only its own Node") {
		t.Errorf("status patch of another Node: %v", err)
	}
	// A full update (the cordon path) of another Node.
	n := other.getNode()
	n.Spec.Unschedulable = true
	if _, err := bound.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); !forbiddenBy(err, "may change only its own Node") {
		t.Errorf("cordon of another Node: %v", err)
	}
	if other.getNode().Spec.Unschedulable {
		t.Fatal("another Node was cordoned")
	}
	// A token that names no node changes nothing, not even "its" Node.
	if err := patchNode(unbound, cl.node); !forbiddenBy(err, "name no node") {
		t.Errorf("patch with a token naming no node: %v", err)
	}

	// Events: only about its own Node.
	event := func(node string) *corev1.Event {
		return &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "authz-", Namespace: metav1.NamespaceDefault},
			InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: node, UID: types.UID(node)}, Reason: "Test", Message: "authz test", Type: corev1.EventTypeNormal,
			Source: corev1.EventSource{Component: Component}}
	}
	if _, err := bound.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, event(cl.node), metav1.CreateOptions{}); err != nil {
		t.Errorf("Event about its own Node refused: %v", err)
	}
	if _, err := bound.CoreV1().Events(metav1.NamespaceDefault).Create(ctx, event(other.node), metav1.CreateOptions{}); !forbiddenBy(err, "only about its own Node") {
		t.Errorf("Event about another Node: %v", err)
	}

	// Evictions: only of pods bound to its own Node.
	cl.createPod("mine", nil, nil)
	other.createPod("theirs", nil, nil)
	cl.createPod("unscheduled", nil, func(p *corev1.Pod) { p.Spec.NodeName = "" })
	evict := func(c kubernetes.Interface, name string, dryRun ...string) error {
		return c.PolicyV1().Evictions(cl.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cl.ns},
			DeleteOptions: &metav1.DeleteOptions{DryRun: dryRun}})
	}
	// Each policy is loaded on its own: poll with a dry run, so that an
	// eviction let through before this policy is in force deletes nothing.
	testkit.Eventually(cl.t, "eviction policy in force", func() bool {
		return forbiddenBy(evict(bound, "theirs", metav1.DryRunAll), "may evict only pods bound to its own Node")
	})
	if err := evict(bound, "theirs"); err == nil || !strings.Contains(err.Error(), "event-watcher on node "+cl.node+" may evict only pods bound to its own Node, not "+cl.ns+"/theirs") {
		t.Errorf("eviction of another node's pod: %v", err)
	}
	if err := evict(bound, "unscheduled"); !forbiddenBy(err, "may evict only pods bound to its own Node") {
		t.Errorf("eviction of an unscheduled pod: %v", err)
	}
	if err := evict(unbound, "mine"); !forbiddenBy(err, "name no node") {
		t.Errorf("eviction with a token naming no node: %v", err)
	}
	if err := evict(bound, "mine"); err != nil {
		t.Errorf("eviction of a pod on its own Node refused: %v", err)
	}
	for _, name := range []string{"theirs", "unscheduled"} {
		p, err := env.Client.CoreV1().Pods(cl.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil {
			t.Errorf("pod %s after a refused eviction: %v", name, err)
		}
	}

	// The controller on the bound token: a whole drain of its own node works.
	cl.createPod("web", nil, nil)
	cl.playKubelet()
	src := newFakeSource(imds.Azure)
	id := "E-AUTHZ"
	src.set(azureReboot(id, time.Now().Add(time.Hour)))
	cfg := cl.testConfig()
	r := cl.startWith(bound, src, cfg)
	cl.waitNode("drained by the bound controller", func(n *corev1.Node) string {
		if n.Annotations[DrainStateAnnotation] != DrainStateDrained || ourTaint(n) == nil || !n.Spec.Unschedulable {
			return "not tainted, cordoned and drained"
		}
		if c := condition(n); c == nil || c.Status != corev1.ConditionTrue {
			return "no condition"
		}
		return ""
	})
	cl.waitEvent(ReasonDrain, "Drained the node for scheduled event "+id)
	if got := testutil.ToFloat64(r.c.m.actions.WithLabelValues("evict", resultSuccess)); got < 1 {
		t.Errorf("evictions by the bound controller = %v", got)
	}
	if got := testutil.ToFloat64(r.c.m.actions.WithLabelValues("evict", resultError)); got != 0 {
		t.Errorf("failed evictions by the bound controller = %v", got)
	}
}
