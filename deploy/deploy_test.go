// Package deploy holds no code, only the tests of the Kustomize tree beside it:
// every overlay builds with the pinned kustomize, is accepted by the real
// kube-apiserver (server-side dry-run apply, Gardener CRDs installed first), and
// every workload in it meets the component checklist.
package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// gardener is the module whose example/seed-crds hold the real Gardener CRDs.
const gardenerModule, gardenerVersion = "github.com/gardener/gardener", "v1.149.3"

// kustomizeBin finds the pinned kustomize (`make tools`; make test passes it in
// TRELLIS_KUSTOMIZE), else one on PATH.
func kustomizeBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TRELLIS_KUSTOMIZE"); p != "" {
		return p
	}
	if p, err := exec.LookPath("kustomize"); err == nil {
		return p
	}
	if testenv.Required() {
		t.Fatal("kustomize not found: run `make tools` or set TRELLIS_KUSTOMIZE")
	}
	t.Skip("kustomize not found: run `make tools` or set TRELLIS_KUSTOMIZE")
	return ""
}

// build renders a kustomization into objects.
func build(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	cmd := exec.Command(kustomizeBin(t), "build", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kustomize build %s: %v\n%s", dir, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatalf("%s: decode: %v", dir, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
	if len(objs) == 0 {
		t.Fatalf("%s renders nothing", dir)
	}
	return objs
}

// kustomizations lists the overlays and the test fixture of the sidecar component.
func kustomizations(t *testing.T) []string {
	dirs, err := filepath.Glob("overlays/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	sort.Strings(dirs)
	return append(dirs, "testdata/istio-sidecar")
}

// TestOverlaysAreThin: an overlay only lists bases and components; a component is a
// kind: Component.
func TestOverlaysAreThin(t *testing.T) {
	want := []string{"overlays/local", "overlays/seed", "overlays/shoot", "overlays/single-node"}
	dirs, _ := filepath.Glob("overlays/*")
	sort.Strings(dirs)
	if !slices.Equal(dirs, want) {
		t.Errorf("overlays = %v, want %v", dirs, want)
	}
	for _, dir := range dirs {
		var k map[string]any
		readYAML(t, filepath.Join(dir, "kustomization.yaml"), &k)
		for key := range k {
			if key != "apiVersion" && key != "kind" && key != "resources" && key != "components" {
				t.Errorf("%s: %q: an overlay lists bases and components only", dir, key)
			}
		}
		for _, r := range k["resources"].([]any) {
			if fi, err := os.Stat(filepath.Join(dir, r.(string))); err != nil || !fi.IsDir() {
				t.Errorf("%s: resource %v is not a base folder", dir, r)
			}
		}
	}
	comps, _ := filepath.Glob("components/*")
	for _, want := range []string{"single-node", "ha", "monitoring", "debug", "wg-gateway-sidecar"} {
		if !slices.Contains(comps, "components/"+want) {
			t.Errorf("component %s missing", want)
		}
	}
	for _, c := range comps {
		var k map[string]any
		readYAML(t, filepath.Join(c, "kustomization.yaml"), &k)
		if k["kind"] != "Component" {
			t.Errorf("%s: kind %v, want Component", c, k["kind"])
		}
	}
}

func readYAML(t *testing.T, path string, into any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, into); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestOverlaysMeetChecklist: every workload has readiness and liveness probes,
// CPU and memory requests, a non-root securityContext, and a PDB that selects its
// pods when it runs more than one replica.
func TestOverlaysMeetChecklist(t *testing.T) {
	for _, dir := range kustomizations(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			objs := build(t, dir)
			var pdbs []*policyv1.PodDisruptionBudget
			for _, u := range objs {
				if u.GetKind() == "PodDisruptionBudget" {
					var p policyv1.PodDisruptionBudget
					fromUnstructured(t, u, &p)
					pdbs = append(pdbs, &p)
				}
			}
			workloads := 0
			for _, u := range objs {
				var tmpl corev1.PodTemplateSpec
				replicas := int32(1)
				switch u.GetKind() {
				case "Deployment":
					var d appsv1.Deployment
					fromUnstructured(t, u, &d)
					tmpl = d.Spec.Template
					if d.Spec.Replicas != nil {
						replicas = *d.Spec.Replicas
					}
				case "DaemonSet":
					var d appsv1.DaemonSet
					fromUnstructured(t, u, &d)
					tmpl = d.Spec.Template
				case "StatefulSet":
					var s appsv1.StatefulSet
					fromUnstructured(t, u, &s)
					tmpl = s.Spec.Template
					if s.Spec.Replicas != nil {
						replicas = *s.Spec.Replicas
					}
				default:
					continue
				}
				workloads++
				id := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
				for _, problem := range checkPod(u.GetName(), &tmpl.Spec) {
					t.Errorf("%s: %s", id, problem)
				}
				for _, problem := range checkWebPort(&tmpl) {
					t.Errorf("%s: %s", id, problem)
				}
				if replicas > 1 && !hasPDB(pdbs, u.GetNamespace(), tmpl.Labels) {
					t.Errorf("%s: %d replicas and no PodDisruptionBudget selecting its pods", id, replicas)
				}
			}
			if workloads == 0 {
				t.Fatal("no workloads")
			}
		})
	}
}

