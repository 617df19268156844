package mrsigner

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// Hostile trusted names: quotes and backslashes that would end a naively quoted
// CEL string and make the expression true for everyone.
const (
	hostileUser  = `o'brien\' || true || '`
	hostileGroup = `g\', 'system:authenticated`
)

func TestTrustExpressionQuoting(t *testing.T) {
	if got := NewTrust(nil, nil, nil).Expression(); got != PlaceholderTrusted {
		t.Errorf("nobody trusted: %q, want the placeholder %q", got, PlaceholderTrusted)
	}
	e := NewTrust([]string{hostileUser, "b", "ünï\U0001F600"}, []string{hostileGroup}, [][2]string{{"garden", "gardenlet"}}).Expression()
	for _, want := range []string{`'o\u0027brien\u005c\u0027 || true || \u0027'`, `'g\u005c\u0027, \u0027system:authenticated'`,
		`'\u00fcn\u00ef\U0001f600'`, `'system:serviceaccount:garden:gardenlet'`} {
		if !strings.Contains(e, want) {
			t.Errorf("expression %s lacks %s", e, want)
		}
	}
	// Sorted: the same flags give the same expression (no update per check).
	if e2 := NewTrust([]string{"ünï\U0001F600", "b", hostileUser}, []string{hostileGroup}, [][2]string{{"garden", "gardenlet"}}).Expression(); e2 != e {
		t.Errorf("expression depends on the flags' order:\n%s\n%s", e, e2)
	}
	o := NewOptions()
	o.TrustedUsers = []string{"a\xffb"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "not valid UTF-8") {
		t.Errorf("invalid UTF-8 trusted user: %v", err)
	}
}

// TestTrustConditionsMrSignerDown: with the base's webhook configurations and no
// mr-signer answering (nothing listens at their URL), the shipped placeholder
// refuses everyone; once the leader's step wrote the trust flags (hostile names)
// into the matchConditions, trusted writers (by user name or group) create,
// update and delete ManagedResource Secrets through the real API server (unsigned:
// the verifier quarantines their ManagedResource until their next signed write),
// while every untrusted identity, including ones named like fragments of the
// hostile names, is still refused. A tampered expression is put back.
func TestTrustConditionsMrSignerDown(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	keysNS, ns := env.Namespace(t), env.Namespace(t)
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "write-secrets"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"*"}}}}
	if _, err := env.Client.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "authenticated-write-secrets"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "write-secrets"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:authenticated"}}}
	if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	whName := "mr-signer-" + ns
	registerBaseWebhooks(t, env, whName, ns, "127.0.0.1:"+freePort(t), nil) // nothing listens: mr-signer down

	trust := NewTrust([]string{hostileUser, trustedUser}, []string{hostileGroup}, nil)
	create := func(c kubernetes.Interface, name string) error {
		_, err := c.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, name, "kind: ConfigMap"), metav1.CreateOptions{})
		return err
	}
	refused := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("%s with mr-signer down: %v, want refused by a failurePolicy Fail webhook", what, err)
		}
	}
	hostile := clientFor(t, env, hostileUser)
	// Placeholder: fail-closed, trusted writers are refused like everyone else.
	refused("trusted create before the leader wrote the trust conditions", create(hostile, "placeholder"))

	b := &Bootstrapper{Client: env.Client, Namespace: keysNS, Service: DefaultService, WebhookConfigs: []string{whName},
		ExtraNames: []string{"127.0.0.1"}, TrustConditions: trust.TrustConditions(), Period: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })

	want := trust.TrustConditions()
	conditionsWritten := func() bool {
		m, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		v, err := env.Client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		var conds []admissionregistrationv1.MatchCondition
		for _, w := range m.Webhooks {
			conds = append(conds, w.MatchConditions...)
		}
		for _, w := range v.Webhooks {
			conds = append(conds, w.MatchConditions...)
		}
		n := 0
		for _, c := range conds {
			if e, ok := want[c.Name]; ok {
				if c.Expression != e {
					return false
				}
				n++
			}
		}
		return n == 4
	}
	testkit.EventuallyWithin(t, 30*time.Second, "trust conditions in every webhook", conditionsWritten)

	checkDown := func(round string) {
		t.Helper()
		byGroup := clientFor(t, env, "someone", hostileGroup)
		for i, c := range []kubernetes.Interface{hostile, clientFor(t, env, trustedUser), byGroup} {
			name := "trusted-" + round + "-" + string(rune('a'+i))
			if err := create(c, name); err != nil {
				t.Errorf("%s: trusted create #%d with mr-signer down: %v", round, i, err)
				continue
			}
			s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, signed := s.Annotations[secretsig.Annotation]; signed {
				t.Errorf("%s: a write with mr-signer down carries a signature", round)
			}
			s.Data["more.yaml"] = []byte("kind: Namespace")
			if _, err := c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				t.Errorf("%s: trusted update #%d with mr-signer down: %v", round, i, err)
			}
		}
		target := "trusted-" + round + "-a"
		for _, u := range []string{untrustedUser, "o'brien", "o'brien\\", "true", "' || true || '", "g\\", "system:authenticated", ""} {
			if u == "" {
				u = "system:anonymous"
			}
			c := clientFor(t, env, u, "g", "system:authenticated")
			refused("untrusted ("+u+") create", create(c, "evil-"+round))
			s, err := c.CoreV1().Secrets(ns).Get(ctx, target, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s.Data["evil.yaml"] = []byte("kind: ClusterRoleBinding")
			_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			refused("untrusted ("+u+") update", err)
			s.Data, s.Labels = nil, nil
			_, err = c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
			refused("untrusted ("+u+") label removal", err)
		}
		if err := hostile.CoreV1().Secrets(ns).Delete(ctx, "trusted-"+round+"-c", metav1.DeleteOptions{}); err != nil {
			t.Errorf("%s: trusted delete with mr-signer down: %v", round, err)
		}
	}
	checkDown("first")

	// Tampered: everyone trusted. The leader's next check puts it back.
	m, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range m.Webhooks {
		for j := range m.Webhooks[i].MatchConditions {
			switch m.Webhooks[i].MatchConditions[j].Name {
			case TrustedWriterCondition:
				m.Webhooks[i].MatchConditions[j].Expression = "true"
			case UntrustedWriterCondition:
				m.Webhooks[i].MatchConditions[j].Expression = "false"
			}
		}
	}
	if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyWithin(t, 30*time.Second, "the tampered trust conditions put back", conditionsWritten)
	checkDown("second")
}

