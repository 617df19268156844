package mrsigner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestBinary builds cmd/mr-signer and runs it against the real API server as its
// deployed service account, with the RBAC of deploy/mr-signer/base and leader
// election on: the key Secret and ConfigMap are read through name-restricted
// watches, the API server calls its webhook over TLS and gets trusted writes
// signed, a tampered ManagedResource is quarantined, /metrics answers, SIGTERM
// exits 0. The CLI's exit codes are checked on the binary too.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	bin := testbin.Build(t, "mr-signer")

	// Bad flags: exit 2 with every problem named.
	testbin.UsageError(t, bin, []string{"--trust.service-accounts=nocolon", "--verifier.resync-period=0s"}, "--trust.service-accounts", "--verifier.resync-period")
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "mr-signer ") {
		t.Fatalf("version: %v %s", err, out)
	}

	// The deployed RBAC, for real.
	if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: deployNamespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, obj := range testenv.ReadManifests(t, "../../deploy/mr-signer/base") {
		var err error
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			_, err = env.Client.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = env.Client.RbacV1().Roles(deployNamespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = env.Client.RbacV1().RoleBindings(deployNamespace).Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	key := newEd25519(t)
	keySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret}, Data: map[string][]byte{"key.pem": privPEM(t, key)}}
	if _, err := env.Client.CoreV1().Secrets(deployNamespace).Create(ctx, keySecret, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = env.Client.CoreV1().Secrets(deployNamespace).Update(ctx, keySecret, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	} else if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := testenv.WriteKubeconfig(env.ImpersonatedConfig("system:serviceaccount:"+deployNamespace+":mr-signer",
		"system:serviceaccounts", "system:serviceaccounts:"+deployNamespace), kubeconfig); err != nil {
		t.Fatal(err)
	}

	ns := env.Namespace(t)
	grantWriters(t, env, ns)
	certs := writeServingCert(t, t.TempDir())
	cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--web.listen-address=127.0.0.1:0", "--webhook.listen-address=127.0.0.1:0",
		"--webhook.tls-cert-file="+certs.CertFile, "--webhook.tls-key-file="+certs.KeyFile, "--keys.namespace="+deployNamespace,
		"--leader-elect", "--leader-elect.namespace="+deployNamespace, "--verifier.namespace="+ns, "--trust.users="+trustedUser, "--log.format=json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var web, hook string
	logs := bufio.NewScanner(stderr)
	killer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	for (web == "" || hook == "") && logs.Scan() {
		var l struct{ Msg, Address string }
		if json.Unmarshal(logs.Bytes(), &l) == nil {
			switch l.Msg {
			case "serving web endpoints":
				web = l.Address
			case "serving admission webhooks":
				hook = l.Address
			}
		}
	}
	killer.Stop()
	go io.Copy(io.Discard, stderr)
	if web == "" || hook == "" {
		t.Fatal("addresses not logged")
	}
	get := func(path string) (int, string) { return testkit.Get("http://" + web + path) }
	testkit.EventuallyWithin(t, 30*time.Second, "readiness", func() bool { code, _ := get("/readyz"); return code == 200 })
	testkit.EventuallyWithin(t, 30*time.Second, "leadership", func() bool { _, m := get("/metrics"); return strings.Contains(m, "\ntrellis_mr_signer_leader 1\n") })
	registerWebhooks(t, env, "mr-signer-binary-"+ns, ns, hook, certs.CA, true, false)

	keys := secretsig.NewKeySet(newSignerPublic(key))
	trusted, mallory := clientFor(t, env, trustedUser), clientFor(t, env, untrustedUser)
	testkit.EventuallyWithin(t, 30*time.Second, "a trusted write to be signed", func() bool {
		s, err := trusted.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, "signed-"+randSuffix(), "x"), metav1.CreateOptions{})
		if err != nil {
			return false
		}
		_, err = keys.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s))
		return err == nil
	})
	if _, err := mallory.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, "unsigned", "x"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	mrs := env.Dynamic.Resource(ManagedResourceGVR).Namespace(ns)
	if _, err := mrs.Create(ctx, managedResource(ns, "tampered", nil, "unsigned"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "quarantine", func() bool {
		u, err := mrs.Get(ctx, "tampered", metav1.GetOptions{})
		return err == nil && u.GetAnnotations()[IgnoreAnnotation] == "true" && strings.HasPrefix(u.GetAnnotations()[QuarantineAnnotation], "SignatureMissing")
	})
	// The quarantined gauge counts the informer's cache, which may see the
	// annotation a moment after the Get above.
	wants := []string{"trellis_mr_signer_build_info{", `trellis_mr_signer_quarantines_total{reason="signature_missing"} 1`,
		`trellis_mr_signer_admission_requests_total{action="signed",webhook="mutate"}`, `trellis_mr_signer_keys{kind="signing"} 1`, "trellis_mr_signer_quarantined_managed_resources 1"}
	var m string
	testkit.EventuallyWithin(t, 30*time.Second, "/metrics to show "+strings.Join(wants, ", "), func() bool {
		_, m = get("/metrics")
		return !slices.ContainsFunc(wants, func(w string) bool { return !strings.Contains(m, w) })
	})
	testbin.Terminate(t, cmd)

	// The CLI on the binary: exit codes 0, 1, 2.
	dir := t.TempDir()
	keyFile, pubFile := filepath.Join(dir, "key.pem"), filepath.Join(dir, "pub.pem")
	writeFile(t, keyFile, privPEM(t, key))
	writeFile(t, pubFile, []byte(pubPEM(t, key)))
	sign := exec.Command(bin, "sign", "--key="+keyFile)
	sign.Stdin = strings.NewReader(cliInput)
	signed, err := sign.Output()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	for _, tc := range []struct {
		stdin string
		args  []string
		code  int
	}{
		{string(signed), []string{"verify", "--keys=" + pubFile, "--allow-other"}, 0},
		{string(signed), []string{"verify", "--keys=" + pubFile}, 1}, // a ConfigMap, without --allow-other
		{strings.Replace(string(signed), "kind: Namespace", "kind: Pod", 1), []string{"verify", "--keys=" + pubFile, "--allow-other"}, 1},
		{string(signed), []string{"verify"}, 2},
	} {
		c := exec.Command(bin, tc.args...)
		c.Stdin = strings.NewReader(tc.stdin)
		err := c.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.code)
		}
	}
}
