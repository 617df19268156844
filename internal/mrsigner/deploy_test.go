package mrsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/trellis-garden/trellis/internal/testenv"
)

const deployNamespace = "trellis-mr-signer"

// TestDeployBase checks deploy/mr-signer/base against the real API server: the objects are accepted (server-side dry run; RBAC
// is created for real to be reviewed), the Deployment and webhooks have what they
// need, and the RBAC grants what mr-signer does and nothing more.
func TestDeployBase(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	objs := testenv.ReadManifests(t, "../../deploy/mr-signer/base")
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
		pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot || c.Resources.Requests.Cpu().IsZero() {
		t.Fatal("Deployment lacks 2 replicas, --leader-elect, probes, non-root or requests")
	}
	// Self-sufficient and preventing by default.
	for _, a := range []string{"--webhook.tls-secret=" + DefaultTLSSecret, "--bootstrap.keys", "--bootstrap.certificates", "--webhook.deny-untrusted"} {
		if !slices.Contains(c.Args, a) {
			t.Errorf("Deployment lacks %s", a)
		}
	}
	if len(pod.Volumes) != 0 {
		t.Error("Deployment mounts volumes: the serving certificate is read through the API")
	}
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Fatal("PDB does not keep one webhook replica")
	}
	if len(mwc.Webhooks) != 2 || len(vwc.Webhooks) != 2 {
		t.Fatalf("%d mutating and %d validating webhooks, want 2 and 2", len(mwc.Webhooks), len(vwc.Webhooks))
	}
	// Split by identity: the trusted writers' signing entry is the only one that
	// lets writes through while mr-signer is down; the shipped trust expression is
	// the fail-closed placeholder (nobody trusted) until the leader writes its own.
	placeholder := NewTrust(nil, nil, nil).TrustConditions()
	ignore, fail := admissionregistrationv1.Ignore, admissionregistrationv1.Fail
	for _, w := range []struct {
		name   string
		policy *admissionregistrationv1.FailurePolicyType
		want   admissionregistrationv1.FailurePolicyType
		conds  []admissionregistrationv1.MatchCondition
		path   *string
		wpath  string
		expr   string
		trust  string
	}{
		{"mutating trusted", mwc.Webhooks[0].FailurePolicy, ignore, mwc.Webhooks[0].MatchConditions, mwc.Webhooks[0].ClientConfig.Service.Path, "/mutate", MatchExpression(), TrustedWriterCondition},
		{"mutating untrusted", mwc.Webhooks[1].FailurePolicy, fail, mwc.Webhooks[1].MatchConditions, mwc.Webhooks[1].ClientConfig.Service.Path, "/mutate", MatchExpression(), UntrustedWriterCondition},
		{"validating secrets", vwc.Webhooks[0].FailurePolicy, fail, vwc.Webhooks[0].MatchConditions, vwc.Webhooks[0].ClientConfig.Service.Path, "/validate", MatchExpression(), UntrustedWriterCondition},
		{"validating managedresources", vwc.Webhooks[1].FailurePolicy, fail, vwc.Webhooks[1].MatchConditions, vwc.Webhooks[1].ClientConfig.Service.Path, "/validate-managedresource", ManagedResourceMatchExpression(), UntrustedWriterCondition},
	} {
		if *w.policy != w.want || len(w.conds) != 2 || w.conds[0].Expression != w.expr ||
			w.conds[1].Name != w.trust || w.conds[1].Expression != placeholder[w.trust] {
			t.Errorf("%s webhook: failurePolicy %v (want %v), match conditions %v differ from the code's", w.name, *w.policy, w.want, w.conds)
		}
		if *w.path != w.wpath {
			t.Errorf("%s webhook: path %s, want %s", w.name, *w.path, w.wpath)
		}
	}
	if ops := mwc.Webhooks[0].Rules[0].Operations; !slices.Equal(ops, mwc.Webhooks[1].Rules[0].Operations) {
		t.Errorf("mutating webhooks' operations differ: %v", ops)
	}
	if ops := vwc.Webhooks[0].Rules[0].Operations; !slices.Contains(ops, admissionregistrationv1.Delete) {
		t.Errorf("validating Secret webhook operations %v: deletes are not seen", ops)
	}
	if r := vwc.Webhooks[1].Rules[0]; !slices.Equal(r.APIGroups, []string{"resources.gardener.cloud"}) || !slices.Equal(r.Resources, []string{"managedresources"}) {
		t.Errorf("validating ManagedResource webhook rule %v", r)
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
		// Bootstrap.
		{"create", "", "secrets", "", deployNamespace}, {"create", "", "configmaps", "", deployNamespace},
		{"watch", "", "secrets", DefaultTLSSecret, deployNamespace}, {"update", "", "secrets", DefaultTLSSecret, deployNamespace},
		{"update", "", "secrets", DefaultCASecret, deployNamespace},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "trellis-mr-signer", ""},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "trellis-mr-signer", ""},
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
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "someone-elses", ""},
		{"delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "trellis-mr-signer", ""},
		{"update", "", "secrets", DefaultSigningKeySecret, deployNamespace}, {"delete", "", "secrets", DefaultSigningKeySecret, deployNamespace},
		{"update", "", "configmaps", DefaultVerificationKeysCM, deployNamespace},
	} {
		if can(a.verb, a.group, a.res, a.name, a.ns) {
			t.Errorf("mr-signer may %s %s %s/%s: more than it needs", a.verb, a.res, a.ns, a.name)
		}
	}
}

