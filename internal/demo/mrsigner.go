package demo

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/mrsigner"
	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
)

// Gardener's module, whose example/seed-crds hold the real ManagedResource CRD.
const (
	gardenerModule  = "github.com/gardener/gardener"
	gardenerVersion = "v1.149.3"
	mrCRDFile       = "example/seed-crds/10-crd-resources.gardener.cloud_managedresources.yaml"
)

// mrScenario: the real ManagedResource CRD, mr-signer's mutating webhook
// registered with the API server over TLS (a CA and serving certificate made
// here), a trusted identity ("gardenlet") writing an MR Secret that the webhook
// signs, then an untrusted one ("mallory") slipping a cluster-admin binding into
// it: the webhook strips the signature and the verifier quarantines the MR.
// With a pace, gardenlet then rewrites the Secret and the quarantine is lifted.
type mrScenario struct {
	d       *Demo
	p       *proc
	ns      string
	keyID   string
	keys    *secretsig.KeySet
	started atomic.Bool
	proven  atomic.Bool

	mu    sync.Mutex
	story []string
}

const (
	mrTrusted   = "gardenlet"
	mrUntrusted = "mallory"
	mrSecret    = "managedresource-shoot-core-system"
	mrName      = "shoot-core-system"
	mrKeysNS    = "trellis-mr-signer"
)

func (s *mrScenario) name() string { return "mr-signer" }

func (s *mrScenario) say(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.story = append(s.story, time.Now().Format("15:04:05")+" "+fmt.Sprintf(format, args...))
}

func (s *mrScenario) start(ctx context.Context, d *Demo) error {
	s.d = d
	s.ns = "shoot--garden--alpha"
	c := d.env.Client
	modDir, err := testenv.ModuleDir(ctx, gardenerModule, gardenerVersion)
	if err != nil {
		return fmt.Errorf("ManagedResource CRD: %w", err)
	}
	if _, err := d.env.InstallCRDs(ctx, filepath.Join(modDir, mrCRDFile)); err != nil {
		return err
	}
	for _, ns := range []string{s.ns, mrKeysNS} {
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	// Both identities may write Secrets and MRs in the shoot namespace (so RBAC
	// is not what stops mallory).
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "mr-writers"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}},
		{APIGroups: []string{"resources.gardener.cloud"}, Resources: []string{"managedresources"}, Verbs: []string{"*"}},
	}}
	if _, err := c.RbacV1().Roles(s.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return err
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "mr-writers"}, RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "mr-writers"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: mrTrusted}, {Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: mrUntrusted}}}
	if _, err := c.RbacV1().RoleBindings(s.ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		return err
	}

	// Keys: the signing key Secret and the verification ConfigMap, as an
	// operator creates them (docs/mr-signer.md).
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	priv, err := secretsig.MarshalPrivateKeyPEM(key)
	if err != nil {
		return err
	}
	pubKey := key.Public().(ed25519.PublicKey)
	pub, err := secretsig.MarshalPublicKeyPEM(pubKey)
	if err != nil {
		return err
	}
	s.keyID = secretsig.KeyID(pubKey)
	s.keys = secretsig.NewKeySet(pubKey)
	if _, err := c.CoreV1().Secrets(mrKeysNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mr-signer-signing-key"},
		Data: map[string][]byte{"key.pem": priv}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := c.CoreV1().ConfigMaps(mrKeysNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mr-signer-verification-keys"},
		Data: map[string]string{"current.pem": string(pub)}}, metav1.CreateOptions{}); err != nil {
		return err
	}

	ca, certFile, keyFile, err := servingCert(filepath.Join(d.dir, "mr-signer-tls"))
	if err != nil {
		return err
	}
	p, err := d.launch(ctx, "mr-signer", d.bin("mr-signer"), []string{
		"--kubeconfig=" + d.env.Kubeconfig,
		"--web.listen-address=127.0.0.1:0", "--webhook.listen-address=127.0.0.1:0",
		"--webhook.tls-cert-file=" + certFile, "--webhook.tls-key-file=" + keyFile,
		"--keys.namespace=" + mrKeysNS, "--verifier.namespace=" + s.ns,
		"--trust.users=" + mrTrusted,
	}, nil, "serving web endpoints", "serving admission webhooks")
	if err != nil {
		return err
	}
	s.p = p
	if err := pollUntil(ctx, 60*time.Second, func() bool { return ready(ctx, p.addr("serving web endpoints")) }); err != nil {
		return fmt.Errorf("mr-signer not ready: %w; log tail:\n%s", err, tail(p.logPath, 10))
	}
	if err := s.registerWebhook(ctx, p.addr("serving admission webhooks"), ca); err != nil {
		return err
	}
	s.say("webhook registered (https://%s/mutate, caBundle of the demo's CA); signing key %s", p.addr("serving admission webhooks"), s.keyID)
	s.started.Store(true)
	go func() {
		if err := s.act(ctx); err != nil && ctx.Err() == nil {
			s.say("error: %v", err)
		}
	}()
	return nil
}

