package mrsigner

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/webhook"
)

// Bootstrap defaults.
const (
	DefaultCASecret      = "mr-signer-webhook-ca"
	DefaultTLSSecret     = "mr-signer-webhook-tls"
	DefaultWebhookConfig = "trellis-mr-signer"
	DefaultService       = "mr-signer"
	DefaultCertValidity  = 90 * 24 * time.Hour
	DefaultCAValidity    = 5 * 365 * 24 * time.Hour
	DefaultCheckPeriod   = time.Minute
	managedByLabel       = "app.kubernetes.io/managed-by"
)

// Bootstrapper makes mr-signer self-sufficient (on the leader): it creates the
// signing key Secret and the verification keys ConfigMap when absent, keeps a
// self-signed CA and a serving certificate for the webhook Service (renewed in the
// last third of their lifetime; a replaced CA stays in the bundle until it
// expires) and writes the CA bundle into the webhook configurations' entries that
// point at the Service, and the trust flags into their trusted-writer and
// untrusted-writer matchConditions. It checks everything at start and every Period.
type Bootstrapper struct {
	Client         kubernetes.Interface
	Namespace      string
	SigningSecret  string // empty: no key bootstrap
	VerificationCM string
	Certificates   bool
	CASecret       string
	TLSSecret      string
	Service        string
	WebhookConfigs []string // names of Mutating- and ValidatingWebhookConfigurations
	ExtraNames     []string // more DNS names or IPs for the certificate; webhooks with a clientConfig.url at one of them get the caBundle too
	// TrustConditions (nil: step off) are the expressions of the webhooks'
	// matchConditions of these names (Trust.TrustConditions), kept in place
	// whether or not Certificates is on.
	TrustConditions map[string]string
	CertValidity    time.Duration
	CAValidity      time.Duration
	Period          time.Duration
	Log             *slog.Logger
	Now             func() time.Time

	metrics *metrics // optional: the CA's expiry
}

// DNSNames are the names the API server uses for the Service.
func (b *Bootstrapper) DNSNames() []string {
	s, ns := b.Service, b.Namespace
	return append([]string{s + "." + ns + ".svc", s + "." + ns + ".svc.cluster.local", s + "." + ns, s}, b.ExtraNames...)
}

// Run reconciles at once and every Period until ctx ends; errors are logged and
// retried with the next period (at most 5s later while failing).
func (b *Bootstrapper) Run(ctx context.Context) error {
	for {
		wait := b.Period
		if err := b.Reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			b.Log.Error("bootstrap failed, retrying", "err", err)
			wait = min(wait, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// Reconcile runs every step once.
func (b *Bootstrapper) Reconcile(ctx context.Context) error {
	var errs []error
	if b.SigningSecret != "" {
		errs = append(errs, b.ensureKeys(ctx))
	}
	if b.TrustConditions != nil {
		errs = append(errs, b.ensureTrustConditions(ctx))
	}
	if b.Certificates {
		// The caBundle (current and replaced CAs) is written before a serving
		// certificate from a new CA is, so the API server trusts it when served.
		ca, bundle, err := b.ensureCA(ctx)
		if err == nil {
			err = b.ensureCABundle(ctx, bundle)
		}
		if err == nil {
			err = b.ensureServing(ctx, ca, bundle)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *Bootstrapper) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

func (b *Bootstrapper) objectMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: b.Namespace, Labels: map[string]string{managedByLabel: Name}}
}

// ensureKeys creates the signing key Secret and the verification ConfigMap when
// absent; existing ones are never changed (rotation is the operator's, see docs).
func (b *Bootstrapper) ensureKeys(ctx context.Context) error {
	secrets := b.Client.CoreV1().Secrets(b.Namespace)
	s, err := secrets.Get(ctx, b.SigningSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return gerr
		}
		der, gerr := x509.MarshalPKCS8PrivateKey(priv)
		if gerr != nil {
			return gerr
		}
		s = &corev1.Secret{ObjectMeta: b.objectMeta(b.SigningSecret), Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}}
		if s, err = secrets.Create(ctx, s, metav1.CreateOptions{}); err == nil {
			b.Log.Info("signing key created", "secret", b.Namespace+"/"+b.SigningSecret, "keyID", secretsig.KeyID(priv.Public().(ed25519.PublicKey)))
		} else if apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, b.SigningSecret, metav1.GetOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("signing key secret: %w", err)
	}
	if b.VerificationCM == "" {
		return nil
	}
	cms := b.Client.CoreV1().ConfigMaps(b.Namespace)
	if _, err := cms.Get(ctx, b.VerificationCM, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		if err != nil {
			return fmt.Errorf("verification keys configmap: %w", err)
		}
		return nil
	}
	// The new ConfigMap holds the signing key's public key.
	data := map[string]string{}
	for _, v := range s.Data {
		if priv, err := secretsig.ParsePrivateKeyPEM(v); err == nil {
			pub := priv.Public().(ed25519.PublicKey)
			der, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				return err
			}
			data[secretsig.KeyID(pub)+".pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			break
		}
	}
	if len(data) == 0 {
		return fmt.Errorf("signing key secret %s/%s holds no Ed25519 private key; not creating %s", b.Namespace, b.SigningSecret, b.VerificationCM)
	}
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: b.objectMeta(b.VerificationCM), Data: data}, metav1.CreateOptions{})
	if err == nil {
		b.Log.Info("verification keys created", "configmap", b.Namespace+"/"+b.VerificationCM)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("verification keys configmap: %w", err)
	}
	return nil
}