// TestTrustedWriterWhileMrSignerStopped: the daemon, without certificate
// bootstrap (serving certificate from files, caBundle from elsewhere as with
// cert-manager), writes its trust flags into the base's webhook configurations;
// while it runs, trusted writes are signed and untrusted ones denied by it; once
// it is stopped, the trusted writer still creates and updates ManagedResource
// Secrets (unsigned) and the untrusted one is refused.
func TestTrustedWriterWhileMrSignerStopped(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ctx := context.Background()
	ns, keysNS := env.Namespace(t), env.Namespace(t)
	grantWriters(t, env, ns)
	signKey := newEd25519(t)
	if _, err := env.Client.CoreV1().Secrets(keysNS).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret},
		Data: map[string][]byte{"key.pem": privPEM(t, signKey)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	certs := writeServingCert(t, t.TempDir())
	port := freePort(t)
	whName := "mr-signer-" + ns
	registerBaseWebhooks(t, env, whName, ns, "127.0.0.1:"+port, certs.CA)
	d := startDaemon(t, env, "--webhook.listen-address=127.0.0.1:"+port, "--keys.namespace="+keysNS, "--verifier.namespace="+ns,
		"--trust.users="+trustedUser, "--webhook.tls-cert-file="+certs.CertFile, "--webhook.tls-key-file="+certs.KeyFile,
		"--bootstrap.webhook-configurations="+whName, "--bootstrap.extra-names=127.0.0.1", "--bootstrap.check-period=500ms",
		"--webhook.deny-untrusted", "--verifier.resync-period=1h")
	trustedExpr := NewTrust([]string{trustedUser}, nil, nil).Expression()
	testkit.EventuallyWithin(t, 30*time.Second, "the trust conditions written by the daemon", func() bool {
		m, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, whName, metav1.GetOptions{})
		return err == nil && m.Webhooks[0].MatchConditions[1].Expression == trustedExpr
	})
	keys := secretsig.NewKeySet(newSignerPublic(signKey))
	trusted, mallory := clientFor(t, env, trustedUser), clientFor(t, env, untrustedUser)
	write := func(c kubernetes.Interface, name, payload string) (*corev1.Secret, error) {
		s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return c.CoreV1().Secrets(ns).Create(ctx, mrSecret(ns, name, payload), metav1.CreateOptions{})
		}
		s.Data = map[string][]byte{"configmap.yaml": []byte(payload)}
		return c.CoreV1().Secrets(ns).Update(ctx, s, metav1.UpdateOptions{})
	}
	// Running: signed for the trusted writer, denied by mr-signer to the untrusted one.
	s, err := write(trusted, "managedresource-a", "kind: ConfigMap")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s)); err != nil {
		t.Fatalf("trusted write while running not signed: %v", err)
	}
	if _, err := write(mallory, "managedresource-a", "kind: ClusterRoleBinding"); err == nil || !strings.Contains(err.Error(), "mr-signer") {
		t.Errorf("untrusted update while running: %v, want denied by mr-signer", err)
	}

	d.Stop()
	for _, name := range []string{"managedresource-a", "managedresource-b"} { // update and create
		s, err := write(trusted, name, "kind: Namespace")
		if err != nil {
			t.Errorf("trusted write of %s with mr-signer stopped: %v", name, err)
			continue
		}
		if _, err := keys.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s)); err == nil {
			t.Errorf("trusted write of %s with mr-signer stopped carries a valid signature", name)
		}
	}
	for _, name := range []string{"managedresource-a", "managedresource-evil"} {
		if _, err := write(mallory, name, "kind: ClusterRoleBinding"); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
			t.Errorf("untrusted write of %s with mr-signer stopped: %v, want refused", name, err)
		}
	}
	if err := mallory.CoreV1().Secrets(ns).Delete(ctx, "managedresource-a", metav1.DeleteOptions{}); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("untrusted delete with mr-signer stopped: %v, want refused", err)
	}
}
