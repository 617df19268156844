package mrsigner

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trellis-garden/trellis/internal/kube"
)

// Name is the binary's name.
const Name = "mr-signer"

// Defaults.
const (
	DefaultSigningKeySecret   = "mr-signer-signing-key"
	DefaultVerificationKeysCM = "mr-signer-verification-keys"
	DefaultWebhookAddress     = ":9443"
	DefaultResyncPeriod       = 10 * time.Minute
	GardenerReferenceLabel    = "resources.gardener.cloud/garbage-collectable-reference=true"
	TrellisScopeLabel         = "trellis.dev/managed-resource-secret=true"
	defaultKeysNamespace      = "trellis-mr-signer"
)

// Options are mr-signer's own flags.
type Options struct {
	WebhookAddress  string
	CertFile        string
	KeyFile         string
	KeysNamespace   string
	SigningSecret   string
	VerificationCM  string
	TrustedUsers    []string
	TrustedGroups   []string
	TrustedSAs      []string
	ScopeLabels     []string
	DenyUntrusted   bool
	EnableVerifier  bool
	WatchNamespace  string
	ResyncPeriod    time.Duration
	SecretsSelector string
	TLSSecret       string

	BootstrapKeys           bool
	BootstrapCerts          bool
	BootstrapCASecret       string
	BootstrapService        string
	BootstrapWebhookConfigs []string
	BootstrapExtraNames     []string
	BootstrapCertValidity   time.Duration
	BootstrapCAValidity     time.Duration
	BootstrapPeriod         time.Duration

	Kube           kube.ClientOptions
	LeaderElection kube.LeaderElectionOptions

	trust     Trust
	selectors []labels.Selector
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	ns := os.Getenv(kube.PodNamespaceEnv)
	if ns == "" {
		ns = defaultKeysNamespace
	}
	return &Options{KeysNamespace: ns, LeaderElection: kube.NewLeaderElectionOptions(Name)}
}

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.WebhookAddress, "webhook.listen-address", DefaultWebhookAddress, "Address of the HTTPS admission webhook server (paths /mutate and /validate); empty disables it.")
	fs.StringVar(&o.CertFile, "webhook.tls-cert-file", "/etc/mr-signer/tls/tls.crt", "Serving certificate (PEM) of the webhook server; re-read within a second when the file changes.")
	fs.StringVar(&o.KeyFile, "webhook.tls-key-file", "/etc/mr-signer/tls/tls.key", "Private key (PEM) of the serving certificate; re-read with it.")
	fs.StringVar(&o.TLSSecret, "webhook.tls-secret", "", "Serve the certificate of this kubernetes.io/tls Secret in --keys.namespace, watched through the API (no volume, no kubelet delay), instead of --webhook.tls-cert-file/--webhook.tls-key-file; not ready until it exists.")
	fs.BoolVar(&o.DenyUntrusted, "webhook.deny-untrusted", false, "Prevention: deny identities that are not trusted every create, update or delete of a Secret a ManagedResource uses (/validate) and every create or spec change of a ManagedResource (/validate-managedresource), instead of only stripping signatures on /mutate.")
	fs.StringVar(&o.KeysNamespace, "keys.namespace", o.KeysNamespace, "Namespace of the signing key Secret and the verification keys ConfigMap (default $POD_NAMESPACE or "+defaultKeysNamespace+").")
	fs.StringVar(&o.SigningSecret, "keys.signing-secret", DefaultSigningKeySecret, "Secret holding the Ed25519 signing key (PKCS#8 PEM, any data key); reloaded on change. Empty: this replica never signs.")
	fs.StringVar(&o.VerificationCM, "keys.verification-configmap", DefaultVerificationKeysCM, "ConfigMap whose values hold the Ed25519 verification public keys (PKIX PEM, several per value allowed); reloaded on change. The signing key's public key always verifies too.")
	fs.StringSliceVar(&o.TrustedUsers, "trust.users", nil, "User names whose writes of in-scope Secrets are signed (comma-separated).")
	fs.StringSliceVar(&o.TrustedGroups, "trust.groups", nil, "Groups whose members' writes of in-scope Secrets are signed (comma-separated).")
	fs.StringSliceVar(&o.TrustedSAs, "trust.service-accounts", nil, "Service accounts, as namespace:name, whose writes of in-scope Secrets are signed (comma-separated).")
	fs.StringSliceVar(&o.ScopeLabels, "scope.label-selectors", []string{GardenerReferenceLabel, TrellisScopeLabel}, "Label selectors of Secrets to sign; a Secret matching any of them, or named by a ManagedResource in its namespace, is in scope.")
	fs.BoolVar(&o.EnableVerifier, "verifier.enabled", true, "Run the verifying controller (leader-elected with --leader-elect) that quarantines ManagedResources with missing or invalid signatures.")
	fs.StringVar(&o.WatchNamespace, "verifier.namespace", "", "Only watch ManagedResources and Secrets in this namespace (default: all namespaces).")
	fs.StringVar(&o.SecretsSelector, "verifier.secret-label-selector", "", "Only cache Secrets matching this label selector (default: all); a referenced Secret outside the cache is read directly.")
	fs.DurationVar(&o.ResyncPeriod, "verifier.resync-period", DefaultResyncPeriod, "How often every ManagedResource is verified again even without a change.")
	fs.BoolVar(&o.BootstrapKeys, "bootstrap.keys", false, "On the leader: create the signing key Secret (a new Ed25519 key) and the verification keys ConfigMap (its public key) when they are absent; existing ones are never changed.")
	fs.BoolVar(&o.BootstrapCerts, "bootstrap.certificates", false, "On the leader: keep a self-signed CA (--bootstrap.ca-secret) and the serving certificate (--webhook.tls-secret) for the Service valid, renewed in the last third of their lifetime, and write the CA bundle into the webhook configurations.")
	fs.StringVar(&o.BootstrapCASecret, "bootstrap.ca-secret", DefaultCASecret, "Secret in --keys.namespace holding the webhook CA (ca.crt: current CA first, then replaced ones until they expire; ca.key).")
	fs.StringVar(&o.BootstrapService, "bootstrap.service", DefaultService, "Service of the webhook in --keys.namespace: the serving certificate's DNS names and the webhook entries that get the caBundle.")
	fs.StringSliceVar(&o.BootstrapWebhookConfigs, "bootstrap.webhook-configurations", []string{DefaultWebhookConfig}, "Mutating and validating webhook configurations (by name) whose entries for --bootstrap.service get the caBundle; absent ones are skipped.")
	fs.StringSliceVar(&o.BootstrapExtraNames, "bootstrap.extra-names", nil, "More DNS names or IP addresses for the serving certificate (e.g. a webhook reached by URL outside the cluster); webhook entries with a clientConfig.url at one of them get the caBundle too.")
	fs.DurationVar(&o.BootstrapCertValidity, "bootstrap.cert-validity", DefaultCertValidity, "Lifetime of a serving certificate.")
	fs.DurationVar(&o.BootstrapCAValidity, "bootstrap.ca-validity", DefaultCAValidity, "Lifetime of a CA.")
	fs.DurationVar(&o.BootstrapPeriod, "bootstrap.check-period", DefaultCheckPeriod, "How often the leader checks keys, certificates and caBundles again.")
	o.Kube.AddFlags(fs)
	o.LeaderElection.AddFlags(fs)
}

