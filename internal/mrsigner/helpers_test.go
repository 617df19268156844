package mrsigner

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// Identities the integration tests write as (impersonated).
const (
	trustedUser   = "gardenlet-test"
	trustedGroup  = "trellis:test-trusted"
	untrustedUser = "mallory"
)

var crdOnce struct {
	sync.Once
	err error
}

// installMRCRD installs Gardener's real ManagedResource CRD, read from the gardener
// module in the module cache.
func installMRCRD(t testing.TB, env *testenv.Env) {
	t.Helper()
	crdOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		dir, err := testenv.ModuleDir(ctx, "github.com/gardener/gardener", "v1.149.3")
		if err != nil {
			crdOnce.err = err
			return
		}
		_, crdOnce.err = env.InstallCRDs(ctx, filepath.Join(dir, "example/seed-crds/10-crd-resources.gardener.cloud_managedresources.yaml"))
	})
	if crdOnce.err != nil {
		t.Fatalf("ManagedResource CRD: %v", crdOnce.err)
	}
}

func newEd25519(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func privPEM(t testing.TB, k ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := secretsig.MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pubPEM(t testing.TB, keys ...ed25519.PrivateKey) string {
	t.Helper()
	var out []byte
	for _, k := range keys {
		b, err := secretsig.MarshalPublicKeyPEM(k.Public().(ed25519.PublicKey))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
	}
	return string(out)
}

// tlsFiles is a CA and a serving certificate for 127.0.0.1 signed by it.
type tlsFiles struct {
	CA                []byte
	CertFile, KeyFile string
}

// writeServingCert writes a new CA and certificate into dir, valid for 24h or the given validity.
func writeServingCert(t testing.TB, dir string, validity ...time.Duration) tlsFiles {
	t.Helper()
	notAfter := time.Now().Add(24 * time.Hour).Truncate(time.Second)
	if len(validity) > 0 {
		notAfter = time.Now().Add(validity[0]).Truncate(time.Second)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mr-signer-test-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mr-signer"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	f := tlsFiles{CA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	if err := os.WriteFile(f.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// syncBuffer is testkit's log sink with a look-up of logged addresses.
type syncBuffer struct{ testkit.SyncBuffer }

// logged returns the "address" of the first log line with message msg.
func (s *syncBuffer) logged(msg string) string {
	sc := bufio.NewScanner(strings.NewReader(s.String()))
	for sc.Scan() {
		var l struct{ Msg, Address string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == msg {
			return l.Address
		}
	}
	return ""
}

// running is an mr-signer started in-process by startDaemon.
type running struct {
	Web, Webhook string
	Logs         *syncBuffer
	// Stop cancels the daemon and checks that it exits 0 (also done at cleanup).
	Stop func()
}

// startDaemon runs the mr-signer command in this process with args (plus a
// kubeconfig, loopback listeners and JSON logs) until the test ends, and waits
// until /readyz answers 200.
func startDaemon(t *testing.T, env *testenv.Env, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	cmd := NewCommand()
	cmd.SetArgs(append([]string{"--kubeconfig=" + env.Kubeconfig, "--web.listen-address=127.0.0.1:0", "--webhook.listen-address=127.0.0.1:0",
		"--log.format=json", "--log.level=debug"}, args...))
	cmd.SetOut(io.Discard)
	cmd.SetErr(logs)
	done := make(chan int, 1)
	go func() { done <- daemon.Execute(ctx, cmd) }()
	r := &running{Logs: logs}
	var once sync.Once
	r.Stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != 0 {
					t.Errorf("mr-signer exited %d; logs:\n%s", code, logs)
				}
			case <-time.After(30 * time.Second):
				t.Error("mr-signer did not stop")
			}
		})
	}
	t.Cleanup(r.Stop)
	testkit.EventuallyWithin(t, 30*time.Second, "mr-signer ready", func() bool {
		select {
		case code := <-done:
			t.Fatalf("mr-signer exited %d:\n%s", code, logs)
		default:
		}
		if r.Web == "" {
			r.Web = logs.logged("serving web endpoints")
		}
		if r.Webhook == "" {
			r.Webhook = logs.logged("serving admission webhooks")
		}
		if r.Web == "" || r.Webhook == "" {
			return false
		}
		resp, err := http.Get("http://" + r.Web + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return r
}

func (r *running) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + r.Web + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// registerWebhooks makes the API server call the daemon for Secrets in namespace
// only (namespaceSelector), deleted when the test ends. failurePolicy Fail: a
// broken webhook fails this test's writes and nothing else.
func registerWebhooks(t *testing.T, env *testenv.Env, name, namespace, addr string, ca []byte, mutating, validating bool) {
	t.Helper()
	ctx := context.Background()
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(10)
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
	}}
	conds := MatchConditions()
	url := func(path string) *string { u := "https://" + addr + path; return &u }
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionregistrationv1.MutatingWebhook{{
		Name: "sign.mr-signer.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url("/mutate"), CABundle: ca},
		Rules: rules, FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		NamespaceSelector: nsSel, MatchConditions: conds, ReinvocationPolicy: &ifNeeded,
	}}}
	if mutating {
		if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
		})
	}
	if !validating {
		return
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionregistrationv1.ValidatingWebhook{{
		Name: "deny-untrusted.mr-signer.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: url("/validate"), CABundle: ca},
		Rules: rules, FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		NamespaceSelector: nsSel, MatchConditions: conds,
	}}}
	if _, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// grantWriters lets the test identities read and write Secrets and
// ManagedResources in namespace.
func grantWriters(t *testing.T, env *testenv.Env, namespace string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "writers"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}},
		{APIGroups: []string{"resources.gardener.cloud"}, Resources: []string{"managedresources"}, Verbs: []string{"*"}},
	}}
	if _, err := env.Client.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "writers"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "writers"},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: trustedUser},
			{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: untrustedUser},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: trustedGroup},
		}}
	if _, err := env.Client.RbacV1().RoleBindings(namespace).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func clientFor(t testing.TB, env *testenv.Env, user string, groups ...string) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(env.ImpersonatedConfig(user, groups...))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mrSecret is a Secret as gardener writes it for a ManagedResource.
func mrSecret(namespace, name, payload string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"resources.gardener.cloud/garbage-collectable-reference": "true"}},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"configmap.yaml": []byte(payload)},
	}
}

func managedResource(namespace, name string, annotations map[string]string, secrets ...string) *unstructured.Unstructured {
	refs := make([]any, 0, len(secrets))
	for _, s := range secrets {
		refs = append(refs, map[string]any{"name": s})
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "resources.gardener.cloud/v1alpha1", "kind": "ManagedResource",
		"metadata": map[string]any{"namespace": namespace, "name": name},
		"spec":     map[string]any{"class": "seed", "secretRefs": refs},
	}}
	if annotations != nil {
		u.SetAnnotations(annotations)
	}
	return u
}

func newSignerPublic(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func randSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// certExpiry is the value of certificate_expiry_timestamp_seconds{certificate=which}
// in a scrape, as Unix seconds (0 when absent).
func certExpiry(scrape, which string) int64 {
	m := regexp.MustCompile(`(?m)^trellis_mr_signer_certificate_expiry_timestamp_seconds\{certificate="` + which + `"\} (\S+)$`).FindStringSubmatch(scrape)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return int64(v)
}
