package wggateway

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func TestKubeServiceBackend(t *testing.T) {
	key, b64 := sourceTestKey(9)
	svc := func(mutate func(*corev1.Service)) *corev1.Service {
		s := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shoot--a", Name: "vpn", Annotations: map[string]string{PublicKeyAnnotation: b64}},
			Spec: corev1.ServiceSpec{
				Type:       corev1.ServiceTypeClusterIP,
				ClusterIP:  "10.96.0.10",
				ClusterIPs: []string{"10.96.0.10"},
				Ports:      []corev1.ServicePort{{Name: "wireguard", Protocol: corev1.ProtocolUDP, Port: 1194}},
			},
		}
		if mutate != nil {
			mutate(s)
		}
		return s
	}
	for _, tc := range []struct {
		name     string
		svc      *corev1.Service
		portName string
		endpoint string
		reason   skipReason
	}{
		{name: "named UDP port", svc: svc(nil), endpoint: "10.96.0.10:1194"},
		{name: "key with newline", svc: svc(func(s *corev1.Service) { s.Annotations[PublicKeyAnnotation] = b64 + "\n" }), endpoint: "10.96.0.10:1194"},
		{name: "IPv6", svc: svc(func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00:10:96::a", []string{"fd00:10:96::a"}
		}), endpoint: "[fd00:10:96::a]:1194"},
		{name: "dual stack, IPv6 primary", svc: svc(func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00::a", []string{"fd00::a", "10.96.0.10"}
		}), endpoint: "[fd00::a]:1194"},
		{name: "only clusterIP set", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIPs = nil }), endpoint: "10.96.0.10:1194"},
		{name: "IPv4-mapped", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"::ffff:10.96.0.11"} }), endpoint: "10.96.0.11:1194"},
		{name: "no named port: default", svc: svc(func(s *corev1.Service) { s.Spec.Ports[0].Name = "vpn" }), endpoint: "10.96.0.10:51820"},
		{name: "other port name", svc: svc(func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "wg", Protocol: corev1.ProtocolUDP, Port: 4500})
		}), portName: "wg", endpoint: "10.96.0.10:4500"},
		{name: "no annotations", svc: svc(func(s *corev1.Service) { s.Annotations = nil }), reason: skipMissingKey},
		{name: "empty key", svc: svc(func(s *corev1.Service) { s.Annotations[PublicKeyAnnotation] = " " }), reason: skipMissingKey},
		{name: "bad key", svc: svc(func(s *corev1.Service) { s.Annotations[PublicKeyAnnotation] = "wg-key" }), reason: skipInvalidKey},
		{name: "hex key", svc: svc(func(s *corev1.Service) { s.Annotations[PublicKeyAnnotation] = fmt.Sprintf("%x", key) }), reason: skipInvalidKey},
		{name: "headless", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"} }), reason: skipNoAddress},
		{name: "ExternalName", svc: svc(func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "", nil, "vpn.example"
		}), reason: skipNoAddress},
		{name: "garbage IP", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"10.96.0.300"} }), reason: skipNoAddress},
		{name: "unspecified IP", svc: svc(func(s *corev1.Service) { s.Spec.ClusterIPs = []string{"::"} }), reason: skipNoAddress},
		{name: "TCP port", svc: svc(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolTCP }), reason: skipInvalidPort},
		{name: "protocol unset means TCP", svc: svc(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "" }), reason: skipInvalidPort},
		{name: "port out of range", svc: svc(func(s *corev1.Service) { s.Spec.Ports[0].Port = 70000 }), reason: skipInvalidPort},
	} {
		t.Run(tc.name, func(t *testing.T) {
			portName := tc.portName
			if portName == "" {
				portName = DefaultServicePortName
			}
			b, p := serviceBackend(tc.svc, portName, DefaultWireGuardPort)
			if b.Name != "shoot--a/vpn" {
				t.Errorf("Name = %q", b.Name)
			}
			if tc.reason != "" {
				if p == nil || p.reason != tc.reason || p.detail == "" {
					t.Fatalf("problem = %+v, want %s", p, tc.reason)
				}
				return
			}
			if p != nil {
				t.Fatalf("problem = %+v", p)
			}
			if b.PublicKey != key || b.Endpoint != netip.MustParseAddrPort(tc.endpoint) {
				t.Fatalf("backend = %v %x, want %s", b.Endpoint, b.PublicKey, tc.endpoint)
			}
		})
	}
}

func TestKubeSourceOptionsDefaults(t *testing.T) {
	o := KubeSourceOptions{}.withDefaults()
	if o.LabelSelector != "trellis.dev/wg-gateway=true" || o.PortName != "wireguard" || o.DefaultPort != 51820 || o.Namespace != "" {
		t.Fatalf("defaults = %+v", o)
	}
}

func TestKubeSourceInvalidSelector(t *testing.T) {
	src := NewKubeSource(nil, KubeSourceOptions{LabelSelector: "a in (b"}, nil, nil)
	err := src.Run(context.Background(), func([]Backend) { t.Error("update called") })
	if err == nil || !strings.Contains(err.Error(), "label selector") {
		t.Fatalf("Run = %v, want a selector error", err)
	}
}