// act plays the story: sign, verify, tamper, quarantine (and, with a pace,
// repair and lift).
func (s *mrScenario) act(ctx context.Context) error {
	trusted, err := kubernetes.NewForConfig(s.d.env.ImpersonatedConfig(mrTrusted))
	if err != nil {
		return err
	}
	malloryCfg := s.d.env.ImpersonatedConfig(mrUntrusted)
	// The webhook tells the writer why the signature went; show it in the story.
	malloryCfg.WarningHandler = warningFunc(func(text string) { s.say("API server warned %s: %q", mrUntrusted, text) })
	mallory, err := kubernetes.NewForConfig(malloryCfg)
	if err != nil {
		return err
	}
	secrets := trusted.CoreV1().Secrets(s.ns)
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: mrSecret, Namespace: s.ns, Labels: map[string]string{"resources.gardener.cloud/garbage-collectable-reference": "true"}},
		Type:       corev1.SecretTypeOpaque,
		Data: map[string][]byte{"configmap__kube-system__shoot-info.yaml": []byte(
			"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shoot-info\n  namespace: kube-system\ndata:\n  shootName: alpha\n")},
	}
	// The API server starts calling a new webhook within a moment; until it
	// does, a write is stored unsigned, so write again until it is signed.
	var signed *corev1.Secret
	if err := pollUntil(ctx, 60*time.Second, func() bool {
		cur, err := secrets.Get(ctx, mrSecret, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			cur, err = secrets.Create(ctx, want, metav1.CreateOptions{})
		case err == nil:
			cur.Data = want.Data
			cur, err = secrets.Update(ctx, cur, metav1.UpdateOptions{})
		}
		if err != nil {
			return false
		}
		if _, verr := s.keys.Verify(secretsig.FromSecret(cur), secretsig.AnnotationOf(cur)); verr == nil {
			signed = cur
			return true
		}
		return false
	}); err != nil {
		return fmt.Errorf("the trusted write was never signed: %w", err)
	}
	s.say("%s wrote Secret %s: signed by the webhook (%s)", mrTrusted, mrSecret, short(secretsig.AnnotationOf(signed), 40))

	mrs := s.d.env.Dynamic.Resource(mrsigner.ManagedResourceGVR).Namespace(s.ns)
	mr := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "resources.gardener.cloud/v1alpha1", "kind": "ManagedResource",
		"metadata": map[string]any{"namespace": s.ns, "name": mrName},
		"spec":     map[string]any{"class": "shoot", "secretRefs": []any{map[string]any{"name": mrSecret}}},
	}}
	if _, err := mrs.Create(ctx, mr, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := pollUntil(ctx, 60*time.Second, func() bool {
		return scrape(ctx, s.p.addr("serving web endpoints")).sum("trellis_mr_signer_verifications_total", "result", "valid") >= 1
	}); err != nil {
		return fmt.Errorf("the ManagedResource was never verified: %w", err)
	}
	s.say("ManagedResource %s created; verifier: Valid, not quarantined", mrName)
	if err := sleep(ctx, s.d.cfg.Pace); err != nil {
		return err
	}

	// mallory changes the content: the RBAC allows it, the signature does not.
	if err := pollUntil(ctx, 30*time.Second, func() bool {
		cur, err := mallory.CoreV1().Secrets(s.ns).Get(ctx, mrSecret, metav1.GetOptions{})
		if err != nil {
			return false
		}
		cur.Data["clusterrolebinding__evil.yaml"] = []byte("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: evil\n" +
			"roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: cluster-admin\nsubjects:\n- kind: User\n  name: mallory\n")
		upd, err := mallory.CoreV1().Secrets(s.ns).Update(ctx, cur, metav1.UpdateOptions{})
		if err != nil {
			return false
		}
		s.say("%s added a cluster-admin ClusterRoleBinding to the Secret; signature after the webhook: %q", mrUntrusted, secretsig.AnnotationOf(upd))
		return true
	}); err != nil {
		return fmt.Errorf("tampering: %w", err)
	}
	if err := pollUntil(ctx, 60*time.Second, func() bool {
		u, err := mrs.Get(ctx, mrName, metav1.GetOptions{})
		return err == nil && u.GetAnnotations()[mrsigner.IgnoreAnnotation] == "true" && u.GetAnnotations()[mrsigner.QuarantineAnnotation] != ""
	}); err != nil {
		return fmt.Errorf("no quarantine: %w", err)
	}
	s.proven.Store(true)
	u, _ := mrs.Get(ctx, mrName, metav1.GetOptions{})
	if u != nil {
		s.say("ManagedResource quarantined: %s=true, %s=%q", mrsigner.IgnoreAnnotation, mrsigner.QuarantineAnnotation, u.GetAnnotations()[mrsigner.QuarantineAnnotation])
	}
	if s.d.cfg.Pace <= 0 {
		return nil
	}
	if err := sleep(ctx, 2*s.d.cfg.Pace); err != nil {
		return err
	}
	// gardenlet reconciles: it writes the content it wants, signed again.
	cur, err := secrets.Get(ctx, mrSecret, metav1.GetOptions{})
	if err != nil {
		return err
	}
	cur.Data = want.Data
	if _, err := secrets.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return err
	}
	s.say("%s rewrote the Secret (signed again)", mrTrusted)
	if err := pollUntil(ctx, 60*time.Second, func() bool {
		u, err := mrs.Get(ctx, mrName, metav1.GetOptions{})
		return err == nil && u.GetAnnotations()[mrsigner.QuarantineAnnotation] == "" && u.GetAnnotations()[mrsigner.IgnoreAnnotation] == ""
	}); err != nil {
		return fmt.Errorf("quarantine not lifted: %w", err)
	}
	s.say("quarantine lifted: the ManagedResource is reconciled again")
	return nil
}

