package mrsigner

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
	"github.com/trellis-garden/trellis/internal/webhook"
)

// registerBaseWebhooks registers the webhook configurations of deploy/mr-signer/base
// as shipped (rules, operations, matchConditions, failurePolicy), renamed to name,
// restricted to namespace and pointed at https://addr instead of the Service, with
// caBundle set to ca (nil: left to the bootstrap). They are deleted when the test
// ends.
func registerBaseWebhooks(t *testing.T, env *testenv.Env, name, namespace, addr string, ca []byte) {
	t.Helper()
	ctx := context.Background()
	nsSel := &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}}
	point := func(cc *admissionregistrationv1.WebhookClientConfig) {
		u := "https://" + addr + *cc.Service.Path
		cc.Service, cc.URL, cc.CABundle = nil, &u, ca
	}
	found := 0
	for _, obj := range testenv.ReadManifests(t, "../../deploy/mr-signer/base") {
		switch o := obj.(type) {
		case *admissionregistrationv1.MutatingWebhookConfiguration:
			o.Name = name
			for i := range o.Webhooks {
				point(&o.Webhooks[i].ClientConfig)
				o.Webhooks[i].NamespaceSelector = nsSel
			}
			if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
			})
			found++
		case *admissionregistrationv1.ValidatingWebhookConfiguration:
			o.Name = name
			for i := range o.Webhooks {
				point(&o.Webhooks[i].ClientConfig)
				o.Webhooks[i].NamespaceSelector = nsSel
			}
			if _, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, o, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
			})
			found++
		}
	}
	if found != 2 {
		t.Fatalf("the base has %d webhook configurations, want a mutating and a validating one", found)
	}
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// caBundles returns the caBundle of every webhook of both configurations.
func caBundles(t *testing.T, env *testenv.Env, name string) [][]byte {
	t.Helper()
	ctx := context.Background()
	var out [][]byte
	m, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range m.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	v, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Webhooks {
		out = append(out, w.ClientConfig.CABundle)
	}
	return out
}