// countingRecorder passes Events on and counts them per object name.
type countingRecorder struct {
	record.EventRecorder
	mu    sync.Mutex
	calls map[string]int
}

func (r *countingRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	if m, ok := obj.(metav1.Object); ok {
		r.mu.Lock()
		if r.calls == nil {
			r.calls = map[string]int{}
		}
		r.calls[m.GetName()]++
		r.mu.Unlock()
	}
	r.EventRecorder.Event(obj, eventtype, reason, message)
}

func (r *countingRecorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

type kubeTestService struct {
	name        string
	labelled    bool
	key         string
	clusterIP   string // "" allocated by the API server, or "None"
	ports       []corev1.ServicePort
	extraLabels map[string]string
}

func createTestService(ctx context.Context, t *testing.T, client kubernetes.Interface, ns string, s kubeTestService) *corev1.Service {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns, Labels: map[string]string{}, Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: s.clusterIP,
			Ports:     s.ports,
		},
	}
	if s.labelled {
		svc.Labels["trellis.dev/wg-gateway"] = "true"
	}
	for k, v := range s.extraLabels {
		svc.Labels[k] = v
	}
	if s.key != "" {
		svc.Annotations[PublicKeyAnnotation] = s.key
	}
	if len(svc.Spec.Ports) == 0 {
		svc.Spec.Ports = []corev1.ServicePort{{Name: "wireguard", Protocol: corev1.ProtocolUDP, Port: 51820}}
	}
	created, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", s.name, err)
	}
	return created
}

func endpointOf(t *testing.T, svc *corev1.Service, port uint16) netip.AddrPort {
	t.Helper()
	addr, err := netip.ParseAddr(svc.Spec.ClusterIPs[0])
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(addr, port)
}

// patchService changes a Service, retrying on write conflicts.
func patchService(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string, mutate func(*corev1.Service)) {
	t.Helper()
	for range 10 {
		svc, err := client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		mutate(svc)
		if _, err = client.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{}); err == nil {
			return
		}
		t.Logf("update service %s: %v (retrying)", name, err)
	}
	t.Fatalf("update service %s failed", name)
}