func (s *mrScenario) registerWebhook(ctx context.Context, addr string, ca []byte) error {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	ifNeeded := admissionregistrationv1.IfNeededReinvocationPolicy
	timeout := int32(10)
	url := "https://" + addr + "/mutate"
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "trellis-mr-signer"}, Webhooks: []admissionregistrationv1.MutatingWebhook{{
		Name:         "sign.mr-signer.trellis.dev",
		ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"secrets"}},
		}},
		FailurePolicy: &fail, SideEffects: &none, AdmissionReviewVersions: []string{"v1"}, TimeoutSeconds: &timeout,
		NamespaceSelector:  &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": s.ns}},
		MatchConditions:    mrsigner.MatchConditions(),
		ReinvocationPolicy: &ifNeeded,
	}}}
	_, err := s.d.env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{})
	return err
}

func (s *mrScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	st.Endpoints = []string{endpoint("mr-signer", s.p), fmt.Sprintf("%-22s https://%s/mutate", "admission webhook", s.p.addr("serving admission webhooks"))}
	m := scrape(ctx, s.p.addr("serving web endpoints"))
	st.Lines = append(st.Lines, fmt.Sprintf("admissions signed %.0f stripped %.0f  verifications Valid %.0f invalid %.0f  quarantines %.0f  lifted %.0f  quarantined now %.0f",
		m.sum("trellis_mr_signer_admission_requests_total", "action", "signed"),
		m.sum("trellis_mr_signer_admission_requests_total", "action", "stripped"),
		m.sum("trellis_mr_signer_verifications_total", "result", "valid"),
		m.sum("trellis_mr_signer_verifications_total")-m.sum("trellis_mr_signer_verifications_total", "result", "valid"),
		m.sum("trellis_mr_signer_quarantines_total"), m.sum("trellis_mr_signer_quarantine_lifts_total"),
		m.sum("trellis_mr_signer_quarantined_managed_resources")))
	if u, err := s.d.env.Dynamic.Resource(mrsigner.ManagedResourceGVR).Namespace(s.ns).Get(ctx, mrName, metav1.GetOptions{}); err == nil {
		a := u.GetAnnotations()
		ign := a[mrsigner.IgnoreAnnotation]
		if ign == "" {
			ign = "(unset)"
		}
		st.Lines = append(st.Lines, fmt.Sprintf("ManagedResource %s/%s: %s=%s %s", s.ns, mrName, mrsigner.IgnoreAnnotation, ign, short(a[mrsigner.QuarantineAnnotation], 70)))
	}
	s.mu.Lock()
	st.Lines = append(st.Lines, s.story...)
	s.mu.Unlock()
	st.Proven = s.proven.Load()
	st.Proof = "a Secret written by the trusted identity was signed; after the untrusted change the ManagedResource got " + mrsigner.IgnoreAnnotation + "=true"
	return st
}

// warningFunc is a rest.WarningHandler.
type warningFunc func(text string)

func (f warningFunc) HandleWarningHeader(_ int, _ string, text string) { f(text) }

func short(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// servingCert writes a CA and a serving certificate for 127.0.0.1 signed by it
// into dir, and returns the CA (PEM) and the certificate and key files.
func servingCert(dir string) (ca []byte, certFile, keyFile string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", "", err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trellis-demo-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, "", "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, "", "", err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mr-signer"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost", "mr-signer.trellis-mr-signer.svc"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, "", "", err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, "", "", err
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		return nil, "", "", err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), certFile, keyFile, nil
}

// pollUntil calls cond every 100 ms until it is true, ctx ends or timeout
// passes.
func pollUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// sleep waits d (a pace for viewers, never a synchronisation) or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