// ensureCA keeps the CA valid and returns it with the CA bundle (current CA
// first, then replaced CAs that have not expired).
func (b *Bootstrapper) ensureCA(ctx context.Context) (*webhook.KeyPair, []byte, error) {
	now := b.now()
	secrets := b.Client.CoreV1().Secrets(b.Namespace)

	caSecret, err := secrets.Get(ctx, b.CASecret, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("CA secret: %w", err)
	}
	var ca *webhook.KeyPair
	var previous []*x509.Certificate
	if err == nil {
		ca, err = webhook.ParseKeyPair(caSecret.Data["ca.crt"], caSecret.Data["ca.key"])
		if err != nil {
			b.Log.Error("CA secret unusable, replacing it", "secret", b.Namespace+"/"+b.CASecret, "err", err)
			ca = nil
		}
		previous, _ = webhook.CertificatesPEM(caSecret.Data["ca.crt"])
	}
	if ca == nil || webhook.NeedsRenewal(ca.Cert, nil, nil, now) != "" {
		next, err := webhook.NewCA(Name+"-webhook-ca", now, b.CAValidity)
		if err != nil {
			return nil, nil, err
		}
		bundle := webhook.Bundle(now, append([]*x509.Certificate{next.Cert}, previous...)...)
		data := map[string][]byte{"ca.crt": bundle, "ca.key": next.KeyPEM}
		if caSecret == nil || caSecret.Name == "" {
			s := &corev1.Secret{ObjectMeta: b.objectMeta(b.CASecret), Type: corev1.SecretTypeOpaque, Data: data}
			if caSecret, err = secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
				return nil, nil, fmt.Errorf("create CA secret: %w", err)
			}
		} else {
			caSecret.Data = data
			if caSecret, err = secrets.Update(ctx, caSecret, metav1.UpdateOptions{}); err != nil {
				return nil, nil, fmt.Errorf("update CA secret: %w", err)
			}
		}
		b.Log.Info("webhook CA issued", "secret", b.Namespace+"/"+b.CASecret, "notAfter", next.Cert.NotAfter)
		ca = next
		ca.CertPEM = bundle
	}
	all, _ := webhook.CertificatesPEM(ca.CertPEM)
	bundle := webhook.Bundle(now, append([]*x509.Certificate{ca.Cert}, all...)...)
	if !bytes.Equal(caSecret.Data["ca.crt"], bundle) {
		// A replaced CA expired: it leaves the bundle.
		caSecret.Data["ca.crt"] = bundle
		if _, err := secrets.Update(ctx, caSecret, metav1.UpdateOptions{}); err != nil {
			return nil, nil, fmt.Errorf("update CA secret: %w", err)
		}
	}
	if b.metrics != nil {
		b.metrics.certExpiry.WithLabelValues(certCA).Set(float64(ca.Cert.NotAfter.Unix()))
	}
	return ca, bundle, nil
}

// ensureServing keeps the serving certificate valid, issued by ca, with bundle as its ca.crt.
func (b *Bootstrapper) ensureServing(ctx context.Context, ca *webhook.KeyPair, bundle []byte) error {
	now := b.now()
	secrets := b.Client.CoreV1().Secrets(b.Namespace)
	tlsSecret, err := secrets.Get(ctx, b.TLSSecret, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("serving certificate secret: %w", err)
	}
	reason := "absent"
	if err == nil {
		if kp, err := webhook.ParseKeyPair(tlsSecret.Data[corev1.TLSCertKey], tlsSecret.Data[corev1.TLSPrivateKeyKey]); err != nil {
			reason = "unusable: " + err.Error()
		} else {
			reason = webhook.NeedsRenewal(kp.Cert, ca.Cert, b.DNSNames(), now)
		}
		if reason == "" && !bytes.Equal(tlsSecret.Data["ca.crt"], bundle) {
			reason = "CA bundle changed"
		}
	}
	if reason == "" {
		return nil
	}
	kp, err := webhook.IssueServing(ca, b.DNSNames(), now, b.CertValidity)
	if err != nil {
		return err
	}
	data := map[string][]byte{corev1.TLSCertKey: kp.CertPEM, corev1.TLSPrivateKeyKey: kp.KeyPEM, "ca.crt": bundle}
	if tlsSecret == nil || tlsSecret.Name == "" {
		s := &corev1.Secret{ObjectMeta: b.objectMeta(b.TLSSecret), Type: corev1.SecretTypeTLS, Data: data}
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create serving certificate secret: %w", err)
		}
	} else {
		tlsSecret.Data = data
		if _, err := secrets.Update(ctx, tlsSecret, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("update serving certificate secret: %w", err)
		}
	}
	b.Log.Info("serving certificate issued", "secret", b.Namespace+"/"+b.TLSSecret, "reason", reason, "notAfter", kp.Cert.NotAfter)
	return nil
}