// TestKubeSourceFollowsServices runs the Kubernetes source against a real
// kube-apiserver: labelled Services become backends, invalid ones are skipped with
// a metric and an Event, and changes (a fixed annotation, a deletion, a removed
// label, a burst of new Services) arrive without a restart.
func TestKubeSourceFollowsServices(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	client := env.Client

	k1, b1 := sourceTestKey(1)
	k2, b2 := sourceTestKey(2)
	_, b3 := sourceTestKey(3)
	_, b4 := sourceTestKey(4)
	k5, b5 := sourceTestKey(5)
	udp := func(name string, port int32) []corev1.ServicePort {
		return []corev1.ServicePort{
			{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 8080},
			{Name: name, Protocol: corev1.ProtocolUDP, Port: port},
		}
	}
	a := createTestService(ctx, t, client, ns, kubeTestService{name: "a", labelled: true, key: b1, ports: udp("wireguard", 51999)})
	b := createTestService(ctx, t, client, ns, kubeTestService{name: "b", labelled: true, key: b2, ports: udp("openvpn", 1194)})
	createTestService(ctx, t, client, ns, kubeTestService{name: "headless", labelled: true, key: b3, clusterIP: "None"})
	createTestService(ctx, t, client, ns, kubeTestService{name: "badkey", labelled: true, key: "not-a-wireguard-key"})
	dup := createTestService(ctx, t, client, ns, kubeTestService{name: "dup", labelled: true, key: b1})
	createTestService(ctx, t, client, ns, kubeTestService{name: "unlabelled", key: b4})
	createTestService(ctx, t, client, ns, kubeTestService{name: "switched-off", key: b4, extraLabels: map[string]string{"trellis.dev/wg-gateway": "false"}})
	// A labelled Service in another namespace is outside this source's scope.
	createTestService(ctx, t, client, env.Namespace(t), kubeTestService{name: "elsewhere", labelled: true, key: b4})

	recorder, stopEvents := kube.NewEventRecorder(client, "wg-gateway-test")
	t.Cleanup(stopEvents)
	events := &countingRecorder{EventRecorder: recorder}
	reg := prometheus.NewRegistry()
	log, logs := sourceTestLogger()
	src := NewKubeSource(client, KubeSourceOptions{Namespace: ns, EventRecorder: events}, log, NewSourceMetrics(reg, "trellis_wg_gateway"))
	if src.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	u := &sourceUpdates{}
	runSource(t, src, u)

	bkA := Backend{Name: ns + "/a", PublicKey: k1, Endpoint: endpointOf(t, a, 51999)}
	bkB := Backend{Name: ns + "/b", PublicKey: k2, Endpoint: endpointOf(t, b, 51820)}
	u.waitFor(t, []Backend{bkA, bkB})
	if !src.HasSynced() {
		t.Error("HasSynced false after the first update")
	}
	metric := func(name string, labels ...string) float64 {
		return sourceMetric(t, reg, "trellis_wg_gateway_"+name, append([]string{"source", "kubernetes"}, labels...)...)
	}
	if got := metric("invalid_backends"); got != 3 {
		t.Errorf("invalid_backends = %v, want 3 (headless, badkey, dup)", got)
	}
	for reason, want := range map[string]float64{"no_address": 1, "invalid_key": 1, "duplicate_key": 1, "missing_key": 0, "invalid_port": 0} {
		if got := metric("backend_problems_total", "reason", reason); got != want {
			t.Errorf("backend_problems_total{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if got := metric("backend_source_updates_total"); got != 1 {
		t.Errorf("updates_total = %v, want 1", got)
	}
	for _, line := range []string{
		"service=" + ns + "/dup reason=duplicate_key detail=\"public key already used by " + ns + "/a",
		"service=" + ns + "/headless reason=no_address",
		"service=" + ns + "/badkey reason=invalid_key",
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, logs)
		}
	}

	// The Warning Event on the invalid Service reaches the API server.
	var event corev1.Event
	if !testkit.Until(testkit.Timeout, func() bool {
		list, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=badkey,reason=" + ReasonInvalidBackend})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		event = list.Items[0]
		return true
	}) {
		t.Fatal("no InvalidWireGuardBackend Event on Service badkey")
	}
	if event.Type != corev1.EventTypeWarning || event.InvolvedObject.Kind != "Service" ||
		!strings.Contains(event.Message, "invalid_key") || event.Source.Component != "trellis-wg-gateway-test" {
		t.Errorf("event = %s %s %q from %q", event.Type, event.InvolvedObject.Kind, event.Message, event.Source.Component)
	}

	// A burst of new Services is coalesced into a few updates, and the unchanged
	// problems are not reported again however often the list is recomputed.
	before, start := u.count(), time.Now()
	want := []Backend{bkA, bkB}
	var wg sync.WaitGroup
	burst := make([]*corev1.Service, 40)
	for i := range burst {
		wg.Go(func() {
			_, key := sourceTestKey(byte(100 + i))
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("burst-%02d", i), Namespace: ns,
					Labels: map[string]string{"trellis.dev/wg-gateway": "true"}, Annotations: map[string]string{PublicKeyAnnotation: key}},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "wireguard", Protocol: corev1.ProtocolUDP, Port: 51820}}},
			}
			created, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
			if err != nil {
				t.Errorf("create %s: %v", svc.Name, err)
				return
			}
			burst[i] = created
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for i, svc := range burst {
		k, _ := sourceTestKey(byte(100 + i))
		want = append(want, Backend{Name: ns + "/" + svc.Name, PublicKey: k, Endpoint: endpointOf(t, svc, 51820)})
	}
	sortBackends(want)
	u.waitFor(t, want)
	// At most one update per debounce window, however slowly the creates went.
	if n, limit := u.count()-before, int(time.Since(start)/kubeDebounce)+1; n > limit {
		t.Errorf("40 new Services gave %d updates in %v, want them coalesced (at most %d)", n, time.Since(start), limit)
	}
	if n := events.count("badkey"); n != 1 {
		t.Errorf("%d Events recorded for badkey, want 1 (only when the problem appears)", n)
	}
	if got := metric("backend_problems_total", "reason", "invalid_key"); got != 1 {
		t.Errorf("invalid_key counted %v times, want once", got)
	}

	// Fixing the annotation makes the backend appear.
	patchService(ctx, t, client, ns, "badkey", func(s *corev1.Service) { s.Annotations[PublicKeyAnnotation] = b5 })
	badkey, err := client.CoreV1().Services(ns).Get(ctx, "badkey", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, Backend{Name: ns + "/badkey", PublicKey: k5, Endpoint: endpointOf(t, badkey, 51820)})
	sortBackends(want)
	u.waitFor(t, want)

	// Deleting a removes it, and dup (same key) is no longer ambiguous.
	if err := client.CoreV1().Services(ns).Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(b Backend) bool { return b.Name == ns+"/a" })
	want = append(want, Backend{Name: ns + "/dup", PublicKey: k1, Endpoint: endpointOf(t, dup, 51820)})
	sortBackends(want)
	u.waitFor(t, want)

	// Removing the label removes the backend.
	patchService(ctx, t, client, ns, "b", func(s *corev1.Service) { delete(s.Labels, "trellis.dev/wg-gateway") })
	want = slices.DeleteFunc(want, func(b Backend) bool { return b.Name == ns+"/b" })
	u.waitFor(t, want)

	if got := metric("invalid_backends"); got != 1 {
		t.Errorf("invalid_backends = %v, want 1 (headless)", got)
	}
	if got := metric("backend_source_updates_total"); got != float64(u.count()) {
		t.Errorf("updates_total = %v, update called %d times", got, u.count())
	}
	for _, l := range u.snapshot() {
		for _, b := range l {
			if strings.Contains(b.Name, "unlabelled") || strings.Contains(b.Name, "switched-off") || strings.Contains(b.Name, "elsewhere") || strings.Contains(b.Name, "headless") {
				t.Errorf("unselected or invalid Service became a backend: %v", b)
			}
		}
	}
	u.checkNoRepeats(t)
}
