package mrsigner

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestLeaderElection runs two replicas: both serve the webhook and are ready, one
// runs the controller; when it stops, the other takes over and quarantines.
func TestLeaderElection(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	ns := env.Namespace(t)
	key := newEd25519(t)
	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret},
		Data: map[string][]byte{"key.pem": privPEM(t, key)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certs := writeServingCert(t, t.TempDir())
	args := []string{"--keys.namespace=" + ns, "--verifier.namespace=" + ns, "--leader-elect", "--leader-elect.namespace=" + ns,
		"--leader-elect.lease-duration=3s", "--leader-elect.renew-deadline=2s", "--leader-elect.retry-period=200ms",
		"--webhook.tls-cert-file=" + certs.CertFile, "--webhook.tls-key-file=" + certs.KeyFile}
	// Replica a runs in this process, b as the built binary: two daemons in one
	// process would share klog's global logger.
	a := startDaemon(t, env, args...)
	bin := testbin.Build(t, "mr-signer")
	b := exec.Command(bin, append([]string{"--kubeconfig=" + env.Kubeconfig, "--web.listen-address=127.0.0.1:0",
		"--webhook.listen-address=127.0.0.1:0", "--log.format=json"}, args...)...)
	bLogs := &syncBuffer{}
	b.Stderr = bLogs
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	bDone := false
	t.Cleanup(func() {
		if !bDone {
			testbin.Terminate(t, b)
		}
	})
	var bWeb string
	testkit.EventuallyWithin(t, 30*time.Second, "replica b", func() bool { bWeb = bLogs.logged("serving web endpoints"); return bWeb != "" })
	metrics := func(web string) string {
		resp, err := http.Get("http://" + web + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return string(body)
	}
	leads := func(web string) bool { return strings.Contains(metrics(web), "\ntrellis_mr_signer_leader 1\n") }
	testkit.EventuallyWithin(t, 30*time.Second, "a leader", func() bool { return leads(a.Web) || leads(bWeb) })
	if leads(a.Web) && leads(bWeb) {
		t.Fatal("two leaders")
	}
	// Stop the leader; it releases the Lease and the other takes over.
	if leads(a.Web) {
		a.Stop()
		testkit.EventuallyWithin(t, 30*time.Second, "b to take over", func() bool { return leads(bWeb) })
	} else {
		bDone = true
		testbin.Terminate(t, b)
		testkit.EventuallyWithin(t, 30*time.Second, "a to take over", func() bool { return leads(a.Web) })
	}

	if _, err := env.Client.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, "unsigned", "x"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mrs := env.Dynamic.Resource(ManagedResourceGVR).Namespace(ns)
	if _, err := mrs.Create(ctx, managedResource(ns, "mr", nil, "unsigned"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "the new leader to quarantine", func() bool {
		u, err := mrs.Get(ctx, "mr", metav1.GetOptions{})
		return err == nil && u.GetAnnotations()[IgnoreAnnotation] == "true"
	})
}