// TestBootstrapFreshNamespace: mr-signer started in an empty namespace with the
// base's webhook configurations (no caBundle) and nothing else creates its keys,
// CA and serving certificate, writes the caBundles and ends ready: the real API
// server calls it over TLS, trusted writes are signed, untrusted ones denied on
// every path (update, create, delete, label and signature removal, ManagedResource
// spec). A deleted serving certificate or CA is replaced without a restart. With
// mr-signer down, nothing untrusted gets through.
func TestBootstrapFreshNamespace(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	keysNS, ns := env.Namespace(t), env.Namespace(t)
	grantWriters(t, env, ns)
	port := freePort(t)
	whName := "mr-signer-" + ns
	registerBaseWebhooks(t, env, whName, ns, "127.0.0.1:"+port, nil)

	d := startDaemon(t, env, "--webhook.listen-address=127.0.0.1:"+port, "--keys.namespace="+keysNS, "--verifier.namespace="+ns,
		"--trust.users="+trustedUser, "--webhook.tls-secret="+DefaultTLSSecret, "--bootstrap.keys", "--bootstrap.certificates",
		"--bootstrap.webhook-configurations="+whName, "--bootstrap.extra-names=127.0.0.1", "--bootstrap.check-period=500ms",
		"--webhook.deny-untrusted", "--leader-elect", "--leader-elect.namespace="+keysNS, "--verifier.resync-period=1h")

	// Everything exists and fits together.
	sec := env.Client.CoreV1().Secrets(keysNS)
	signing, err := sec.Get(ctx, DefaultSigningKeySecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	priv, err := secretsig.ParsePrivateKeyPEM(signing.Data["key.pem"])
	if err != nil {
		t.Fatal(err)
	}
	cm, err := env.Client.CoreV1().ConfigMaps(keysNS).Get(ctx, DefaultVerificationKeysCM, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := secretsig.KeyID(newSignerPublic(priv))
	pubs, err := secretsig.ParsePublicKeysPEM([]byte(cm.Data[id+".pem"]))
	if err != nil || len(pubs) != 1 || !pubs[0].Equal(newSignerPublic(priv)) {
		t.Fatalf("verification ConfigMap %v does not hold the signing key's public key %s: %v", cm.Data, id, err)
	}
	var caPEM []byte
	testkit.EventuallyWithin(t, 30*time.Second, "caBundle in every webhook", func() bool {
		ca, err := sec.Get(ctx, DefaultCASecret, metav1.GetOptions{})
		if err != nil {
			return false
		}
		caPEM = ca.Data["ca.crt"]
		for _, b := range caBundles(t, env, whName) {
			if !bytes.Equal(b, caPEM) {
				return false
			}
		}
		return true
	})
	tlsSecret, err := sec.Get(ctx, DefaultTLSSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	served, err := webhook.ParseKeyPair(tlsSecret.Data["tls.crt"], tlsSecret.Data["tls.key"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := served.Cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: "mr-signer." + keysNS + ".svc"}); err != nil {
		t.Fatalf("serving certificate does not verify for the Service: %v", err)
	}
	caCerts, err := webhook.CertificatesPEM(caPEM)
	if err != nil || len(caCerts) == 0 {
		t.Fatalf("CA bundle: %v", err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "certificate expiry metrics", func() bool {
		m := d.metrics(t)
		return certExpiry(m, "serving") == served.Cert.NotAfter.Unix() && certExpiry(m, "ca") == caCerts[0].NotAfter.Unix()
	})

	keys := secretsig.NewKeySet(newSignerPublic(priv))
	trusted, mallory := clientFor(t, env, trustedUser), clientFor(t, env, untrustedUser)
	signedWrite := func(name, payload string) *corev1.Secret {
		t.Helper()
		var out *corev1.Secret
		testkit.EventuallyWithin(t, 30*time.Second, "a signed trusted write of "+name, func() bool {
			s, err := trusted.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				s, err = trusted.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, name, payload), metav1.CreateOptions{})
			} else if err == nil {
				s.Data = map[string][]byte{"configmap.yaml": []byte(payload)}
				s, err = trusted.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Logf("trusted write (retried): %v", err)
				return false
			}
			out = s
			return true
		})
		if _, err := keys.Verify(secretsig.FromSecret(out), secretsig.AnnotationOf(out)); err != nil {
			t.Fatalf("trusted write of %s not validly signed: %v", name, err)
		}
		return out
	}
	signedWrite("managedresource-a", "kind: ConfigMap")
	signedWrite("managedresource-gc", "kind: ConfigMap")
	trustedDyn, err := dynamic.NewForConfig(env.ImpersonatedConfig(trustedUser))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := trustedDyn.Resource(ManagedResourceGVR).Namespace(ns).Create(ctx, managedResource(ns, "a", nil, "managedresource-a"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "the ManagedResource in mr-signer's cache", func() bool {
		return strings.Contains(d.metrics(t), `trellis_mr_signer_verifications_total{result="valid"}`)
	})

	denied := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "mr-signer") {
			t.Errorf("%s by an untrusted user: %v, want denied by mr-signer", what, err)
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
	denied("update", change(mallory, "managedresource-a", func(s *corev1.Secret) { s.Data["evil.yaml"] = []byte("kind: ClusterRoleBinding") }))
	denied("label removal", change(mallory, "managedresource-a", func(s *corev1.Secret) { s.Labels = nil }))
	denied("signature removal", change(mallory, "managedresource-a", func(s *corev1.Secret) { delete(s.Annotations, secretsig.Annotation) }))
	denied("metadata-only label removal with the data kept", change(mallory, "managedresource-a", func(s *corev1.Secret) { s.Labels = map[string]string{"x": "y"} }))
	_, err = mallory.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, "managedresource-evil", "kind: ClusterRoleBinding"), metav1.CreateOptions{})
	denied("create of a labelled Secret", err)
	denied("delete of a referenced Secret", mallory.CoreV1().Secrets(ns).Delete(ctx, "managedresource-a", metav1.DeleteOptions{}))
	// An unreferenced Secret may be deleted by anyone with RBAC (the resource
	// manager's garbage collector does that).
	if err := mallory.CoreV1().Secrets(ns).Delete(ctx, "managedresource-gc", metav1.DeleteOptions{}); err != nil {
		t.Errorf("delete of an unreferenced Secret: %v", err)
	}
	// An unlabelled, unsigned Secret of the attacker's is not in scope...
	if _, err := mallory.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "attacker"},
		Data: map[string][]byte{"x.yaml": []byte("kind: ClusterRoleBinding")}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// ...but no ManagedResource may be pointed at it, nor created, by an untrusted identity.
	malloryDyn, err := dynamic.NewForConfig(env.ImpersonatedConfig(untrustedUser))
	if err != nil {
		t.Fatal(err)
	}
	_, err = malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Create(ctx, managedResource(ns, "evil", nil, "attacker"), metav1.CreateOptions{})
	denied("ManagedResource create", err)
	mr, err := malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	repointed := mr.DeepCopy()
	_ = unstructured.SetNestedSlice(repointed.Object, []any{map[string]any{"name": "attacker"}}, "spec", "secretRefs")
	_, err = malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Update(ctx, repointed, metav1.UpdateOptions{})
	denied("secretRefs changed to the attacker's Secret", err)
	added := mr.DeepCopy()
	_ = unstructured.SetNestedSlice(added.Object, []any{map[string]any{"name": "managedresource-a"}, map[string]any{"name": "attacker"}}, "spec", "secretRefs")
	_, err = malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Update(ctx, added, metav1.UpdateOptions{})
	denied("secretRefs extended by the attacker's Secret", err)
	// Metadata (the resource manager's finalizer) stays writable.
	fin := mr.DeepCopy()
	fin.SetFinalizers([]string{"resources.gardener.cloud/gardener-resource-manager"})
	if _, err := malloryDyn.Resource(ManagedResourceGVR).Namespace(ns).Update(ctx, fin, metav1.UpdateOptions{}); err != nil {
		t.Errorf("finalizer update by an untrusted identity: %v", err)
	}
	// The trusted writer may do all of it.
	signedWrite("managedresource-a", "kind: Namespace")
	if err := trusted.CoreV1().Secrets(ns).Delete(ctx, "managedresource-a", metav1.DeleteOptions{}); err != nil {
		t.Errorf("trusted delete: %v", err)
	}
	// Every CREATE reaches mr-signer (matchConditions): an unlabelled re-create of
	// the referenced name is denied to the untrusted user and signed for the trusted one.
	unlabelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "managedresource-a"}, Data: map[string][]byte{"x.yaml": []byte("kind: ClusterRoleBinding")}}
	_, err = mallory.CoreV1().Secrets(ns).Create(ctx, unlabelled, metav1.CreateOptions{})
	denied("unlabelled re-create of a referenced Secret", err)
	if got, err := trusted.CoreV1().Secrets(ns).Create(ctx, unlabelled, metav1.CreateOptions{}); err != nil {
		t.Errorf("trusted unlabelled create of a referenced Secret: %v", err)
	} else if _, err := keys.Verify(secretsig.FromSecret(got), secretsig.AnnotationOf(got)); err != nil {
		t.Errorf("trusted unlabelled create of a referenced Secret not signed: %v", err)
	}
	signedWrite("managedresource-a", "kind: ConfigMap")

	// The serving certificate and then the CA are replaced while serving.
	old := tlsSecret.Data["tls.crt"]
	if err := sec.Delete(ctx, DefaultTLSSecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "a new serving certificate", func() bool {
		s, err := sec.Get(ctx, DefaultTLSSecret, metav1.GetOptions{})
		return err == nil && !bytes.Equal(s.Data["tls.crt"], old)
	})
	signedWrite("managedresource-a", "kind: Namespace")
	if err := sec.Delete(ctx, DefaultCASecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "the new CA in every caBundle", func() bool {
		ca, err := sec.Get(ctx, DefaultCASecret, metav1.GetOptions{})
		if err != nil || bytes.Equal(ca.Data["ca.crt"], caPEM) {
			return false
		}
		for _, b := range caBundles(t, env, whName) {
			if !bytes.Equal(b, ca.Data["ca.crt"]) {
				return false
			}
		}
		return true
	})
	signedWrite("managedresource-a", "kind: ConfigMap")

	// mr-signer down: nothing untrusted gets through (failurePolicy Fail).
	d.Stop()
	if err := change(mallory, "managedresource-a", func(s *corev1.Secret) { s.Data["evil.yaml"] = []byte("x") }); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("untrusted update with mr-signer down: %v, want refused", err)
	}
}

