// Package e2e deploys trellis as pods on a real single-node cluster
// (internal/cluster) and proves, per daemon, that it does its job there. It runs
// only when TRELLIS_E2E=1 (`make e2e` sets it; it needs root on Linux), so `go
// test ./...` skips it. Whatever happens, the cluster is torn down at the end
// (also on SIGINT/SIGTERM), and a summary table is printed.
package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/trellis-garden/trellis/internal/cluster"
	"github.com/trellis-garden/trellis/internal/imagebuild"
	"github.com/trellis-garden/trellis/internal/testenv"
)

// daemons are the six trellis binaries; each gets an image.
var daemons = []string{"wg-gateway", "mr-signer", "egress-reporter", "otel-shoot-scraper", "zone-flow-tracer", "event-watcher"}

// Image tags: the first deployment, and the rolling update to a new tag.
const (
	tag1        = "v0.0.0-e2e.1"
	tag2        = "v0.0.0-e2e.2"
	standinRef  = "trellis-e2e/standin:e2e"
	fieldManger = "trellis-e2e"
)

// row is one line of the summary.
type row struct {
	daemon, proof, result string
	took                  time.Duration
}

var (
	summaryMu sync.Mutex
	summary   []row
	env       *e2eEnv
)

type e2eEnv struct {
	cfg     cluster.Config
	cl      *cluster.Cluster
	dyn     dynamic.Interface
	mapper  meta.RESTMapper
	repo    string
	work    string
	kustom  string
	objects []*unstructured.Unstructured // what the last apply sent
}

func record(daemon, proof, result string, took time.Duration) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	summary = append(summary, row{daemon, proof, result, took})
}

func printSummary(w io.Writer) {
	summaryMu.Lock()
	defer summaryMu.Unlock()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DAEMON\tPROOF\tRESULT\tTOOK")
	for _, r := range summary {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.daemon, r.proof, r.result, r.took.Round(100*time.Millisecond))
	}
	_ = tw.Flush()
}

func TestMain(m *testing.M) {
	if os.Getenv("TRELLIS_E2E") != "1" {
		fmt.Println("e2e: skipped (set TRELLIS_E2E=1, as `make e2e` does; needs root on Linux)")
		os.Exit(m.Run())
	}
	cfg := cluster.Config{StateDir: os.Getenv("TRELLIS_E2E_STATE"), BinDir: os.Getenv("TRELLIS_TESTENV_ASSETS"), Log: os.Stderr}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(filepath.Dir(cluster.DefaultStateDir()), "e2e")
	}
	// Tear down on interrupt too: the cluster must never outlive the run.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "e2e: %v: tearing the cluster down\n", s)
		if err := cluster.Down(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: teardown:", err)
		}
		os.Exit(1)
	}()
	code := m.Run()
	for _, c := range wgClients {
		c.dev.Close()
	}
	start := time.Now()
	downErr := cluster.Down(cfg)
	if downErr != nil {
		fmt.Fprintln(os.Stderr, "e2e: teardown:", downErr)
		code = 1
	}
	record("cluster", "teardown (processes, mounts, iptables, sysctls, files)", resultOf(downErr == nil), time.Since(start))
	fmt.Println()
	printSummary(os.Stdout)
	if f, err := os.Create(filepath.Join(cfg.StateDir, "logs", "e2e-summary.txt")); err == nil {
		printSummary(f)
		f.Close()
	}
	os.Exit(code)
}

