package mrsigner

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/webhook"
)

// gardenerRM returns the real gardener-resource-manager built by
// scripts/gardener-rm.sh, named by TRELLIS_GARDENER_RM
// (TRELLIS_GARDENER_RM=$(scripts/gardener-rm.sh) go test -run TestResourceManagerPrevention);
// without it the test is skipped.
func gardenerRM(t *testing.T) string {
	t.Helper()
	p := os.Getenv("TRELLIS_GARDENER_RM")
	if p == "" {
		t.Skip("set TRELLIS_GARDENER_RM=$(scripts/gardener-rm.sh) to run the real gardener-resource-manager")
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("TRELLIS_GARDENER_RM: %v (run scripts/gardener-rm.sh)", err)
	}
	return p
}

// startResourceManager runs the real gardener-resource-manager against the test
// API server, reconciling the ManagedResources of namespace only, until the test
// ends.
func startResourceManager(t *testing.T, env *testenv.Env, bin, namespace string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := webhook.NewCA("grm-test", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, err := webhook.IssueServing(ca, []string{"localhost"}, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "tls.crt"), kp.CertPEM)
	writeFile(t, filepath.Join(dir, "tls.key"), kp.KeyPEM)
	health := freePort(t)
	config := fmt.Sprintf(`apiVersion: resourcemanager.config.gardener.cloud/v1alpha1
kind: ResourceManagerConfiguration
sourceClientConnection:
  kubeconfig: %[1]s
  namespaces: [%[2]s]
  qps: 100
  burst: 130
leaderElection:
  leaderElect: false
  resourceLock: leases
  resourceName: gardener-resource-manager
  resourceNamespace: %[2]s
logLevel: debug
logFormat: json
server:
  webhooks:
    bindAddress: 127.0.0.1
    port: %[3]s
    tls:
      serverCertDir: %[4]s
  healthProbes:
    bindAddress: 127.0.0.1
    port: %[5]s
  metrics:
    bindAddress: 127.0.0.1
    port: %[6]s
controllers:
  garbageCollector:
    enabled: false
  health:
    concurrentSyncs: 1
    syncPeriod: 1h
  csrApprover:
    enabled: false
  managedResource:
    concurrentSyncs: 5
    syncPeriod: 1h
    alwaysUpdate: false
    managedByLabelValue: gardener
  networkPolicy:
    enabled: false
  nodeCriticalComponents:
    enabled: false
  nodeAgentReconciliationDelay:
    enabled: false
  tokenRequestor:
    enabled: false
webhooks: {}
`, env.Kubeconfig, namespace, freePort(t), dir, health, freePort(t))
	cfg := filepath.Join(dir, "config.yaml")
	writeFile(t, cfg, []byte(config))
	logf, err := os.Create(filepath.Join(dir, "grm.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config="+cfg)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("gardener-resource-manager log (tail):\n%s", b)
		}
	})
	poll(t, 2*time.Minute, "gardener-resource-manager healthy", func() bool {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("gardener-resource-manager exited: %v\n%s", err, b)
		default:
		}
		resp, err := http.Get("http://127.0.0.1:" + health + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestResourceManagerPrevention runs the real gardener-resource-manager (v1.149.3,
// built from the module proxy) with mr-signer as deployed by the base (bootstrap,
// mutating and validating webhooks, verifier). Over 20 rounds an untrusted user
// tries every path to get an object created: updating a referenced Secret, removing
// its label or signature, creating a labelled Secret, deleting and re-creating the
// Secret, and pointing the ManagedResource (or a new one) at a Secret of its own.
// Meanwhile trusted writes keep being applied, so the manager is live; no object
// from an untrusted change ever exists. Then a key rotation quarantines the MR and a
// trusted rewrite lifts the quarantine and the manager applies again.
func TestResourceManagerPrevention(t *testing.T) {
	bin := gardenerRM(t)
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	keysNS, ns := env.Namespace(t), env.Namespace(t)
	grantWriters(t, env, ns)
	port := freePort(t)
	whName := "mr-signer-" + ns
	registerBaseWebhooks(t, env, whName, ns, "127.0.0.1:"+port, nil)
	startDaemon(t, env, "--webhook.listen-address=127.0.0.1:"+port, "--keys.namespace="+keysNS, "--verifier.namespace="+ns,
		"--trust.users="+trustedUser, "--webhook.tls-secret="+DefaultTLSSecret, "--bootstrap.keys", "--bootstrap.certificates",
		"--bootstrap.webhook-configurations="+whName, "--bootstrap.extra-names=127.0.0.1", "--bootstrap.check-period=1s",
		"--webhook.deny-untrusted", "--verifier.resync-period=1h")
	poll(t, 30*time.Second, "caBundle", func() bool {
		for _, b := range caBundles(t, env, whName) {
			if len(b) == 0 {
				return false
			}
		}
		return true
	})
	startResourceManager(t, env, bin, ns)

	trusted, mallory := clientFor(t, env, trustedUser), clientFor(t, env, untrustedUser)
	trustedDyn, err := dynamic.NewForConfig(env.ImpersonatedConfig(trustedUser))
	if err != nil {
		t.Fatal(err)
	}
	malloryDyn, err := dynamic.NewForConfig(env.ImpersonatedConfig(untrustedUser))
	if err != nil {
		t.Fatal(err)
	}
	cmYAML := func(names ...string) []byte {
		var b strings.Builder
		for _, n := range names {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\ndata:\n  a: b\n", n, ns)
		}
		return []byte(b.String())
	}
	const secretName = "managedresource-app"
	// trustedWrite sets the Secret's content as the trusted writer (retrying while
	// the webhook is not reachable yet or on conflicts).
	trustedWrite := func(names ...string) {
		t.Helper()
		poll(t, 30*time.Second, "trusted write", func() bool {
			s, err := trusted.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				s = mrSecret(ns, secretName, "")
				s.Data = map[string][]byte{"objects.yaml": cmYAML(names...)}
				_, err = trusted.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
			} else if err == nil {
				s.Data = map[string][]byte{"objects.yaml": cmYAML(names...)}
				_, err = trusted.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Logf("trusted write (retried): %v", err)
			}
			return err == nil
		})
	}
	applied := func(name string) {
		t.Helper()
		poll(t, 60*time.Second, "the resource manager to create ConfigMap "+name, func() bool {
			_, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			return err == nil
		})
	}
	noEvil := func(when string) {
		t.Helper()
		cms, err := env.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cms.Items {
			if strings.HasPrefix(c.Name, "evil") {
				t.Fatalf("%s: the resource manager created %s from an untrusted change", when, c.Name)
			}
		}
	}

	trustedWrite("good-0")
	mr := managedResource(ns, "app", nil, secretName)
	unstructured.RemoveNestedField(mr.Object, "spec", "class")
	if _, err := trustedDyn.Resource(ManagedResourceGVR).Namespace(ns).Create(ctx, mr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applied("good-0")

	denied := func(round int, what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "mr-signer") {
			t.Fatalf("round %d, %s by an untrusted user: %v, want denied by mr-signer", round, what, err)
		}
	}
	change := func(c kubernetes.Interface, fn func(*corev1.Secret)) error {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		fn(s)
		_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	}
	const rounds = 20
	for i := range rounds {
		evil := cmYAML(fmt.Sprintf("evil-%d", i))
		denied(i, "update", change(mallory, func(s *corev1.Secret) { s.Data["evil.yaml"] = evil }))
		denied(i, "label removal with new content", change(mallory, func(s *corev1.Secret) { s.Labels = nil; s.Data["evil.yaml"] = evil }))
		denied(i, "signature removal with new content", change(mallory, func(s *corev1.Secret) {
			s.Annotations = nil
			s.Data["objects.yaml"] = evil
		}))
		labelled := mrSecret(ns, fmt.Sprintf("managedresource-evil-%d", i), "")
		labelled.Data = map[string][]byte{"objects.yaml": evil}
		_, err := mallory.CoreV1().Secrets(ns).Create(ctx, labelled, metav1.CreateOptions{})
		denied(i, "create of a labelled Secret", err)
		denied(i, "delete of the referenced Secret", mallory.CoreV1().Secrets(ns).Delete(ctx, secretName, metav1.DeleteOptions{}))
		own := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("attacker-%d", i)}, Data: map[string][]byte{"objects.yaml": evil}}
		if _, err := mallory.CoreV1().Secrets(ns).Create(ctx, own, metav1.CreateOptions{}); err != nil {
			t.Fatalf("round %d: an unreferenced Secret of the attacker's: %v", i, err)
		}
		cur, err := malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_ = unstructured.SetNestedSlice(cur.Object, []any{map[string]any{"name": secretName}, map[string]any{"name": own.Name}}, "spec", "secretRefs")
		_, err = malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Update(ctx, cur, metav1.UpdateOptions{})
		denied(i, "secretRefs pointed at the attacker's Secret", err)
		other := managedResource(ns, fmt.Sprintf("evil-%d", i), nil, own.Name)
		unstructured.RemoveNestedField(other.Object, "spec", "class")
		_, err = malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Create(ctx, other, metav1.CreateOptions{})
		denied(i, "a ManagedResource for the attacker's Secret", err)
		noEvil(fmt.Sprintf("round %d", i))
		if i%5 == 4 {
			// The manager is live: a trusted change is applied meanwhile.
			trustedWrite("good-0", fmt.Sprintf("good-%d", i+1))
			applied(fmt.Sprintf("good-%d", i+1))
			noEvil(fmt.Sprintf("round %d, after a trusted change was applied", i))
		}
	}

	// A key rotation leaves the Secret signed by a key that no longer verifies: the
	// MR is quarantined; the trusted rewrite signs it with the new key, the
	// quarantine is lifted and the manager applies the new content.
	newKey := newEd25519(t)
	keys := env.Client.CoreV1()
	s, err := keys.Secrets(keysNS).Get(ctx, DefaultSigningKeySecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data = map[string][]byte{"key.pem": privPEM(t, newKey)}
	if _, err := keys.Secrets(keysNS).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm, err := keys.ConfigMaps(keysNS).Get(ctx, DefaultVerificationKeysCM, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data = map[string]string{"new.pem": pubPEM(t, newKey)}
	if _, err := keys.ConfigMaps(keysNS).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mrs := env.Dynamic.Resource(ManagedResourceGVR).Namespace(ns)
	poll(t, 60*time.Second, "quarantine (UnknownKey)", func() bool {
		m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
		return err == nil && m.GetAnnotations()["resources.gardener.cloud/ignore"] == "true" &&
			strings.HasPrefix(m.GetAnnotations()[QuarantineAnnotation], "UnknownKey")
	})
	trustedWrite("good-0", "good-after-quarantine")
	poll(t, 60*time.Second, "quarantine lifted", func() bool {
		m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
		_, ignored := m.GetAnnotations()["resources.gardener.cloud/ignore"]
		return err == nil && !ignored && m.GetAnnotations()[QuarantineAnnotation] == ""
	})
	applied("good-after-quarantine")
	noEvil("end")
}