// TestBootstrapRotation: the leader's certificate logic over years of simulated
// time against the real API server: a serving certificate is renewed in the last
// third of its lifetime, a CA likewise, and a replaced CA stays in the caBundle
// (so certificates it issued keep verifying) until it expires.
func TestBootstrapRotation(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	ns := env.Namespace(t)
	name := "mr-signer-rotation-" + ns
	u := "https://localhost:1/mutate"
	none := admissionregistrationv1.SideEffectClassNone
	if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "x.trellis.dev", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &u},
			SideEffects: &none, AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	now := time.Now()
	b := &Bootstrapper{Client: env.Client, Namespace: ns, SigningSecret: DefaultSigningKeySecret, VerificationCM: DefaultVerificationKeysCM,
		Certificates: true, CASecret: DefaultCASecret, TLSSecret: DefaultTLSSecret, Service: DefaultService, WebhookConfigs: []string{name},
		ExtraNames: []string{"localhost"}, CertValidity: 90 * 24 * time.Hour, CAValidity: 3 * 365 * 24 * time.Hour, Period: time.Hour,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: func() time.Time { return now }}
	type state struct {
		caRV, tlsRV, keyRV string
		cert               *x509.Certificate
		bundle             []*x509.Certificate
	}
	get := func() state {
		t.Helper()
		if err := b.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		ca, err1 := env.Client.CoreV1().Secrets(ns).Get(ctx, DefaultCASecret, metav1.GetOptions{})
		tl, err2 := env.Client.CoreV1().Secrets(ns).Get(ctx, DefaultTLSSecret, metav1.GetOptions{})
		key, err3 := env.Client.CoreV1().Secrets(ns).Get(ctx, DefaultSigningKeySecret, metav1.GetOptions{})
		mwc, err4 := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		if err := errorsJoin(err1, err2, err3, err4); err != nil {
			t.Fatal(err)
		}
		kp, err := webhook.ParseKeyPair(tl.Data["tls.crt"], tl.Data["tls.key"])
		if err != nil {
			t.Fatal(err)
		}
		bundle, _ := webhook.CertificatesPEM(mwc.Webhooks[0].ClientConfig.CABundle)
		if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, ca.Data["ca.crt"]) || !bytes.Equal(tl.Data["ca.crt"], ca.Data["ca.crt"]) {
			t.Fatal("caBundle, the CA Secret and the serving Secret's ca.crt differ")
		}
		return state{ca.ResourceVersion, tl.ResourceVersion, key.ResourceVersion, kp.Cert, bundle}
	}
	verifies := func(c *x509.Certificate, bundle []*x509.Certificate, at time.Time) bool {
		pool := x509.NewCertPool()
		for _, b := range bundle {
			pool.AddCert(b)
		}
		_, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost", CurrentTime: at})
		return err == nil
	}

	s0 := get()
	if len(s0.bundle) != 1 || !verifies(s0.cert, s0.bundle, now) {
		t.Fatal("first certificate does not verify against the caBundle")
	}
	if s := get(); s.caRV != s0.caRV || s.tlsRV != s0.tlsRV || s.keyRV != s0.keyRV || len(s.bundle) != 1 {
		t.Fatal("a second reconcile changed something")
	}
	now = now.Add(59 * 24 * time.Hour) // 31 days left of 90: keep
	if s := get(); s.tlsRV != s0.tlsRV {
		t.Fatal("serving certificate renewed too early")
	}
	now = now.Add(2 * 24 * time.Hour) // 29 days left: renew
	s1 := get()
	if s1.tlsRV == s0.tlsRV || s1.caRV != s0.caRV || !verifies(s1.cert, s1.bundle, now) || s1.cert.NotAfter.Sub(now) < 89*24*time.Hour {
		t.Fatal("serving certificate not renewed in the last third of its lifetime")
	}
	// Two thirds of the CA's 3 years: a new CA; the old one stays in the bundle.
	now = time.Now().Add(2*365*24*time.Hour + 24*time.Hour)
	s2 := get()
	if s2.caRV == s1.caRV || len(s2.bundle) != 2 || !verifies(s2.cert, s2.bundle, now) || !verifies(s1.cert, s2.bundle, s1.cert.NotAfter.Add(-time.Hour)) {
		t.Fatalf("CA rotation: bundle of %d, new certificate verifies %v", len(s2.bundle), verifies(s2.cert, s2.bundle, now))
	}
	if s2.cert.CheckSignatureFrom(s2.bundle[0]) != nil {
		t.Fatal("new serving certificate not issued by the new CA")
	}
	// After the old CA expired it leaves the bundle.
	now = time.Now().Add(3*365*24*time.Hour + 24*time.Hour)
	if s3 := get(); len(s3.bundle) != 1 || !verifies(s3.cert, s3.bundle, now) {
		t.Fatalf("after the old CA expired: bundle of %d", len(s3.bundle))
	}
	if s := get(); s.keyRV != s0.keyRV {
		t.Fatal("the signing key was replaced")
	}
}

func errorsJoin(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
