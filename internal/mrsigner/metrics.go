package mrsigner

import (
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/webhook"
)

// Webhooks (the label of admission_requests_total and admission_duration_seconds).
const (
	webhookMutate                  = "mutate"
	webhookValidate                = "validate"
	webhookValidateManagedResource = "validate_managed_resource"
)

// Actions in the admission_requests_total metric.
const (
	actionSigned   = "signed"
	actionStripped = "stripped"
	actionAllowed  = "allowed"
	actionDenied   = "denied"
	actionError    = "error"
)

// metrics are mr-signer's Prometheus series.
type metrics struct {
	admissions      *prometheus.CounterVec
	admissionTime   *prometheus.HistogramVec
	verifications   *prometheus.CounterVec
	quarantines     *prometheus.CounterVec
	lifts           prometheus.Counter
	keys            *prometheus.GaugeVec
	keyReloads      *prometheus.CounterVec
	leader          prometheus.Gauge
	reconcileErrors prometheus.Counter
	certExpiry      *prometheus.GaugeVec
}

func newMetrics(namespace string) *metrics {
	return &metrics{
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "admission_requests_total",
			Help: "Admission requests by webhook (mutate, validate, validate-managedresource) and action (signed, stripped, allowed, denied, error).",
		}, []string{"webhook", "action"}),
		admissionTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "admission_duration_seconds",
			Help:    "Time to decide an admission request, from the decoded body to the encoded response, by webhook.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1},
		}, []string{"webhook"}),
		verifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "verifications_total",
			Help: "Secrets verified by the controller, by result (valid, signature_missing, signature_malformed, unknown_key, signature_invalid, secret_not_found, error).",
		}, []string{"result"}),
		quarantines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "quarantines_total",
			Help: "ManagedResources put into quarantine (annotation resources.gardener.cloud/ignore) by reason (the results of verifications_total but valid).",
		}, []string{"reason"}),
		lifts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "quarantine_lifts_total",
			Help: "Quarantines lifted because every referenced Secret verified again.",
		}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "keys",
			Help: "Keys loaded by kind: signing (0 or 1) and verification (including the signing key's public key).",
		}, []string{"kind"}),
		keyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "key_reloads_total",
			Help: "Reloads of the signing key Secret and verification keys ConfigMap by result (success, error).",
		}, []string{"result"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "leader",
			Help: "Whether this replica leads and runs the verifying controller (1) or follows (0).",
		}),
		reconcileErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconcile_errors_total",
			Help: "ManagedResource reconciles that failed (API errors) and were retried with backoff.",
		}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "certificate_expiry_timestamp_seconds",
			Help: "NotAfter (Unix seconds) by certificate: serving (the webhook certificate served now) and ca (the bootstrap CA, on the leader with --bootstrap.certificates).",
		}, []string{"certificate"}),
	}
}

// labelValue is a verification result (secretsig.Reason, CamelCase as in the
// quarantine annotation and Events) as a label value: snake_case, like every
// trellis label value (SignatureMissing -> signature_missing).
func labelValue(reason string) string {
	var b strings.Builder
	for i, r := range reason {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// quarantinedGauge reads count (quarantined ManagedResources in the informer's
// cache) at scrape time.
func quarantinedGauge(namespace string, count func() int) prometheus.GaugeFunc {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace, Name: "quarantined_managed_resources",
		Help: "ManagedResources in the watched namespaces that carry the trellis.dev/quarantined annotation now.",
	}, func() float64 { return float64(count()) })
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.admissions, m.admissionTime, m.verifications, m.quarantines, m.lifts, m.keys, m.keyReloads, m.leader, m.reconcileErrors, m.certExpiry}
}

// Values of the certificate label of certificate_expiry_timestamp_seconds.
const (
	certServing = "serving"
	certCA      = "ca"
)

// setCertExpiry records the NotAfter of the first certificate in certPEM; it
// reports whether certPEM held one.
func (m *metrics) setCertExpiry(which string, certPEM []byte) bool {
	certs, err := webhook.CertificatesPEM(certPEM)
	if err != nil || len(certs) == 0 {
		return false
	}
	m.certExpiry.WithLabelValues(which).Set(float64(certs[0].NotAfter.Unix()))
	return true
}