// rootExceptions may run as root, because what they do needs it: zone-flow-tracer
// reads conntrack over netlink with CAP_NET_ADMIN, which Kubernetes grants a
// non-root process only through file capabilities (distroless images cannot carry
// them reliably). Even so: NET_ADMIN only, everything else dropped, no privilege
// escalation, not privileged.
var rootExceptions = map[string][]corev1.Capability{"zone-flow-tracer": {"NET_ADMIN"}}

func checkPod(workload string, pod *corev1.PodSpec) []string {
	var problems []string
	podNonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	for _, c := range pod.Containers {
		if c.ReadinessProbe == nil || c.LivenessProbe == nil {
			problems = append(problems, fmt.Sprintf("container %s: readiness and liveness probes required", c.Name))
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			problems = append(problems, fmt.Sprintf("container %s: cpu and memory requests required", c.Name))
		}
		sc := c.SecurityContext
		nonRoot := podNonRoot
		if sc != nil && sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
		if sc != nil && sc.Privileged != nil && *sc.Privileged {
			problems = append(problems, fmt.Sprintf("container %s: privileged", c.Name))
		}
		if nonRoot {
			continue
		}
		allowed, ok := rootExceptions[workload]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("container %s: runAsNonRoot required", c.Name))
		case sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			problems = append(problems, fmt.Sprintf("container %s: runs as root without dropping ALL capabilities and privilege escalation", c.Name))
		default:
			for _, a := range sc.Capabilities.Add {
				if !slices.Contains(allowed, a) {
					problems = append(problems, fmt.Sprintf("container %s: capability %s beyond %v", c.Name, a, allowed))
				}
			}
		}
	}
	return problems
}

// checkWebPort: a trellis container's web port (/metrics, /healthz, /readyz) is
// the containerPort named metrics; --web.listen-address and the pod's
// prometheus.io/port annotation (scrapers) say the same port. The bases copy both
// from the containerPort (kustomize replacements), so a port changed in one place
// changes everywhere; this catches a copy that went astray (an argument moved).
func checkWebPort(tmpl *corev1.PodTemplateSpec) []string {
	var problems []string
	for _, c := range tmpl.Spec.Containers {
		var web string
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--web.listen-address="); ok {
				web = v
			}
		}
		// A sidecar in someone else's pod (components/wg-gateway-sidecar) names it
		// <daemon short name>-metrics: the pod's metrics port may be taken.
		var port int32
		var name string
		for _, p := range c.Ports {
			if p.Name == "metrics" || (name != "metrics" && strings.HasSuffix(p.Name, "-metrics")) {
				port, name = p.ContainerPort, p.Name
			}
		}
		if web == "" && port == 0 {
			continue // not a trellis daemon (or its web server is off)
		}
		if port == 0 {
			problems = append(problems, fmt.Sprintf("container %s: --web.listen-address=%s but no containerPort named metrics", c.Name, web))
			continue
		}
		if _, p, err := net.SplitHostPort(web); web != "" && (err != nil || p != strconv.Itoa(int(port))) {
			problems = append(problems, fmt.Sprintf("container %s: --web.listen-address=%s, containerPort metrics %d", c.Name, web, port))
		}
		if a, ok := tmpl.Annotations["prometheus.io/port"]; ok && name == "metrics" && a != strconv.Itoa(int(port)) {
			problems = append(problems, fmt.Sprintf("container %s: annotation prometheus.io/port %q, containerPort metrics %d", c.Name, a, port))
		}
	}
	return problems
}