func resultOf(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// step runs one proof as a subtest and records it.
func step(t *testing.T, daemon, proof string, f func(t *testing.T)) bool {
	start := time.Now()
	ok := t.Run(daemon+"/"+strings.ReplaceAll(proof, " ", "_"), f)
	record(daemon, proof, resultOf(ok), time.Since(start))
	return ok
}

func TestE2E(t *testing.T) {
	if os.Getenv("TRELLIS_E2E") != "1" {
		t.Skip("set TRELLIS_E2E=1 (make e2e)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	if !step(t, "cluster", "images built and cluster up", func(t *testing.T) { setup(ctx, t) }) {
		t.FailNow()
	}
	if !step(t, "all", "local overlay applied, every workload Running and Ready", func(t *testing.T) {
		applyOverlay(ctx, t, "local", tag1)
		waitWorkloadsReady(ctx, t, 4*time.Minute)
	}) {
		dumpPods(ctx, t)
		t.FailNow()
	}
	step(t, "cluster", "pod logs through the API server (kubectl logs: apiserver to kubelet)", func(t *testing.T) { proveAPILogs(ctx, t) })
	wgOK := step(t, "wg-gateway", "wireguard-go clients outside reach their server pods via node port, routed by key", func(t *testing.T) { proveWG(ctx, t) })
	step(t, "otel-shoot-scraper", "kubelet and cAdvisor metrics delivered to the OTLP receiver pod", func(t *testing.T) { proveOtel(ctx, t) })
	step(t, "egress-reporter", "probe via STUN stand-in, published in kube-system/shoot-info", func(t *testing.T) { proveEgress(ctx, t) })
	step(t, "zone-flow-tracer", "bytes between two pods counted (zone e2e-a to e2e-a)", func(t *testing.T) { proveZoneFlow(ctx, t) })
	step(t, "mr-signer", "webhook via Service signs a trusted write; unsigned write stays unsigned", func(t *testing.T) { proveMRSigner(ctx, t) })
	step(t, "all", "rolling update to a new image tag, every workload Ready again", func(t *testing.T) {
		applyOverlay(ctx, t, "local", tag2)
		waitWorkloadsReady(ctx, t, 4*time.Minute)
		checkImagesTagged(ctx, t, tag2)
	})
	if wgOK {
		step(t, "wg-gateway", "clients reconnect after the gateway's rolling update", func(t *testing.T) {
			if err := fetchAll(ctx, 90*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
	if step(t, "all", "single-node overlay over local: every workload Ready, each PodDisruptionBudget allows evicting its one pod", func(t *testing.T) { proveSingleNode(ctx, t, tag2) }) &&
		step(t, "all", "shoot overlay over single-node: the per-node DaemonSets Ready (scraper queue on a hostPath)", func(t *testing.T) { proveShoot(ctx, t, tag2) }) {
		step(t, "otel-shoot-scraper", "receiver down, scraper pod re-created: queued scrapes delivered, no gap at the receiver", func(t *testing.T) { proveOtelQueue(ctx, t) })
		step(t, "zone-flow-tracer", "pod to a stand-in node in zone e2e-b: bytes and cost counted cross-zone", func(t *testing.T) { proveCrossZone(ctx, t) })
	}
	step(t, "all", "seed overlay: 3 replicas each Ready, one Lease holder per leader-elected daemon", func(t *testing.T) { proveSeed(ctx, t, tag2) })
	step(t, "mr-signer", "webhook signs every write through a 3-replica rolling update", func(t *testing.T) { proveWebhookAvailability(ctx, t, tag1) })
	step(t, "all", "SIGKILL of a daemon's process recovers (restart, Ready)", func(t *testing.T) { proveKillRecovery(ctx, t) })
	// Last: the drain evicts every pod that is not a DaemonSet's.
	step(t, "event-watcher", "Azure Reboot event: condition, taint, cordon, drain with a real PDB", func(t *testing.T) { proveEventWatcher(ctx, t) })
	if t.Failed() {
		dumpPods(ctx, t)
	}
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// setup builds the binaries and images, starts the cluster, imports the images
// and installs what Gardener would provide (CRDs).
func setup(ctx context.Context, t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the e2e needs root")
	}
	repo := repoRoot(t)
	kustom := os.Getenv("TRELLIS_KUSTOMIZE")
	if kustom == "" {
		t.Fatal("TRELLIS_KUSTOMIZE is not set (make e2e sets it)")
	}
	stateDir := os.Getenv("TRELLIS_E2E_STATE")
	if stateDir == "" {
		stateDir = filepath.Join(filepath.Dir(cluster.DefaultStateDir()), "e2e")
	}
	cfg := cluster.Config{StateDir: stateDir, BinDir: os.Getenv("TRELLIS_TESTENV_ASSETS"), RepoDir: repo, Log: testWriter{t}}
	work := filepath.Join(filepath.Dir(stateDir), "e2e-build")
	bin := filepath.Join(work, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags",
		"-s -w -X github.com/trellis-garden/trellis/internal/version.version="+tag1,
		"-o", bin+"/", "./cmd/...", "./test/e2e/standin")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("binaries built in %s", time.Since(start).Round(time.Millisecond))
	var tars []string
	for _, tag := range []string{tag1, tag2} {
		for _, d := range daemons {
			spec := imagebuild.Spec{
				Ref:        "trellis/" + d + ":" + tag,
				Files:      []imagebuild.File{{Path: "/" + d, Source: filepath.Join(bin, d), Mode: 0o755}},
				Dirs:       []string{"/tmp"},
				Entrypoint: []string{"/" + d},
				User:       "65532:65532",
				Labels:     map[string]string{"org.opencontainers.image.version": tag},
			}
			f := filepath.Join(work, d+"-"+tag+".tar")
			if err := imagebuild.WriteTarball(spec, f); err != nil {
				t.Fatal(err)
			}
			tars = append(tars, f)
		}
	}
	sf := filepath.Join(work, "standin.tar")
	if err := imagebuild.WriteTarball(imagebuild.Spec{
		Ref: standinRef, Files: []imagebuild.File{{Path: "/standin", Source: filepath.Join(bin, "standin"), Mode: 0o755}},
		Entrypoint: []string{"/standin"}, User: "65532:65532",
	}, sf); err != nil {
		t.Fatal(err)
	}
	tars = append(tars, sf)
	t.Logf("images written in %s", time.Since(start).Round(time.Millisecond))

	cl, err := cluster.Up(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("cluster up at %s; KUBECONFIG=%s", time.Since(start).Round(time.Millisecond), cl.Kubeconfig)
	if err := cluster.ImportImages(ctx, cfg, tars...); err != nil {
		t.Fatal(err)
	}
	t.Logf("images imported at %s", time.Since(start).Round(time.Millisecond))
	dyn, err := dynamic.NewForConfig(cl.REST)
	if err != nil {
		t.Fatal(err)
	}
	env = &e2eEnv{cfg: cfg, cl: cl, dyn: dyn, repo: repo, work: work, kustom: kustom}
	env.resetMapper()
	// Gardener's CRDs that mr-signer (ManagedResource) and egress-reporter
	// (Infrastructure) read.
	dir, err := testenv.ModuleDir(ctx, "github.com/gardener/gardener", "v1.149.3")
	if err != nil {
		t.Fatal(err)
	}
	crds := filepath.Join(dir, "example", "seed-crds")
	te := &testenv.Env{Config: cl.REST, Client: cl.Client, Dynamic: dyn}
	if _, err := te.InstallCRDs(ctx,
		filepath.Join(crds, "10-crd-resources.gardener.cloud_managedresources.yaml"),
		filepath.Join(crds, "10-crd-extensions.gardener.cloud_infrastructures.yaml")); err != nil {
		t.Fatal(err)
	}
	env.resetMapper()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (e *e2eEnv) resetMapper() {
	e.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(e.cl.Client.Discovery()))
}

// applyOverlay builds test/e2e/kustomize/<name> with the images at tag (and
// extra inline patches, each a kustomize patches entry) and applies it
// server-side; objects without a namespace go to "default".
func applyOverlay(ctx context.Context, t *testing.T, name, tag string, patches ...string) {
	t.Helper()
	dir := filepath.Join(env.work, "overlay-"+name+"-"+tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var k strings.Builder
	k.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n")
	// kustomize refuses an absolute path as a resource ("new root cannot be
	// absolute"): name the overlay relative to the generated folder.
	rel, err := filepath.Rel(dir, filepath.Join(env.repo, "test", "e2e", "kustomize", name))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&k, "  - %s\nimages:\n", rel)
	for _, d := range daemons {
		fmt.Fprintf(&k, "  - {name: trellis/%s, newTag: %s}\n", d, tag)
	}
	if len(patches) > 0 {
		k.WriteString("patches:\n")
		for _, p := range patches {
			k.WriteString(p)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, env.kustom, "build", "--load-restrictor=LoadRestrictionsNone", dir)
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
				break
			}
			t.Fatal(err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
	// Namespaces first (also those the overlays assume exist, like garden).
	nss := map[string]bool{"default": true}
	for _, u := range objs {
		if u.GetNamespace() != "" {
			nss[u.GetNamespace()] = true
		}
	}
	for ns := range nss {
		_, err := env.cl.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// CRDs, then everything else; retried while webhooks or CRDs settle.
	sort.SliceStable(objs, func(i, j int) bool {
		return objs[i].GetKind() == "CustomResourceDefinition" && objs[j].GetKind() != "CustomResourceDefinition"
	})
	for _, u := range objs {
		if err := poll(ctx, 60*time.Second, func() error { return env.apply(ctx, u) }); err != nil {
			t.Fatalf("apply %s %s/%s: %v", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	env.objects = objs
	prepareLandscape(ctx, t)
}

func (e *e2eEnv) apply(ctx context.Context, u *unstructured.Unstructured) error {
	gvk := u.GroupVersionKind()
	m, err := e.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		e.resetMapper()
		return err
	}
	body, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	force := true
	opts := metav1.PatchOptions{FieldManager: fieldManger, Force: &force}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := u.GetNamespace()
		if ns == "" {
			ns = "default"
			u.SetNamespace(ns)
		}
		_, err = e.dyn.Resource(m.Resource).Namespace(ns).Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts)
	} else {
		_, err = e.dyn.Resource(m.Resource).Patch(ctx, u.GetName(), types.ApplyPatchType, body, opts)
	}
	return err
}

// poll retries f every 500ms until it succeeds or the timeout passes.
func poll(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// workloads lists the Deployments and DaemonSets of the last apply.
func workloads() []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, u := range env.objects {
		if u.GetKind() == "Deployment" || u.GetKind() == "DaemonSet" {
			out = append(out, u)
		}
	}
	return out
}

// waitWorkloadsReady waits until every Deployment and DaemonSet has observed its
// latest generation and has all its replicas updated, available and ready.
func waitWorkloadsReady(ctx context.Context, t *testing.T, timeout time.Duration) {
	t.Helper()
	for _, u := range workloads() {
		id := u.GetKind() + " " + u.GetNamespace() + "/" + u.GetName()
		start := time.Now()
		err := poll(ctx, timeout, func() error {
			switch u.GetKind() {
			case "Deployment":
				d, err := env.cl.Client.AppsV1().Deployments(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
				if err != nil {
					return err
				}
				want := int32(1)
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				s := d.Status
				if s.ObservedGeneration < d.Generation || s.UpdatedReplicas != want || s.ReadyReplicas != want || s.AvailableReplicas != want || s.Replicas != want {
					return fmt.Errorf("%s: %d/%d updated, %d ready, %d available, %d total", id, s.UpdatedReplicas, want, s.ReadyReplicas, s.AvailableReplicas, s.Replicas)
				}
			case "DaemonSet":
				d, err := env.cl.Client.AppsV1().DaemonSets(u.GetNamespace()).Get(ctx, u.GetName(), metav1.GetOptions{})
				if err != nil {
					return err
				}
				s := d.Status
				if s.ObservedGeneration < d.Generation || s.DesiredNumberScheduled == 0 || s.UpdatedNumberScheduled != s.DesiredNumberScheduled || s.NumberReady != s.DesiredNumberScheduled || s.NumberAvailable != s.DesiredNumberScheduled {
					return fmt.Errorf("%s: %d/%d updated, %d ready", id, s.UpdatedNumberScheduled, s.DesiredNumberScheduled, s.NumberReady)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s not Ready: %v", id, err)
			continue
		}
		t.Logf("%s Ready (waited %s)", id, time.Since(start).Round(100*time.Millisecond))
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkImagesTagged: every trellis container runs an image with tag.
func checkImagesTagged(ctx context.Context, t *testing.T, tag string) {
	pods, err := env.cl.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/part-of=trellis"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Spec.Containers {
			n++
			if !strings.HasSuffix(c.Image, ":"+tag) {
				t.Errorf("pod %s/%s container %s runs %s, want tag %s", p.Namespace, p.Name, c.Name, c.Image, tag)
			}
		}
	}
	if n == 0 {
		t.Fatal("no trellis pods")
	}
}

// dumpPods logs every pod's phase and container states, and the tail of the
// logs of pods that are not Ready.
func dumpPods(ctx context.Context, t *testing.T) {
	if env == nil {
		return
	}
	pods, err := env.cl.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Log(err)
		return
	}
	for _, p := range pods.Items {
		var states []string
		ready := true
		for _, cs := range p.Status.ContainerStatuses {
			st := "running"
			switch {
			case cs.State.Waiting != nil:
				st = "waiting " + cs.State.Waiting.Reason + ": " + cs.State.Waiting.Message
			case cs.State.Terminated != nil:
				st = fmt.Sprintf("terminated %s (%d)", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
			}
			states = append(states, fmt.Sprintf("%s ready=%v restarts=%d %s", cs.Name, cs.Ready, cs.RestartCount, st))
			ready = ready && cs.Ready
		}
		t.Logf("pod %s/%s %s %v", p.Namespace, p.Name, p.Status.Phase, states)
		if !ready {
			for _, c := range p.Status.Conditions {
				if c.Status != corev1.ConditionTrue {
					t.Logf("  condition %s=%s %s %s", c.Type, c.Status, c.Reason, c.Message)
				}
			}
			logs, _ := filepath.Glob(filepath.Join(env.cl.PodLogDir(), p.Namespace+"_"+p.Name+"_*", "*", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				if len(lines) > 15 {
					lines = lines[len(lines)-15:]
				}
				t.Logf("  %s:\n    %s", l, strings.Join(lines, "\n    "))
			}
		}
	}
}

// httpJSON GETs url and decodes JSON into v.
func httpJSON(url string, v any) error {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// prepareLandscape creates what Gardener would: egress-reporter's shoot
// kubeconfig and token, shoot-info; mr-signer's keys, serving certificate and
// the webhook's caBundle; gardenlet's ServiceAccount.
func prepareLandscape(ctx context.Context, t *testing.T) {
	t.Helper()
	cs := env.cl.Client
	// egress-reporter: the shoot is this cluster, reached through the kubernetes
	// Service; the token is the shoot-side ServiceAccount's.
	ca, err := os.ReadFile(filepath.Join(env.cfg.StateDir, "pki", "apiserver.crt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range env.objects {
		if u.GetKind() != "Deployment" || u.GetName() != "egress-reporter" {
			continue
		}
		ns := u.GetNamespace()
		kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: shoot
  cluster:
    server: https://%s
    certificate-authority-data: %s
users:
- name: egress-reporter
  user:
    tokenFile: /var/run/secrets/gardener.cloud/shoot/generic-kubeconfig/token
contexts:
- name: shoot
  context: {cluster: shoot, user: egress-reporter}
current-context: shoot
`, cluster.APIServiceIP, b64(ca))
		upsertSecret(ctx, t, ns, "generic-token-kubeconfig", map[string][]byte{"kubeconfig": []byte(kubeconfig)})
		exp := int64(24 * 3600)
		var tok *authenticationv1.TokenRequest
		if err := poll(ctx, 30*time.Second, func() error {
			var err error
			tok, err = cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "egress-reporter",
				&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		upsertSecret(ctx, t, ns, "shoot-access-egress-reporter", map[string][]byte{"token": []byte(tok.Status.Token)})
	}
	// shoot-info as gardenlet writes it.
	_, err = cs.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "shoot-info"},
		Data:       map[string]string{"projectName": "e2e", "shootName": "local", "provider": "local", "region": "e2e"},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// mr-signer: signing key, serving certificate for its Service, caBundle,
	// unless mr-signer bootstraps them itself (--bootstrap.certificates).
	if mrSignerNeedsBootstrap() {
		if _, err := cs.CoreV1().Secrets("trellis-mr-signer").Get(ctx, "mr-signer-webhook-tls", metav1.GetOptions{}); apierrors.IsNotFound(err) {
			caPEM, certPEM, keyPEM := servingCert(t, "mr-signer.trellis-mr-signer.svc")
			upsertSecret(ctx, t, "trellis-mr-signer", "mr-signer-webhook-tls", map[string][]byte{"tls.crt": certPEM, "tls.key": keyPEM, "ca.crt": caPEM})
			_, priv, _ := ed25519.GenerateKey(rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(priv)
			upsertSecret(ctx, t, "trellis-mr-signer", "mr-signer-signing-key", map[string][]byte{"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})})
		}
		sec, err := cs.CoreV1().Secrets("trellis-mr-signer").Get(ctx, "mr-signer-webhook-tls", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		patch := fmt.Sprintf(`[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":%q}]`, b64(sec.Data["ca.crt"]))
		if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, "trellis-mr-signer", types.JSONPatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// gardenlet, whose writes mr-signer trusts.
	_, err = cs.CoreV1().ServiceAccounts("garden").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "gardenlet"}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// mrSignerNeedsBootstrap: the applied mr-signer Deployment reads its serving
// certificate from files the e2e must provide (no --bootstrap.certificates).
func mrSignerNeedsBootstrap() bool {
	for _, u := range env.objects {
		if u.GetKind() != "Deployment" || u.GetName() != "mr-signer" {
			continue
		}
		cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for _, c := range cs {
			args, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			for _, a := range args {
				if strings.HasPrefix(a, "--bootstrap.certificates") {
					return false
				}
			}
		}
		return true
	}
	return false
}

func upsertSecret(ctx context.Context, t *testing.T, ns, name string, data map[string][]byte) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}
	// mr-signer's webhooks (failurePolicy Fail) see every Secret create outside
	// kube-system and its own namespace: until a replica serves, such creates
	// are refused, and a writer retries (as Gardener's do).
	err := poll(ctx, 4*time.Minute, func() error {
		cur, err := env.cl.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = env.cl.Client.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if cur.Data == nil {
			cur.Data = map[string][]byte{}
		}
		for k, v := range data {
			cur.Data[k] = v
		}
		_, err = env.cl.Client.CoreV1().Secrets(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("secret %s/%s: %v", ns, name, err)
	}
}

// servingCert makes a CA and a serving certificate for dnsName signed by it.
func servingCert(t *testing.T, dnsName string) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trellis-e2e-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: dnsName},
		DNSNames:  []string{dnsName, strings.TrimSuffix(dnsName, ".svc"), dnsName + ".cluster.local"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