func (o *Options) Complete() error {
	var sas [][2]string
	for _, sa := range o.TrustedSAs {
		if ns, name, ok := strings.Cut(sa, ":"); ok && ns != "" && name != "" {
			sas = append(sas, [2]string{ns, name})
		}
	}
	o.trust = NewTrust(o.TrustedUsers, o.TrustedGroups, sas)
	o.selectors = nil
	for _, s := range o.ScopeLabels {
		if sel, err := labels.Parse(s); err == nil {
			o.selectors = append(o.selectors, sel)
		}
	}
	return o.LeaderElection.Complete()
}

func (o *Options) Validate() error {
	var errs []error
	if o.WebhookAddress != "" {
		if _, _, err := net.SplitHostPort(o.WebhookAddress); err != nil {
			errs = append(errs, fmt.Errorf("--webhook.listen-address: %w", err))
		}
		if o.TLSSecret == "" && (o.CertFile == "" || o.KeyFile == "") {
			errs = append(errs, errors.New("--webhook.tls-secret, or --webhook.tls-cert-file and --webhook.tls-key-file: required with --webhook.listen-address"))
		}
	}
	if o.WebhookAddress == "" && !o.EnableVerifier {
		errs = append(errs, errors.New("--webhook.listen-address is empty and --verifier.enabled=false: nothing to do"))
	}
	if o.KeysNamespace == "" {
		errs = append(errs, errors.New("--keys.namespace: required"))
	}
	if o.SigningSecret == "" && o.VerificationCM == "" {
		errs = append(errs, errors.New("--keys.signing-secret and --keys.verification-configmap: at least one is required"))
	}
	// The names become CEL string literals in the webhooks' matchConditions (Trust.Expression).
	for _, f := range []struct {
		flag string
		vals []string
	}{{"--trust.users", o.TrustedUsers}, {"--trust.groups", o.TrustedGroups}, {"--trust.service-accounts", o.TrustedSAs}} {
		for _, v := range f.vals {
			if !utf8.ValidString(v) {
				errs = append(errs, fmt.Errorf("%s: %q is not valid UTF-8", f.flag, v))
			}
		}
	}
	for _, sa := range o.TrustedSAs {
		if ns, name, ok := strings.Cut(sa, ":"); !ok || ns == "" || name == "" {
			errs = append(errs, fmt.Errorf("--trust.service-accounts: %q is not namespace:name", sa))
		}
	}
	for _, s := range o.ScopeLabels {
		if _, err := labels.Parse(s); err != nil {
			errs = append(errs, fmt.Errorf("--scope.label-selectors: %q: %w", s, err))
		}
	}
	if _, err := labels.Parse(o.SecretsSelector); err != nil {
		errs = append(errs, fmt.Errorf("--verifier.secret-label-selector: %w", err))
	}
	if o.BootstrapCerts && o.TLSSecret == "" {
		errs = append(errs, errors.New("--bootstrap.certificates: needs --webhook.tls-secret (the Secret to issue)"))
	}
	if o.BootstrapKeys && o.SigningSecret == "" {
		errs = append(errs, errors.New("--bootstrap.keys: needs --keys.signing-secret"))
	}
	if o.BootstrapCerts && (o.BootstrapCASecret == "" || o.BootstrapService == "") {
		errs = append(errs, errors.New("--bootstrap.ca-secret and --bootstrap.service: required with --bootstrap.certificates"))
	}
	for name, d := range map[string]time.Duration{"--bootstrap.cert-validity": o.BootstrapCertValidity, "--bootstrap.ca-validity": o.BootstrapCAValidity, "--bootstrap.check-period": o.BootstrapPeriod} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", name, d))
		}
	}
	if o.BootstrapCerts && o.BootstrapCertValidity > o.BootstrapCAValidity {
		errs = append(errs, errors.New("--bootstrap.cert-validity: longer than --bootstrap.ca-validity"))
	}
	if o.ResyncPeriod <= 0 {
		errs = append(errs, fmt.Errorf("--verifier.resync-period: must be positive, got %s", o.ResyncPeriod))
	}
	if err := o.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.LeaderElection.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
