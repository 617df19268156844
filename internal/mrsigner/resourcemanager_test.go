package mrsigner

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
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
# The same API server is the target (the manager defaults an empty target
# connection, which needs TARGET_KUBECONFIG or this).
targetClientConnection:
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
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "TARGET_KUBECONFIG="+env.Kubeconfig)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the test binary. (Pdeathsig follows the starting OS thread; this
	// package never locks threads, so Go does not end it under the process.)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when the process has exited; waitErr is then set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
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
	testkit.EventuallyWithin(t, 2*time.Minute, "gardener-resource-manager healthy", func() bool {
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("gardener-resource-manager exited: %v\n%s", waitErr, b)
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
// built from the module proxy by scripts/gardener-rm.sh) with mr-signer as the base
// deploys it (bootstrap, mutating and validating webhooks with the base's
// matchConditions and failurePolicy, verifier). Over 20 rounds an untrusted user
// tries every path to get an object created: updating a referenced Secret, removing
// its label or signature (alone or with new content), creating a labelled Secret,
// creating an unlabelled Secret under a name a ManagedResource references (dangling,
// and right after a trusted delete: delete and recreate), deleting the referenced
// Secret, and pointing the ManagedResource (or a new one) at a Secret of its own.
// Meanwhile trusted writes keep being applied, so the manager is live. An informer
// on the namespace's ConfigMaps records every object the manager ever creates: none
// comes from an untrusted change. Then a key rotation quarantines the MR, and a
// trusted rewrite lifts the quarantine and the manager applies again. Last, a
// control without the validating webhook counts what the verifier alone lets the
// manager create (logged: it is a race).
func TestResourceManagerPrevention(t *testing.T) {
	bin := gardenerRM(t)
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	began := time.Now()
	keysNS, ns := env.Namespace(t), env.Namespace(t)
	grantWriters(t, env, ns)
	port := freePort(t)
	whName := "mr-signer-" + ns
	registerBaseWebhooks(t, env, whName, ns, "127.0.0.1:"+port, nil)
	startDaemon(t, env, "--webhook.listen-address=127.0.0.1:"+port, "--keys.namespace="+keysNS, "--verifier.namespace="+ns,
		"--trust.users="+trustedUser, "--webhook.tls-secret="+DefaultTLSSecret, "--bootstrap.keys", "--bootstrap.certificates",
		"--bootstrap.webhook-configurations="+whName, "--bootstrap.extra-names=127.0.0.1", "--bootstrap.check-period=1s",
		"--webhook.deny-untrusted", "--verifier.resync-period=1h")
	testkit.EventuallyWithin(t, 30*time.Second, "caBundle", func() bool {
		for _, b := range caBundles(t, env, whName) {
			if len(b) == 0 {
				return false
			}
		}
		return true
	})

	// Every ConfigMap the resource manager ever creates in the namespace, from
	// before its start to the end of the test.
	var createdMu sync.Mutex
	var created []string
	factory := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(ns))
	cmInformer := factory.Core().V1().ConfigMaps().Informer()
	record := func(obj any) {
		if c, ok := obj.(*corev1.ConfigMap); ok {
			createdMu.Lock()
			created = append(created, c.Name)
			createdMu.Unlock()
		}
	}
	if _, err := cmInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: record, UpdateFunc: func(_, obj any) { record(obj) }}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, cmInformer.HasSynced) {
		t.Fatal("ConfigMap informer not synced")
	}

	startResourceManager(t, env, bin, ns)
	rmStarted := time.Now()

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
	const (
		secretName   = "managedresource-app"      // MR app's Secret, kept
		recreated    = "managedresource-recreate" // MR recreate's Secret, deleted and re-created by the trusted writer every round
		danglingName = "managedresource-dangling" // MR dangling's Secret, never created by anyone trusted
	)
	// trustedWrite sets a Secret's content as the trusted writer (retrying while the
	// webhook is not reachable yet or on conflicts).
	trustedWrite := func(name string, names ...string) {
		t.Helper()
		testkit.EventuallyWithin(t, 30*time.Second, "trusted write of "+name, func() bool {
			s, err := trusted.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				s = mrSecret(ns, name, "")
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
		testkit.EventuallyWithin(t, 60*time.Second, "the resource manager to create ConfigMap "+name, func() bool {
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
		names := []string{}
		for _, c := range cms.Items {
			names = append(names, c.Name)
		}
		createdMu.Lock()
		names = append(names, created...)
		createdMu.Unlock()
		for _, n := range names {
			if strings.HasPrefix(n, "evil") {
				t.Fatalf("%s: the resource manager created ConfigMap %s from an untrusted change", when, n)
			}
		}
	}
	createMR := func(name, secret string) {
		t.Helper()
		mr := managedResource(ns, name, nil, secret)
		unstructured.RemoveNestedField(mr.Object, "spec", "class")
		if _, err := trustedDyn.Resource(ManagedResourceGVR).Namespace(ns).Create(ctx, mr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	trustedWrite(secretName, "good-0")
	trustedWrite(recreated, "good-recreate")
	createMR("app", secretName)
	createMR("recreate", recreated)
	createMR("dangling", danglingName)
	applied("good-0")
	applied("good-recreate")
	// mr-signer's ManagedResource cache (shared by the verifier and the webhook)
	// knows the dangling reference once the verifier quarantined it.
	mrs := env.Dynamic.Resource(ManagedResourceGVR).Namespace(ns)
	testkit.EventuallyWithin(t, 60*time.Second, "quarantine of the dangling ManagedResource (SecretNotFound)", func() bool {
		m, err := mrs.Get(ctx, "dangling", metav1.GetOptions{})
		return err == nil && strings.HasPrefix(m.GetAnnotations()[QuarantineAnnotation], "SecretNotFound")
	})

	attempts := map[string]int{}
	denied := func(round int, what string, err error) {
		t.Helper()
		attempts[what]++
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "mr-signer") {
			t.Fatalf("round %d, %s by an untrusted user: %v, want denied by mr-signer", round, what, err)
		}
	}
	change := func(c kubernetes.Interface, name string, fn func(*corev1.Secret)) error {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		fn(s)
		_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
		return err
	}
	unlabelled := func(name string, content []byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"objects.yaml": content}}
	}
	const rounds = 20
	roundsStart := time.Now()
	for i := range rounds {
		evil := cmYAML(fmt.Sprintf("evil-%d", i))
		// update
		denied(i, "update", change(mallory, secretName, func(s *corev1.Secret) { s.Data["evil.yaml"] = evil }))
		// label or annotation removal, alone (to change it later) and with new content
		denied(i, "label removal", change(mallory, secretName, func(s *corev1.Secret) { s.Labels = nil }))
		denied(i, "signature removal", change(mallory, secretName, func(s *corev1.Secret) { delete(s.Annotations, secretsig.Annotation) }))
		denied(i, "label removal with new content", change(mallory, secretName, func(s *corev1.Secret) { s.Labels = nil; s.Data["evil.yaml"] = evil }))
		denied(i, "signature removal with new content", change(mallory, secretName, func(s *corev1.Secret) {
			s.Annotations = nil
			s.Data["objects.yaml"] = evil
		}))
		// create: a labelled Secret, an unlabelled one under a referenced name
		labelled := mrSecret(ns, fmt.Sprintf("managedresource-evil-%d", i), "")
		labelled.Data = map[string][]byte{"objects.yaml": evil}
		_, err := mallory.CoreV1().Secrets(ns).Create(ctx, labelled, metav1.CreateOptions{})
		denied(i, "create of a labelled Secret", err)
		_, err = mallory.CoreV1().Secrets(ns).Create(ctx, unlabelled(danglingName, evil), metav1.CreateOptions{})
		denied(i, "create of an unlabelled Secret under a dangling reference", err)
		// delete and recreate: the attacker's delete is denied; after the trusted
		// writer's delete, the attacker's re-create (unlabelled or labelled) is too.
		denied(i, "delete of the referenced Secret", mallory.CoreV1().Secrets(ns).Delete(ctx, secretName, metav1.DeleteOptions{}))
		if err := trusted.CoreV1().Secrets(ns).Delete(ctx, recreated, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("round %d: trusted delete: %v", i, err)
		}
		_, err = mallory.CoreV1().Secrets(ns).Create(ctx, unlabelled(recreated, evil), metav1.CreateOptions{})
		denied(i, "unlabelled re-create after a delete", err)
		again := mrSecret(ns, recreated, "")
		again.Data = map[string][]byte{"objects.yaml": evil}
		_, err = mallory.CoreV1().Secrets(ns).Create(ctx, again, metav1.CreateOptions{})
		denied(i, "labelled re-create after a delete", err)
		trustedWrite(recreated, "good-recreate")
		// secretRefs: an MR pointed at the attacker's own Secret, or a new MR for it
		own := unlabelled(fmt.Sprintf("attacker-%d", i), evil)
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
			trustedWrite(secretName, "good-0", fmt.Sprintf("good-%d", i+1))
			applied(fmt.Sprintf("good-%d", i+1))
			noEvil(fmt.Sprintf("round %d, after a trusted change was applied", i))
		}
	}
	roundsTook := time.Since(roundsStart)

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
	testkit.EventuallyWithin(t, 60*time.Second, "quarantine (UnknownKey)", func() bool {
		m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
		return err == nil && m.GetAnnotations()["resources.gardener.cloud/ignore"] == "true" &&
			strings.HasPrefix(m.GetAnnotations()[QuarantineAnnotation], "UnknownKey")
	})
	trustedWrite(secretName, "good-0", "good-after-quarantine")
	testkit.EventuallyWithin(t, 60*time.Second, "quarantine lifted", func() bool {
		m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false
		}
		_, ignored := m.GetAnnotations()["resources.gardener.cloud/ignore"]
		return !ignored && m.GetAnnotations()[QuarantineAnnotation] == ""
	})
	applied("good-after-quarantine")
	noEvil("end")

	// Control: the same harness sees what the verifier alone lets through. With the
	// validating webhook deleted (an attacker who can edit webhook configurations,
	// out of the threat model's reach), an untrusted update is stored (its signature
	// stripped by /mutate), the verifier quarantines the MR, a trusted rewrite lifts
	// it. Objects from those updates that the manager created before the quarantine
	// reached it are counted, not asserted: that is the race prevention removes.
	if err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, whName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "untrusted updates admitted without the validating webhook", func() bool {
		return change(mallory, secretName, func(s *corev1.Secret) { s.Data["probe.yaml"] = []byte("# probe") }) == nil
	})
	trustedWrite(secretName, "good-0", "good-control-start") // lifts the probe's quarantine
	applied("good-control-start")
	const controlRounds = 10
	for i := range controlRounds {
		if err := change(mallory, secretName, func(s *corev1.Secret) { s.Data["evil.yaml"] = cmYAML(fmt.Sprintf("bypass-%d", i)) }); err != nil {
			t.Fatalf("control round %d: untrusted update without the validating webhook: %v", i, err)
		}
		testkit.EventuallyWithin(t, 60*time.Second, "quarantine after an unprevented untrusted update", func() bool {
			m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
			return err == nil && strings.HasPrefix(m.GetAnnotations()[QuarantineAnnotation], "SignatureMissing")
		})
		name := fmt.Sprintf("good-control-%d", i)
		trustedWrite(secretName, "good-0", name)
		applied(name) // lifted and reconciled again
	}
	// The cleanup after a quarantine (docs/mr-signer.md): objects whose origin
	// annotation names the MR but which its status.resources does not list are
	// exactly the leftovers from tampered content.
	var leftovers []string
	testkit.EventuallyWithin(t, 60*time.Second, "objects with the MR's origin but not in its status.resources = the leftover bypass objects", func() bool {
		m, err := mrs.Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			return false
		}
		listed := map[string]bool{}
		refs, _, _ := unstructured.NestedSlice(m.Object, "status", "resources")
		for _, r := range refs {
			if r, ok := r.(map[string]any); ok && r["kind"] == "ConfigMap" {
				listed[fmt.Sprint(r["name"])] = true
			}
		}
		cms, err := env.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		var byOrigin, bypass []string
		for _, c := range cms.Items {
			if c.Annotations["resources.gardener.cloud/origin"] == ns+"/app" && !listed[c.Name] {
				byOrigin = append(byOrigin, c.Name)
			}
			if strings.HasPrefix(c.Name, "bypass-") {
				bypass = append(bypass, c.Name)
			}
		}
		leftovers = bypass
		return slices.Equal(byOrigin, bypass)
	})
	bypassed := map[string]bool{}
	createdMu.Lock()
	for _, n := range created {
		if strings.HasPrefix(n, "bypass-") {
			bypassed[n] = true
		}
	}
	createdMu.Unlock()

	total := 0
	for _, n := range attempts {
		total += n
	}
	t.Logf("%d rounds, %d untrusted attempts over %d paths (%v), 0 objects created from them; rounds took %v", rounds, total, len(attempts), attempts, roundsTook.Round(time.Millisecond))
	t.Logf("control without the validating webhook (verifier only): %d of %d untrusted updates got an object created, %d left over (found by origin minus status.resources)",
		len(bypassed), controlRounds, len(leftovers))
	t.Logf("resource manager up %v, test %v", time.Since(rmStarted).Round(time.Second), time.Since(began).Round(time.Second))
}