// TestDeployCertManager: the cert-manager component renders with the base and
// its objects are accepted by the API server with cert-manager's own CRDs (from
// the module proxy) installed: Certificates and Issuers as a server-side dry run.
// The webhook configurations name the serving Certificate for the cainjector and
// mr-signer leaves the certificates alone.
func TestDeployCertManager(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir, err := testenv.ModuleDir(ctx, "github.com/cert-manager/cert-manager", "v1.21.2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.InstallCRDs(ctx, filepath.Join(dir, "deploy/crds/cert-manager.io_certificates.yaml"),
		filepath.Join(dir, "deploy/crds/cert-manager.io_issuers.yaml")); err != nil {
		t.Fatal(err)
	}
	// An overlay of base and component, as an operator writes it.
	k := t.TempDir()
	abs, _ := filepath.Abs("../../deploy/mr-signer")
	rel, err := filepath.Rel(k, abs) // kustomize takes relative paths only
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(k, "kustomization.yaml"), []byte("resources: ["+filepath.Join(rel, "base")+"]\ncomponents: ["+filepath.Join(rel, "components/cert-manager")+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	objs := kustomizeBuild(t, k)
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deployNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Client.Discovery()))
	kinds := map[string]int{}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		kinds[gvk.Kind]++
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
		}
		body, err := json.Marshal(u.Object)
		if err != nil {
			t.Fatal(err)
		}
		opts := metav1.PatchOptions{FieldManager: "trellis-deploy-test", DryRun: []string{metav1.DryRunAll}, Force: new(true)}
		var r dynamic.ResourceInterface = env.Dynamic.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			r = env.Dynamic.Resource(m.Resource).Namespace(u.GetNamespace())
		}
		if _, err := r.Patch(ctx, u.GetName(), "application/apply-patch+yaml", body, opts); err != nil {
			t.Errorf("%s %s/%s rejected: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		switch gvk.Kind {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if u.GetAnnotations()["cert-manager.io/inject-ca-from"] != deployNamespace+"/"+DefaultTLSSecret {
				t.Errorf("%s lacks cert-manager.io/inject-ca-from", gvk.Kind)
			}
		case "Certificate":
			if u.GetNamespace() != deployNamespace {
				t.Errorf("Certificate %s in namespace %q", u.GetName(), u.GetNamespace())
			}
			if name, _, _ := unstructured.NestedString(u.Object, "spec", "secretName"); u.GetName() == DefaultTLSSecret && name != DefaultTLSSecret {
				t.Errorf("serving Certificate writes %q, mr-signer reads %s", name, DefaultTLSSecret)
			}
		case "Deployment":
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			a, _ := cs[0].(map[string]any)["args"].([]any)
			if len(a) == 0 || a[len(a)-1] != "--bootstrap.certificates=false" {
				t.Errorf("Deployment args %v: the bootstrap still issues certificates", a)
			}
		}
	}
	if kinds["Certificate"] != 2 || kinds["Issuer"] != 2 {
		t.Errorf("rendered %v, want 2 Certificates and 2 Issuers", kinds)
	}
}

// kustomizeBuild renders a kustomization with the pinned kustomize (make test
// passes it in TRELLIS_KUSTOMIZE) or one on PATH.
func kustomizeBuild(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	bin := os.Getenv("TRELLIS_KUSTOMIZE")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("kustomize"); err != nil {
			if testenv.Required() {
				t.Fatal("kustomize not found: run `make tools` or set TRELLIS_KUSTOMIZE")
			}
			t.Skip("kustomize not found")
		}
	}
	cmd := exec.Command(bin, "build", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build: %v\n%s", err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}
