package egressreporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startShoot starts a second, independent API server for the shoot.
func startShoot(t *testing.T) *testenv.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.AssetsDir())
	if err != nil {
		if testenv.Required() || !strings.Contains(err.Error(), "not built") {
			t.Fatalf("shoot kube-apiserver: %v", err)
		}
		t.Skipf("shoot kube-apiserver unavailable: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop shoot: %v", err)
		}
	})
	return env
}

// installInfrastructureCRD installs Gardener's real Infrastructure CRD.
func installInfrastructureCRD(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	dir, err := testenv.ModuleDir(ctx, "github.com/gardener/gardener", "v1.149.3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.InstallCRDs(ctx, filepath.Join(dir, "example/seed-crds/10-crd-extensions.gardener.cloud_infrastructures.yaml")); err != nil {
		t.Fatal(err)
	}
}

// setInfrastructure creates the Infrastructure if needed and sets its
// status.egressCIDRs (nil removes the field) through the status subresource, as
// a provider extension does.
func setInfrastructure(t *testing.T, env *testenv.Env, ns, name string, cidrs []string) {
	t.Helper()
	ctx := context.Background()
	res := env.Dynamic.Resource(InfrastructureGVR).Namespace(ns)
	obj, err := res.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		obj, err = res.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "extensions.gardener.cloud/v1alpha1", "kind": "Infrastructure",
			"metadata": map[string]any{"name": name},
			"spec": map[string]any{"type": "aws", "region": "eu-central-1",
				"secretRef": map[string]any{"name": "cloudprovider", "namespace": ns}},
		}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	status := map[string]any{}
	if cidrs != nil {
		items := make([]any, len(cidrs))
		for i, c := range cidrs {
			items[i] = c
		}
		status["egressCIDRs"] = items
	}
	obj.Object["status"] = status
	if _, err := res.UpdateStatus(ctx, obj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// gardenletKeys are shoot-info keys another manager writes.
var gardenletKeys = map[string]string{"projectName": "dev", "shootName": "crocus", "shootNamespace": "shoot--dev--crocus",
	"provider": "aws", "region": "eu-central-1", "kubernetesVersion": "1.37.2"}

// writeShootInfoAsGardenlet creates or updates shoot-info as gardenlet would (an
// Update, field manager "gardenlet"), with gardenletKeys plus extra; a key set to
// "" in extra is removed.
func writeShootInfoAsGardenlet(t *testing.T, client kubernetes.Interface, extra map[string]string) {
	t.Helper()
	ctx := context.Background()
	cms := client.CoreV1().ConfigMaps(ShootInfoNamespace)
	cm, err := cms.Get(ctx, ShootInfoName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: ShootInfoName, Namespace: ShootInfoNamespace}, Data: map[string]string{}}
		err = nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for k, v := range gardenletKeys {
		cm.Data[k] = v
	}
	for k, v := range extra {
		if v == "" {
			delete(cm.Data, k)
		} else {
			cm.Data[k] = v
		}
	}
	opts := metav1.UpdateOptions{FieldManager: "gardenlet"}
	if cm.ResourceVersion == "" {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: "gardenlet"})
	} else {
		_, err = cms.Update(ctx, cm, opts)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func shootInfo(t *testing.T, client kubernetes.Interface) *corev1.ConfigMap {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ShootInfoNamespace).Get(context.Background(), ShootInfoName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// checkShootInfo fails unless shoot-info holds gardenlet's keys untouched and
// egressCIDRs is want ("" : absent), and the reporter owns nothing but that key.
func checkShootInfo(t *testing.T, client kubernetes.Interface, want string) {
	t.Helper()
	cm := shootInfo(t, client)
	got, has := cm.Data[EgressCIDRsKey]
	if got != want || has != (want != "") {
		t.Fatalf("egressCIDRs = %q (present %v), want %q", got, has, want)
	}
	for k, v := range gardenletKeys {
		if cm.Data[k] != v {
			t.Fatalf("gardenlet's key %s = %q, want %q (data %v)", k, cm.Data[k], v, cm.Data)
		}
	}
	for _, mf := range cm.ManagedFields {
		if mf.Manager != FieldManager {
			continue
		}
		var fields map[string]any
		if err := json.Unmarshal(mf.FieldsV1.GetRawBytes(), &fields); err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(fields)
		if want == "" && string(raw) != "{}" && string(raw) != `{"f:data":{}}` {
			t.Fatalf("reporter still owns %s", raw)
		}
		if want != "" && string(raw) != `{"f:data":{"f:egressCIDRs":{}}}` {
			t.Fatalf("reporter owns %s, want only data.egressCIDRs", raw)
		}
	}
}

// eventsWith lists the Events on shoot-info with reason.
func eventsWith(t *testing.T, client kubernetes.Interface, reason string) []corev1.Event {
	t.Helper()
	list, err := client.CoreV1().Events(ShootInfoNamespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.InvolvedObject.Name == ShootInfoName {
			out = append(out, e)
		}
	}
	return out
}

// fakeClock is the reporter's clock in tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// testReporter builds a reporter from options with a fake clock, its informers
// running until the test ends.
func testReporter(t *testing.T, o *Options, seedCfg, shootCfg *rest.Config, clock *fakeClock) *Reporter {
	t.Helper()
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	shoot := kubernetes.NewForConfigOrDie(shootCfg)
	recorder, stop := kube.NewEventRecorder(shoot, Name)
	t.Cleanup(stop)
	r, start, err := buildReporter(o, seedCfg, shootCfg, shoot, newMetrics("test"), discard(), recorder)
	if err != nil {
		t.Fatal(err)
	}
	r.now = clock.Now
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	start(ctx)
	return r
}

// testOptions are reporter options with the given sources and no flags parsed.
func testOptions(sources ...string) *Options {
	o := NewOptions()
	o.Sources = sources
	o.ProbeMaxAge = DefaultProbeMaxAge
	o.Config = Config{HysteresisAdd: DefaultHysteresisAdd, HysteresisRemove: DefaultHysteresisRemove,
		SyncInterval: DefaultSyncInterval, RetryInterval: 50 * time.Millisecond, MaxRetryInterval: 500 * time.Millisecond}
	return o
}

// syncUntil syncs (resync) until shoot-info's egressCIDRs is want: the informer
// caches may lag behind the test's writes.
func syncUntil(t *testing.T, r *Reporter, client kubernetes.Interface, want string) {
	t.Helper()
	testkit.EventuallyNil(t, "egressCIDRs "+want, func() error {
		if err := r.Sync(context.Background(), true); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
		cm, err := client.CoreV1().ConfigMaps(ShootInfoNamespace).Get(context.Background(), ShootInfoName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := cm.Data[EgressCIDRsKey]; got != want {
			return fmt.Errorf("egressCIDRs %q", got)
		}
		return nil
	})
}

// annotateNode creates (if needed) a Node with probe annotations, as the probe
// writes them.
func annotateNode(t *testing.T, client kubernetes.Interface, name, addrs string, at time.Time) {
	t.Helper()
	ctx := context.Background()
	ann := map[string]string{AddressAnnotation: addrs, ObservedAtAnnotation: at.UTC().Format(time.RFC3339)}
	node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}, metav1.CreateOptions{})
		if err == nil {
			t.Cleanup(func() { _ = client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		}
	} else if err == nil {
		node.Annotations = ann
		_, err = client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// proxy forwards TCP to an API server and can be taken down, to simulate an
// outage of the API server.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go p.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done; p.setDown(true) })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.down {
		p.mu.Unlock()
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c], p.conns[up] = struct{}{}, struct{}{}
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}