// ensureCABundle writes bundle into every webhook of the named configurations
// whose clientConfig points at the Service. Absent configurations are skipped.
func (b *Bootstrapper) ensureCABundle(ctx context.Context, bundle []byte) error {
	return b.updateWebhooks(ctx, "caBundle written", func(cc *admissionregistrationv1.WebhookClientConfig, _ []admissionregistrationv1.MatchCondition) bool {
		if bytes.Equal(cc.CABundle, bundle) {
			return false
		}
		cc.CABundle = bundle
		return true
	})
}

// ensureTrustConditions writes the expressions of TrustConditions into the
// matchConditions of those names in every webhook of the named configurations
// whose clientConfig points at the Service: the trust flags are the one source
// of truth of who is trusted, for mr-signer and for the API server's choice of
// the webhook entry (and so of its failurePolicy) while mr-signer is down. A
// changed expression is put back at the next check. Absent configurations, and
// entries without such a condition, are left alone.
func (b *Bootstrapper) ensureTrustConditions(ctx context.Context) error {
	return b.updateWebhooks(ctx, "trust matchConditions written", func(_ *admissionregistrationv1.WebhookClientConfig, mcs []admissionregistrationv1.MatchCondition) bool {
		changed := false
		for i := range mcs {
			if e, ok := b.TrustConditions[mcs[i].Name]; ok && mcs[i].Expression != e {
				mcs[i].Expression, changed = e, true
			}
		}
		return changed
	})
}

// updateWebhooks calls change on every webhook of the named mutating and
// validating configurations whose clientConfig points at the Service (or at
// ExtraNames) and updates a configuration when change reports a change.
// Absent configurations are skipped.
func (b *Bootstrapper) updateWebhooks(ctx context.Context, msg string, change func(*admissionregistrationv1.WebhookClientConfig, []admissionregistrationv1.MatchCondition) bool) error {
	ours := func(c admissionregistrationv1.WebhookClientConfig) bool {
		if c.Service != nil {
			return c.Service.Namespace == b.Namespace && c.Service.Name == b.Service
		}
		if c.URL != nil {
			if u, err := url.Parse(*c.URL); err == nil {
				return slices.Contains(b.ExtraNames, u.Hostname())
			}
		}
		return false
	}
	var errs []error
	api := b.Client.AdmissionregistrationV1()
	for _, name := range b.WebhookConfigs {
		mwc, err := api.MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			changed := false
			for i := range mwc.Webhooks {
				if w := &mwc.Webhooks[i]; ours(w.ClientConfig) && change(&w.ClientConfig, w.MatchConditions) {
					changed = true
				}
			}
			if changed {
				if _, err := api.MutatingWebhookConfigurations().Update(ctx, mwc, metav1.UpdateOptions{}); err != nil {
					errs = append(errs, fmt.Errorf("mutatingwebhookconfiguration %s: %w", name, err))
				} else {
					b.Log.Info("webhook configuration updated", "change", msg, "mutatingwebhookconfiguration", name)
				}
			}
		case !apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("mutatingwebhookconfiguration %s: %w", name, err))
		}
		vwc, err := api.ValidatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
		switch {
		case err == nil:
			changed := false
			for i := range vwc.Webhooks {
				if w := &vwc.Webhooks[i]; ours(w.ClientConfig) && change(&w.ClientConfig, w.MatchConditions) {
					changed = true
				}
			}
			if changed {
				if _, err := api.ValidatingWebhookConfigurations().Update(ctx, vwc, metav1.UpdateOptions{}); err != nil {
					errs = append(errs, fmt.Errorf("validatingwebhookconfiguration %s: %w", name, err))
				} else {
					b.Log.Info("webhook configuration updated", "change", msg, "validatingwebhookconfiguration", name)
				}
			}
		case !apierrors.IsNotFound(err):
			errs = append(errs, fmt.Errorf("validatingwebhookconfiguration %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// watchServingSecret keeps store on the content of the named kubernetes.io/tls
// Secret (watched by name), on every replica.
func watchServingSecret(ctx context.Context, client kubernetes.Interface, namespace, name string, store *webhook.CertStore, log *slog.Logger, m *metrics) error {
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
		}))
	inf := f.Core().V1().Secrets().Informer()
	set := func(obj any) {
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		if err := store.Set(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]); err != nil {
			log.Error("serving certificate secret unusable, keeping the previous one", "secret", namespace+"/"+name, "err", err)
			return
		}
		m.setCertExpiry(certServing, s.Data[corev1.TLSCertKey])
		log.Info("serving certificate loaded", "secret", namespace+"/"+name, "resourceVersion", s.ResourceVersion)
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    set,
		UpdateFunc: func(_, obj any) { set(obj) },
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	<-ctx.Done()
	f.Shutdown()
	return nil
}