func hasPDB(pdbs []*policyv1.PodDisruptionBudget, ns string, podLabels map[string]string) bool {
	for _, p := range pdbs {
		if p.Namespace != ns || p.Spec.Selector == nil {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(podLabels)) {
			return true
		}
	}
	return false
}

func fromUnstructured(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// TestOverlaysApply server-side dry-run applies every overlay to the real API
// server with Gardener's ManagedResource and Infrastructure CRDs installed.
// Namespaces the overlays name are created for real first (a dry run cannot create
// objects in a namespace that does not exist); objects without a namespace (the
// seed side of egress-reporter, applied per shoot namespace) go to a test namespace.
func TestOverlaysApply(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	dir, err := testenv.ModuleDir(ctx, gardenerModule, gardenerVersion)
	if err != nil {
		t.Fatal(err)
	}
	crds := filepath.Join(dir, "example", "seed-crds")
	if _, err := env.InstallCRDs(ctx,
		filepath.Join(crds, "10-crd-resources.gardener.cloud_managedresources.yaml"),
		filepath.Join(crds, "10-crd-extensions.gardener.cloud_infrastructures.yaml"),
		filepath.Join(crds, "10-crd-monitoring.coreos.com_prometheusrules.yaml"), // the monitoring component's alerts
	); err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(env.Client.Discovery()))
	shootNS := env.Namespace(t)
	for _, kdir := range kustomizations(t) {
		t.Run(filepath.Base(kdir), func(t *testing.T) {
			objs := build(t, kdir)
			for _, u := range objs {
				ns := u.GetNamespace()
				if u.GetKind() == "Namespace" {
					ns = u.GetName()
				}
				if ns == "" {
					continue
				}
				_, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
				if err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
			}
			for _, u := range objs {
				gvk := u.GroupVersionKind()
				m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
				if err != nil {
					t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
				}
				body, err := json.Marshal(u.Object)
				if err != nil {
					t.Fatal(err)
				}
				opts := metav1.PatchOptions{FieldManager: "trellis-deploy-test", DryRun: []string{metav1.DryRunAll}, Force: new(true)}
				var rerr error
				if m.Scope.Name() == meta.RESTScopeNameNamespace {
					ns := u.GetNamespace()
					if ns == "" {
						ns = shootNS
					}
					_, rerr = env.Dynamic.Resource(m.Resource).Namespace(ns).Patch(ctx, u.GetName(), "application/apply-patch+yaml", body, opts)
				} else {
					_, rerr = env.Dynamic.Resource(m.Resource).Patch(ctx, u.GetName(), "application/apply-patch+yaml", body, opts)
				}
				if rerr != nil {
					t.Errorf("%s %s/%s rejected: %v", gvk.Kind, u.GetNamespace(), u.GetName(), rerr)
				}
			}
		})
	}
}

// TestSidecarComponent: with wg-gateway-sidecar, wg-gateway runs inside the istio
// ingress gateway's pods, 51820/UDP is on its Service, wg-gateway's own workload is
// gone, and its ClusterRole is bound to the ingress gateway's ServiceAccount.
func TestSidecarComponent(t *testing.T) {
	objs := build(t, "testdata/istio-sidecar")
	var gotContainer, gotPort, gotBinding bool
	for _, u := range objs {
		switch {
		case u.GetName() == "wg-gateway" && (u.GetKind() == "Deployment" || u.GetKind() == "Service" || u.GetKind() == "PodDisruptionBudget"):
			t.Errorf("%s wg-gateway still rendered", u.GetKind())
		case u.GetKind() == "Deployment" && u.GetName() == "istio-ingressgateway":
			var d appsv1.Deployment
			fromUnstructured(t, u, &d)
			for _, c := range d.Spec.Template.Spec.Containers {
				if c.Name == "wg-gateway" && slices.Contains(c.Args, "--backends.source=kubernetes") {
					gotContainer = true
				}
			}
			if len(d.Spec.Template.Spec.Containers) != 2 {
				t.Errorf("ingress gateway has %d containers, want istio-proxy and wg-gateway", len(d.Spec.Template.Spec.Containers))
			}
		case u.GetKind() == "Service" && u.GetName() == "istio-ingressgateway":
			var s corev1.Service
			fromUnstructured(t, u, &s)
			for _, p := range s.Spec.Ports {
				if p.Port == 51820 && p.Protocol == corev1.ProtocolUDP {
					gotPort = true
				}
			}
			if len(s.Spec.Ports) != 3 {
				t.Errorf("ingress gateway Service ports %v: the existing ones must stay", s.Spec.Ports)
			}
		case u.GetKind() == "ClusterRoleBinding" && u.GetName() == "trellis:wg-gateway":
			subjects, _, _ := unstructured.NestedSlice(u.Object, "subjects")
			gotBinding = len(subjects) == 1 && subjects[0].(map[string]any)["name"] == "istio-ingressgateway"
		}
	}
	if !gotContainer || !gotPort || !gotBinding {
		t.Errorf("sidecar container %v, UDP port %v, binding to the ingress gateway %v", gotContainer, gotPort, gotBinding)
	}
}

