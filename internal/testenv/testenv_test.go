package testenv

import (
	"context"
	"os"
	"regexp"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestVersionsMatchScript(t *testing.T) {
	script, err := os.ReadFile("../../scripts/testenv.sh")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"K8S_VERSION": KubernetesVersion, "ETCD_VERSION": EtcdVersion} {
		m := regexp.MustCompile(name + `=\$\{` + name + `:-([^}]+)\}`).FindSubmatch(script)
		if m == nil || string(m[1]) != want {
			t.Errorf("scripts/testenv.sh %s default = %q, internal/testenv says %q", name, m, want)
		}
	}
}

func TestAPIServerIsReal(t *testing.T) {
	env := Get(t)
	v, err := env.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != KubernetesVersion {
		t.Fatalf("server version %s, want %s", v.GitVersion, KubernetesVersion)
	}
	// The kubeconfig file works for a separate client, as a binary under test uses it.
	cfg, err := clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	if _, err := cs.CoreV1().Namespaces().Get(context.Background(), "kube-system", metav1.GetOptions{}); err != nil {
		t.Fatalf("kubeconfig client: %v", err)
	}
}

func TestRBACIsEnforced(t *testing.T) {
	env := Get(t)
	ns := env.Namespace(t)
	cs := kubernetes.NewForConfigOrDie(env.ImpersonatedConfig("alice"))
	_, err := cs.CoreV1().Secrets(ns).List(context.Background(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("unprivileged list of secrets: err = %v, want Forbidden", err)
	}
}

func TestInstallCRDs(t *testing.T) {
	env := Get(t)
	ctx := context.Background()
	names, err := env.InstallCRDs(ctx, "testdata/widgets-crd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0] != "widgets.test.trellis.dev" {
		t.Fatalf("installed %v", names)
	}
	// Installing again is fine (apply).
	if _, err := env.InstallCRDs(ctx, "testdata/widgets-crd.yaml"); err != nil {
		t.Fatal(err)
	}
	ns := env.Namespace(t)
	gvr := schema.GroupVersionResource{Group: "test.trellis.dev", Version: "v1", Resource: "widgets"}
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "test.trellis.dev/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w"},
		"spec":     map[string]any{"size": int64(0)},
	}}
	if _, err := env.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, w, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Fatalf("schema not enforced: size 0 gave %v", err)
	}
	w.Object["spec"] = map[string]any{"size": int64(3)}
	if _, err := env.Dynamic.Resource(gvr).Namespace(ns).Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.InstallCRDs(ctx, "testenv.go"); err == nil {
		t.Fatal("a Go file installed as CRD")
	}
}
