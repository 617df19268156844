package mrsigner

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestSignVerifyQuarantine runs mr-signer against the real API server with the
// real ManagedResource CRD; the API server calls its webhooks over TLS for the
// test's namespace only. Writes are done as a trusted user, a member of a trusted
// group and an untrusted user (impersonated, with RBAC). Each step is a way to get
// content applied that no trusted identity wrote, and is caught.
func TestSignVerifyQuarantine(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	ns, keysNS := env.Namespace(t), env.Namespace(t)
	grantWriters(t, env, ns)

	oldKey, signKey := newEd25519(t), newEd25519(t)
	if _, err := env.Client.CoreV1().Secrets(keysNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret},
		Data: map[string][]byte{"key.pem": privPEM(t, signKey)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().ConfigMaps(keysNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DefaultVerificationKeysCM},
		Data: map[string]string{"old.pem": pubPEM(t, oldKey)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certs := writeServingCert(t, t.TempDir())
	d := startDaemon(t, env, "--keys.namespace="+keysNS, "--verifier.namespace="+ns, "--trust.users="+trustedUser, "--trust.groups="+trustedGroup,
		"--webhook.tls-cert-file="+certs.CertFile, "--webhook.tls-key-file="+certs.KeyFile, "--webhook.deny-untrusted=true", "--verifier.resync-period=1h")
	whName := "mr-signer-" + ns
	registerWebhooks(t, env, whName, ns, d.Webhook, certs.CA, true, false)

	keys := secretsig.NewKeySet(signKey.Public().(ed25519.PublicKey), oldKey.Public().(ed25519.PublicKey))
	valid := func(s *corev1.Secret) error {
		_, err := keys.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s))
		return err
	}
	trusted := clientFor(t, env, trustedUser)
	groupMember := clientFor(t, env, "someone-in-the-group", trustedGroup)
	mallory := clientFor(t, env, untrustedUser)
	mrs := env.Dynamic.Resource(ManagedResourceGVR).Namespace(ns)

	create := func(c kubernetes.Interface, s *corev1.Secret) *corev1.Secret {
		t.Helper()
		out, err := c.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create secret %s: %v", s.Name, err)
		}
		return out
	}
	// update sets data[k]=v (delete when v is nil) as c, retrying on conflicts.
	update := func(c kubernetes.Interface, name string, change func(*corev1.Secret)) (*corev1.Secret, error) {
		for {
			s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			change(s)
			out, err := c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				continue
			}
			return out, err
		}
	}
	createMR := func(name string, annotations map[string]string, secretNames ...string) {
		t.Helper()
		if _, err := mrs.Create(ctx, managedResource(ns, name, annotations, secretNames...), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create managed resource %s: %v", name, err)
		}
	}
	annotations := func(mr string) map[string]string {
		u, err := mrs.Get(ctx, mr, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return u.GetAnnotations()
	}
	waitQuarantined := func(mr, reason string) {
		t.Helper()
		testkit.EventuallyWithin(t, 30*time.Second, mr+" quarantined for "+reason, func() bool {
			a := annotations(mr)
			return strings.HasPrefix(a[QuarantineAnnotation], reason+":") && a[IgnoreAnnotation] == "true"
		})
	}
	waitLifted := func(mr string, ignoreStays bool) {
		t.Helper()
		testkit.EventuallyWithin(t, 30*time.Second, mr+" quarantine lifted", func() bool {
			a := annotations(mr)
			_, q := a[QuarantineAnnotation]
			return !q && (a[IgnoreAnnotation] == "true") == ignoreStays
		})
	}

	// The API server picks the webhook configuration up asynchronously.
	testkit.EventuallyWithin(t, 30*time.Second, "the webhook to sign", func() bool {
		s, err := update(trusted, "probe", func(*corev1.Secret) {})
		if apierrors.IsNotFound(err) {
			s, err = trusted.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, "probe", "x"), metav1.CreateOptions{})
		}
		return err == nil && valid(s) == nil
	})

	t.Run("trusted writes are signed", func(t *testing.T) {
		for _, c := range []kubernetes.Interface{trusted, groupMember} {
			s := create(c, mrSecret(ns, fmt.Sprintf("signed-%p", c), "kind: ConfigMap"))
			if err := valid(s); err != nil {
				t.Fatalf("stored secret: %v", err)
			}
		}
		s := create(trusted, mrSecret(ns, "s1", "kind: ConfigMap\nmetadata: {name: a}"))
		if err := valid(s); err != nil {
			t.Fatal(err)
		}
		two := mrSecret(ns, "two-keys", "a")
		two.StringData = map[string]string{"second.yaml": "b"} // merged into data before admission
		if err := valid(create(trusted, two)); err != nil {
			t.Fatalf("stringData: %v", err)
		}
		// Not in scope (no label, not referenced): left alone.
		plain := create(trusted, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "plain"}, Data: map[string][]byte{"a": []byte("b")}})
		if _, ok := plain.Annotations[secretsig.Annotation]; ok {
			t.Fatal("out-of-scope secret signed")
		}
	})

	t.Run("untrusted write is stripped and quarantined", func(t *testing.T) {
		createMR("mr1", nil, "s1")
		createMR("missing", nil, "does-not-exist-yet")
		waitQuarantined("missing", reasonSecretNotFound)
		if _, q := annotations("mr1")[QuarantineAnnotation]; q {
			t.Fatal("mr1 with a validly signed secret quarantined")
		}
		s, err := update(mallory, "s1", func(s *corev1.Secret) { s.Data["configmap.yaml"] = []byte("kind: ClusterRoleBinding") })
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.Annotations[secretsig.Annotation]; ok {
			t.Fatal("untrusted write kept its signature")
		}
		waitQuarantined("mr1", "SignatureMissing")
		testkit.EventuallyWithin(t, 30*time.Second, "a Quarantined event", func() bool {
			evs, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": "mr1", "reason": "Quarantined"}.String()})
			return err == nil && len(evs.Items) > 0 && evs.Items[0].Type == corev1.EventTypeWarning
		})
	})

	t.Run("untrusted cannot plant a signature", func(t *testing.T) {
		signed, err := trusted.CoreV1().Secrets(ns).Get(ctx, "two-keys", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		replay := mrSecret(ns, "replayed", "")
		replay.Data = signed.Data
		replay.Annotations = map[string]string{secretsig.Annotation: signed.Annotations[secretsig.Annotation]}
		if s := create(mallory, replay); s.Annotations[secretsig.Annotation] != "" {
			t.Fatal("planted signature kept")
		}
		// Unlabelled: the match condition still sends it because of the annotation.
		replay = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "replayed-unlabelled", Annotations: map[string]string{secretsig.Annotation: signed.Annotations[secretsig.Annotation]}}, Data: signed.Data}
		if s := create(mallory, replay); s.Annotations[secretsig.Annotation] != "" {
			t.Fatal("planted signature kept on an unlabelled secret")
		}
	})

	t.Run("trusted rewrite lifts the quarantine", func(t *testing.T) {
		if _, err := update(trusted, "s1", func(s *corev1.Secret) { s.Data["configmap.yaml"] = []byte("kind: ConfigMap") }); err != nil {
			t.Fatal(err)
		}
		waitLifted("mr1", false)
		create(trusted, mrSecret(ns, "does-not-exist-yet", "x"))
		waitLifted("missing", false)
	})

	t.Run("an ignore annotation set by someone else stays", func(t *testing.T) {
		create(mallory, mrSecret(ns, "s3", "unsigned"))
		createMR("mr3", map[string]string{IgnoreAnnotation: "true"}, "s3")
		waitQuarantined("mr3", "SignatureMissing")
		if _, err := update(trusted, "s3", func(s *corev1.Secret) {}); err != nil {
			t.Fatal(err)
		}
		waitLifted("mr3", true)
	})

	t.Run("concurrent trusted and untrusted updates", func(t *testing.T) {
		create(trusted, mrSecret(ns, "busy", "0"))
		createMR("busy", nil, "busy")
		var wg sync.WaitGroup
		for w := range 6 {
			c, isTrusted := mallory, w%2 == 0
			if isTrusted {
				c = trusted
			}
			wg.Go(func() {
				for j := range 5 {
					s, err := update(c, "busy", func(s *corev1.Secret) { s.Data["configmap.yaml"] = fmt.Appendf(nil, "%d-%d", w, j) })
					if err != nil {
						t.Errorf("writer %d: %v", w, err)
						return
					}
					// Every stored version is signed exactly when a trusted identity wrote it.
					if err := valid(s); (err == nil) != isTrusted {
						t.Errorf("writer %d (trusted %v): stored signature check %v", w, isTrusted, err)
					}
				}
			})
		}
		wg.Wait()
		final, err := trusted.CoreV1().Secrets(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		wantQuarantined := valid(final) != nil
		testkit.EventuallyWithin(t, 30*time.Second, "quarantine to follow the last write", func() bool {
			_, q := annotations("busy")[QuarantineAnnotation]
			return q == wantQuarantined
		})
	})

	t.Run("validating webhook denies untrusted writes", func(t *testing.T) {
		registerWebhooks(t, env, whName+"-deny", ns, d.Webhook, certs.CA, false, true)
		testkit.EventuallyWithin(t, 30*time.Second, "an untrusted write to be denied", func() bool {
			_, err := update(mallory, "s1", func(s *corev1.Secret) { s.Data["configmap.yaml"] = []byte("evil") })
			return apierrors.IsForbidden(err) && strings.Contains(err.Error(), "only trusted identities")
		})
		// Removing the label does not help.
		if _, err := update(mallory, "s1", func(s *corev1.Secret) { s.Labels = nil; delete(s.Annotations, secretsig.Annotation) }); !apierrors.IsForbidden(err) {
			t.Fatalf("unlabelling as untrusted: %v, want forbidden", err)
		}
		s, err := update(trusted, "s1", func(s *corev1.Secret) { s.Data["configmap.yaml"] = []byte("kind: ConfigMap") })
		if err != nil || valid(s) != nil {
			t.Fatalf("trusted write: %v", err)
		}
		waitLifted("mr1", false)
		if err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(ctx, whName+"-deny", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	// Someone who can delete the webhook configuration writes past the signer: the
	// verifier still catches every change the signature does not cover.
	t.Run("webhook bypassed", func(t *testing.T) {
		if err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, whName, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		admin := env.Client
		testkit.EventuallyWithin(t, 30*time.Second, "writes to bypass the webhook", func() bool {
			s, err := update(admin, "probe", func(s *corev1.Secret) { s.Annotations[secretsig.Annotation] = "kept" })
			return err == nil && s.Annotations[secretsig.Annotation] == "kept"
		})
		s1, err := admin.CoreV1().Secrets(ns).Get(ctx, "s1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}

		copied := mrSecret(ns, "s1-copy", "")
		copied.Data, copied.Annotations = s1.Data, s1.Annotations
		create(admin, copied)
		createMR("copy", nil, "s1-copy")
		waitQuarantined("copy", "SignatureInvalid")

		if _, err := update(admin, "s1", func(s *corev1.Secret) { s.Data["zz-added.yaml"] = []byte("kind: ClusterRole") }); err != nil {
			t.Fatal(err)
		}
		waitQuarantined("mr1", "SignatureInvalid")
		// The same content again is the signed content again.
		if _, err := update(admin, "s1", func(s *corev1.Secret) { delete(s.Data, "zz-added.yaml") }); err != nil {
			t.Fatal(err)
		}
		waitLifted("mr1", false)

		createMR("two", nil, "two-keys")
		if _, err := update(admin, "two-keys", func(s *corev1.Secret) { delete(s.Data, "second.yaml") }); err != nil {
			t.Fatal(err)
		}
		waitQuarantined("two", "SignatureInvalid")

		if _, err := update(admin, "s3", func(s *corev1.Secret) { s.Data["configmap.yaml"] = []byte("changed") }); err != nil {
			t.Fatal(err)
		}
		waitQuarantined("mr3", "SignatureInvalid")

		// Key rotation: a Secret signed by the old key verifies while the key is
		// listed and is quarantined once it is removed; adding it back lifts it.
		createMR("old", nil, "old-signed")
		waitQuarantined("old", reasonSecretNotFound)
		old := mrSecret(ns, "old-signed", "from before the rotation")
		old.Annotations = map[string]string{secretsig.Annotation: secretsig.NewSigner(oldKey).Sign(secretsig.FromSecret(old))}
		create(admin, old)
		waitLifted("old", false)
		cms := env.Client.CoreV1().ConfigMaps(keysNS)
		if _, err := cms.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DefaultVerificationKeysCM}, Data: map[string]string{}}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitQuarantined("old", "UnknownKey")
		if _, q := annotations("mr1")[QuarantineAnnotation]; q {
			t.Fatal("a secret signed by the current signing key failed after the verification ConfigMap changed")
		}
		// A new signing key: old signatures by the previous signing key verify only
		// if its public key is listed.
		newSign := newEd25519(t)
		if _, err := cms.Update(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: DefaultVerificationKeysCM},
			Data: map[string]string{"previous.pem": pubPEM(t, signKey), "old.pem": pubPEM(t, oldKey)}}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitLifted("old", false)
		if _, err := env.Client.CoreV1().Secrets(keysNS).Update(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret},
			Data: map[string][]byte{"key.pem": privPEM(t, newSign)}}, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		testkit.EventuallyWithin(t, 30*time.Second, "the new signing key in use", func() bool {
			return strings.Contains(d.Logs.String(), secretsig.KeyID(newSign.Public().(ed25519.PublicKey)))
		})
		if _, q := annotations("mr1")[QuarantineAnnotation]; q {
			t.Fatal("mr1 (signed by the previous key, still listed) quarantined")
		}
	})

	m := d.metrics(t)
	for _, want := range []string{
		`trellis_mr_signer_quarantines_total{reason="signature_missing"}`,
		`trellis_mr_signer_quarantines_total{reason="signature_invalid"}`,
		`trellis_mr_signer_quarantines_total{reason="unknown_key"}`,
		`trellis_mr_signer_admission_requests_total{action="signed",webhook="mutate"}`,
		`trellis_mr_signer_admission_requests_total{action="stripped",webhook="mutate"}`,
		`trellis_mr_signer_admission_requests_total{action="denied",webhook="validate"}`,
		`trellis_mr_signer_verifications_total{result="valid"}`,
		`trellis_mr_signer_keys{kind="verification"} 3`,
		`trellis_mr_signer_quarantine_lifts_total`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