// TestCheckPodCatches: the checklist itself finds what it must.
func TestCheckPodCatches(t *testing.T) {
	good := func() *corev1.PodSpec {
		return &corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: new(true)},
			Containers: []corev1.Container{{
				Name:           "c",
				ReadinessProbe: &corev1.Probe{}, LivenessProbe: &corev1.Probe{},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
			}},
		}
	}
	if p := checkPod("x", good()); len(p) != 0 {
		t.Fatalf("good pod: %v", p)
	}
	root := func(p *corev1.PodSpec) {
		p.SecurityContext = nil
		p.Containers[0].SecurityContext = &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
		}
	}
	for name, c := range map[string]struct {
		workload string
		mutate   func(*corev1.PodSpec)
		bad      bool
	}{
		"no probe":          {"x", func(p *corev1.PodSpec) { p.Containers[0].LivenessProbe = nil }, true},
		"no memory request": {"x", func(p *corev1.PodSpec) { delete(p.Containers[0].Resources.Requests, corev1.ResourceMemory) }, true},
		"root":              {"x", func(p *corev1.PodSpec) { p.SecurityContext = nil }, true},
		"root exception":    {"zone-flow-tracer", root, false},
		"exception, SYS_ADMIN": {"zone-flow-tracer", func(p *corev1.PodSpec) {
			root(p)
			p.Containers[0].SecurityContext.Capabilities.Add = append(p.Containers[0].SecurityContext.Capabilities.Add, "SYS_ADMIN")
		}, true},
		"exception, escalation": {"zone-flow-tracer", func(p *corev1.PodSpec) { root(p); p.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil }, true},
		"privileged": {"x", func(p *corev1.PodSpec) {
			p.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: new(true)}
		}, true},
	} {
		p := good()
		c.mutate(p)
		if got := checkPod(c.workload, p); (len(got) > 0) != c.bad {
			t.Errorf("%s: problems %v, want bad=%v", name, got, c.bad)
		}
	}
}

func TestCheckWebPortCatches(t *testing.T) {
	tmpl := func(arg, annotation string, port int32) *corev1.PodTemplateSpec {
		p := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "d", Args: []string{arg}, Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: port}},
		}}}}
		if annotation != "" {
			p.Annotations = map[string]string{"prometheus.io/port": annotation}
		}
		return p
	}
	for _, c := range []struct {
		name string
		tmpl *corev1.PodTemplateSpec
		want int
	}{
		{"agree", tmpl("--web.listen-address=:8080", "8080", 8080), 0},
		{"argument differs", tmpl("--web.listen-address=:8081", "8080", 8080), 1},
		{"annotation differs", tmpl("--web.listen-address=:8080", "8081", 8080), 1},
		{"annotation left as the placeholder", tmpl("--web.listen-address=:8080", "metrics", 8080), 1},
		{"no metrics port", tmpl("--web.listen-address=:8080", "", 0), 1},
	} {
		if got := checkWebPort(c.tmpl); len(got) != c.want {
			t.Errorf("%s: %d problems %v, want %d", c.name, len(got), got, c.want)
		}
	}
}
