package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestLoadRESTConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	write := func(name, server string) string {
		p := filepath.Join(dir, name)
		kc := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + server +
			"\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: t\ncurrent-context: c\n"
		if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	fromFlag := write("flag", "https://flag.invalid")
	fromEnv := write("env", "https://env.invalid")

	t.Setenv("KUBECONFIG", fromEnv)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	cfg, src, err := LoadRESTConfig(fromFlag)
	if err != nil || src != SourceFlag || cfg.Host != "https://flag.invalid" {
		t.Fatalf("flag: %v %v %v", cfg, src, err)
	}
	cfg, src, err = LoadRESTConfig("")
	if err != nil || src != SourceEnv || cfg.Host != "https://env.invalid" {
		t.Fatalf("env: %v %v %v", cfg, src, err)
	}
	t.Setenv("KUBECONFIG", "")
	_, src, err = LoadRESTConfig("")
	if err == nil || src != SourceInCluster || !strings.Contains(err.Error(), "set --kubeconfig or $KUBECONFIG") {
		t.Fatalf("in-cluster outside a cluster: %v %v", src, err)
	}
	if _, _, err := LoadRESTConfig(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing kubeconfig accepted")
	}

	o := &ClientOptions{Kubeconfig: fromFlag, QPS: 5, Burst: 7}
	rc, err := o.RESTConfig("test-daemon")
	if err != nil || rc.QPS != 5 || rc.Burst != 7 || !strings.HasPrefix(rc.UserAgent, "trellis-test-daemon/") {
		t.Fatalf("RESTConfig: %+v %v", rc, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (&ClientOptions{QPS: 0, Burst: 0, Kubeconfig: "/nonexistent"}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "--kube.qps") || !strings.Contains(err.Error(), "--kube.burst") || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("ClientOptions.Validate = %v", err)
	}
	if err := (&NodeOptions{}).Validate(); err == nil || !strings.Contains(err.Error(), NodeNameEnv) {
		t.Fatalf("NodeOptions.Validate = %v", err)
	}
	le := NewLeaderElectionOptions("x")
	le.Enabled = true
	le.RenewDeadline = le.LeaseDuration
	if err := le.Validate(); err == nil || !strings.Contains(err.Error(), "lease-duration") {
		t.Fatalf("LeaderElectionOptions.Validate = %v", err)
	}
}

// Two field managers each own one key of a ConfigMap; a third write that would
// take a key from its owner is reported, not applied.
func TestServerSideApplyOwnership(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	cms := env.Client.CoreV1().ConfigMaps(ns)
	alpha := Applier{FieldManager: FieldManager("alpha")}
	beta := Applier{FieldManager: FieldManager("beta")}

	if _, err := Apply(ctx, alpha, cms.Apply, applycorev1.ConfigMap("shared", ns).WithData(map[string]string{"a": "1"})); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(ctx, beta, cms.Apply, applycorev1.ConfigMap("shared", ns).WithData(map[string]string{"b": "2"})); err != nil {
		t.Fatal(err)
	}
	// alpha rewrites its key: beta's key survives.
	cm, err := Apply(ctx, alpha, cms.Apply, applycorev1.ConfigMap("shared", ns).WithData(map[string]string{"a": "10"}))
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["a"] != "10" || cm.Data["b"] != "2" || len(cm.Data) != 2 {
		t.Fatalf("data after alpha's second apply: %v", cm.Data)
	}
	owners := map[string]string{}
	for _, mf := range cm.ManagedFields {
		if mf.FieldsV1 == nil {
			continue
		}
		raw := mf.FieldsV1.GetRawString()
		for _, k := range []string{"a", "b"} {
			if strings.Contains(raw, `"f:`+k+`"`) {
				owners[k] = mf.Manager
			}
		}
	}
	if owners["a"] != "trellis-alpha" || owners["b"] != "trellis-beta" {
		t.Fatalf("field owners = %v", owners)
	}

	// beta tries to set alpha's key to another value: a conflict naming alpha.
	_, err = Apply(ctx, beta, cms.Apply, applycorev1.ConfigMap("shared", ns).WithData(map[string]string{"a": "evil", "b": "2"}))
	ce := AsConflict(err)
	if ce == nil {
		t.Fatalf("conflicting apply: err = %v, want *ConflictError", err)
	}
	if len(ce.Conflicts) != 1 || !strings.Contains(ce.Conflicts[0], "trellis-alpha") || !strings.Contains(ce.Conflicts[0], ".data.a") {
		t.Fatalf("conflict details = %v", ce.Conflicts)
	}
	cm, err = cms.Get(ctx, "shared", metav1.GetOptions{})
	if err != nil || cm.Data["a"] != "10" {
		t.Fatalf("value after conflict: %v %v (overwritten?)", cm.Data, err)
	}
	// An optimistic-lock conflict is not a field conflict.
	if AsConflict(errors.New("other")) != nil {
		t.Fatal("plain error taken for a conflict")
	}

	// beta drops its key from its apply: the key goes, alpha's stays.
	cm, err = Apply(ctx, beta, cms.Apply, applycorev1.ConfigMap("shared", ns))
	if err != nil || len(cm.Data) != 1 || cm.Data["a"] != "10" {
		t.Fatalf("after beta released its key: %v %v", cm.Data, err)
	}
}

func TestNodeInformersSeeOnlyTheirNode(t *testing.T) {
	env := testenv.Get(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := env.Namespace(t)
	suffix := ns[len(ns)-6:]
	mine, other := "node-a-"+suffix, "node-b-"+suffix
	for _, n := range []string{mine, other} {
		if _, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pod-on-" + n, Namespace: ns},
			Spec:       corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	inf := NewNodeInformers(env.Client, mine, 0)
	nodes := inf.Node.Core().V1().Nodes()
	pods := inf.Pods.Core().V1().Pods()
	ready := HasSynced(nodes.Informer(), pods.Informer())
	if ready(ctx) == nil {
		t.Fatal("ready before start")
	}
	inf.Start(ctx)
	if err := inf.WaitForCacheSync(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ready(ctx); err != nil {
		t.Fatal(err)
	}
	if node, err := inf.GetNode(); err != nil || node.Name != mine {
		t.Fatalf("GetNode = %v, %v", node, err)
	}
	if got := nodes.Informer().GetStore().ListKeys(); len(got) != 1 || got[0] != mine {
		t.Fatalf("node cache = %v, want only %s", got, mine)
	}
	if got := pods.Informer().GetStore().ListKeys(); len(got) != 1 || got[0] != ns+"/pod-on-"+mine {
		t.Fatalf("pod cache = %v, want only the pod on %s", got, mine)
	}
	// A pod scheduled later to this node arrives; one on the other node does not.
	for _, n := range []string{other, mine} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "late-on-" + n, Namespace: ns},
			Spec:       corev1.PodSpec{NodeName: n, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		}
		if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "the late pod on the own node in the cache", func() bool {
		_, err := pods.Lister().Pods(ns).Get("late-on-" + mine)
		return err == nil
	})
	// Events arrive in order per watch, and both pods were created before the
	// second one arrived; the other node's pod must not be there.
	if _, err := pods.Lister().Pods(ns).Get("late-on-" + other); err == nil {
		t.Fatal("pod of another node in the cache")
	}
}

func TestLeaderElectionFailover(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	type candidate struct {
		id      string
		cancel  context.CancelFunc
		done    chan error
		leading chan struct{}
	}
	var mu sync.Mutex
	var leaders []string
	start := func(id string) *candidate {
		o := NewLeaderElectionOptions("test")
		o.Enabled, o.Namespace, o.Identity = true, ns, id
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 3*time.Second, 2*time.Second, 200*time.Millisecond
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &candidate{id: id, cancel: cancel, done: make(chan error, 1), leading: make(chan struct{})}
		client := kubernetes.NewForConfigOrDie(env.Config)
		go func() {
			c.done <- o.RunOrLead(ctx, client, discard(), nil, func(ctx context.Context) error {
				mu.Lock()
				leaders = append(leaders, id)
				mu.Unlock()
				close(c.leading)
				<-ctx.Done()
				return nil
			})
		}()
		return c
	}
	a := start("a")
	select {
	case <-a.leading:
	case <-time.After(30 * time.Second):
		t.Fatal("first candidate never led")
	}
	b := start("b")
	// b must not lead while a holds the Lease; a releases it on shutdown and b
	// takes over well before the lease duration would run out.
	a.cancel()
	if err := <-a.done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("leader shutdown: %v", err)
	}
	select {
	case <-b.leading:
	case <-time.After(30 * time.Second):
		t.Fatal("second candidate never took over")
	}
	b.cancel()
	<-b.done
	mu.Lock()
	defer mu.Unlock()
	if len(leaders) != 2 || leaders[0] != "a" || leaders[1] != "b" {
		t.Fatalf("leaders in order = %v", leaders)
	}
	lease, err := env.Client.CoordinationV1().Leases(ns).Get(context.Background(), "trellis-test", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity != nil && *lease.Spec.HolderIdentity != "" {
		t.Fatalf("lease still held by %q after release", *lease.Spec.HolderIdentity)
	}
}

func TestLeaderElectionOffRunsDirectly(t *testing.T) {
	o := NewLeaderElectionOptions("x")
	ran := false
	if err := o.RunOrLead(context.Background(), nil, discard(), nil, func(context.Context) error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("ran=%v err=%v", ran, err)
	}
}
