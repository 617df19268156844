package otelscraper

import (
	"context"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func TestParseStaticTarget(t *testing.T) {
	tg, err := ParseStaticTarget("job=app,url=http://127.0.0.1:9000/m,interval=30s,timeout=40s", 15*time.Second, 10*time.Second)
	if err != nil || tg.Job != "app" || tg.Interval != 30*time.Second || tg.Timeout != 30*time.Second {
		t.Fatalf("%+v %v", tg, err)
	}
	for _, bad := range []string{"", "job=x", "url=http://a/", "job=x,url=ftp://a/", "job=x,url=http://a/,interval=-1s", "job=x,url=http://a/,color=red", "nonsense"} {
		if _, err := ParseStaticTarget(bad, time.Second, time.Second); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestPodTargets(t *testing.T) {
	c := DiscoveryConfig{NodeName: "n", Pods: true, PodsInterval: 15 * time.Second, Timeout: 10 * time.Second}
	pod := func(ann map[string]string, phase corev1.PodPhase, ip string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Annotations: ann},
			Spec:   corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 8080}}}}},
			Status: corev1.PodStatus{Phase: phase, PodIP: ip}}
	}
	cases := []struct {
		name string
		p    *corev1.Pod
		url  string
	}{
		{"defaults from the container port", pod(map[string]string{AnnotationScrape: "true"}, corev1.PodRunning, "10.1.0.5"), "http://10.1.0.5:8080/metrics"},
		{"annotations", pod(map[string]string{AnnotationScrape: "true", AnnotationPort: "9100", AnnotationPath: "stats", AnnotationScheme: "https"}, corev1.PodRunning, "fd00::5"), "https://[fd00::5]:9100/stats"},
		{"not annotated", pod(nil, corev1.PodRunning, "10.1.0.5"), ""},
		{"not running", pod(map[string]string{AnnotationScrape: "true"}, corev1.PodPending, "10.1.0.5"), ""},
		{"no IP", pod(map[string]string{AnnotationScrape: "true"}, corev1.PodRunning, ""), ""},
		{"bad port", pod(map[string]string{AnnotationScrape: "true", AnnotationPort: "http"}, corev1.PodRunning, "10.1.0.5"), ""},
	}
	for _, tc := range cases {
		tg, ok := c.podTarget(tc.p)
		if (tc.url == "") == ok || (ok && tg.URL != tc.url) {
			t.Errorf("%s: %v %q, want %q", tc.name, ok, tg.URL, tc.url)
		}
		if ok && (tg.Attributes["k8s.pod.name"] != "p" || tg.Attributes["k8s.namespace.name"] != "ns") {
			t.Errorf("%s: attributes %v", tc.name, tg.Attributes)
		}
	}
}

// TestKubernetesDiscovery runs the daemon against the real API server: its Node's
// address leads to a kubelet (HTTPS, CA and bearer token checked) and a
// node-exporter; a pod on the node annotated prometheus.io/scrape is scraped, a
// pod on another node is not; everything arrives at a real OTLP receiver.
func TestKubernetesDiscovery(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A kubelet: HTTPS, demands the token.
	kubelet := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/metrics":
			fmt.Fprint(w, "# TYPE kubelet_running_pods gauge\nkubelet_running_pods 7\n")
		case "/metrics/cadvisor":
			fmt.Fprint(w, "# TYPE container_memory_working_set_bytes gauge\ncontainer_memory_working_set_bytes{namespace=\"kube-system\",pod=\"a\"} 100\ncontainer_memory_working_set_bytes{namespace=\"shop\",pod=\"b\"} 200\n")
		case "/metrics/resource":
			fmt.Fprint(w, "# TYPE node_cpu_usage_seconds_total counter\nnode_cpu_usage_seconds_total 12\n")
		default:
			http.NotFound(w, r)
		}
	}))
	defer kubelet.Close()
	ca := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: kubelet.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	_, kport, _ := net.SplitHostPort(kubelet.Listener.Addr().String())
	exporter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE node_load1 gauge\nnode_load1 0.5\n# TYPE node_something_else gauge\nnode_something_else 1\n")
	}))
	defer exporter.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "# TYPE app_jobs gauge\napp_jobs 3\n")
	}))
	defer app.Close()
	_, appPort, _ := net.SplitHostPort(app.Listener.Addr().String())

	ns := env.Namespace(t)
	node := "scraper-" + ns
	if _, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, _ := env.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mkPod := func(name, nodeName string) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{AnnotationScrape: "true", AnnotationPort: appPort}},
			Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "app"}}},
		}
		p, err := env.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status.Phase, p.Status.PodIP = corev1.PodRunning, "127.0.0.1"
		if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkPod("mine", node)
	mkPod("elsewhere", "other-"+node)

	recv := otlptest.NewHTTP(t)
	runDaemon(t, "--kubeconfig="+env.Kubeconfig, "--node.name="+node, "--node.address=",
		"--kubelet.port="+kport, "--kubelet.ca-file="+ca, "--kubelet.token-file="+token,
		"--node-exporter.url="+exporter.URL+"/metrics", "--scrape.interval=1s",
		"--rules.configmap="+ns+"/rules", "--otlp.protocol=http/protobuf", "--otlp.endpoint="+recv.URL(), "--otlp.insecure",
		"--queue.dir="+filepath.Join(dir, "queue"), "--web.listen-address=127.0.0.1:0", "--log.level=warn")

	want := map[string]bool{"kubelet_running_pods": false, "container_memory_working_set_bytes": false, "node_cpu_usage_seconds_total": false, "node_load1": false, "app_jobs": false}
	err := testkit.Poll(45*time.Second, func() error {
		done := true
		for _, p := range recv.DataPoints() {
			if _, ok := want[p.Metric]; ok {
				want[p.Metric] = true
			}
			switch {
			case p.Metric == "container_memory_working_set_bytes" && p.Attributes["namespace"] != "kube-system":
				t.Fatalf("default cadvisor rules let %v through", p.Attributes)
			case p.Metric == "node_something_else":
				t.Fatal("default node-exporter rules let node_something_else through")
			case p.Metric == "app_jobs" && (p.Resource["k8s.pod.name"] != "mine" || p.Resource["service.name"] != "pods"):
				t.Fatalf("pod target resource %v", p.Resource)
			}
		}
		for _, ok := range want {
			done = done && ok
		}
		if !done {
			return fmt.Errorf("metrics seen: %v", want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The other node's pod was never a target (both pods serve the same port, so
	// the resource's pod name tells).
	for _, p := range recv.DataPoints() {
		if p.Resource["k8s.pod.name"] == "elsewhere" {
			t.Fatal("a pod of another node was scraped")
		}
	}
}
