package wggateway

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Source produces the gateway's backends: Kubernetes Services (KubeSource) or a
// YAML file (FileSource).
type Source interface {
	// Run calls update with the complete current list, sorted by Name, once after
	// the initial sync or load (even when empty) and then every time the list
	// changes; never twice in a row with the same list. update is called from one
	// goroutine at a time and owns the slice it gets. Run returns nil when ctx
	// ends, or an error when the source cannot start.
	Run(ctx context.Context, update func([]Backend)) error
}

// Values of the source label on the backend source metrics.
const (
	sourceLabelKube = "kubernetes"
	sourceLabelFile = "file"
)

// skipReason says why a backend was skipped; a short static word, used as the
// reason label of backend_problems_total.
type skipReason string

const (
	skipMissingKey   skipReason = "missing_key"
	skipInvalidKey   skipReason = "invalid_key"
	skipNoAddress    skipReason = "no_address"
	skipInvalidPort  skipReason = "invalid_port"
	skipDuplicateKey skipReason = "duplicate_key"
	skipInvalidEntry skipReason = "invalid_entry"
)

// allSkipReasons lists every reason, so the counters exist at 0 from the start.
var allSkipReasons = []skipReason{skipMissingKey, skipInvalidKey, skipNoAddress, skipInvalidPort, skipDuplicateKey, skipInvalidEntry}

// sourceProblem is why one backend is skipped. It is comparable, so a problem is
// reported again only when it changes.
type sourceProblem struct {
	reason skipReason
	detail string
}

// SourceMetrics are the metrics of the backend sources. All methods are safe on a
// nil *SourceMetrics (no metrics).
type SourceMetrics struct {
	invalid      *prometheus.GaugeVec
	invalidTotal *prometheus.CounterVec
	updates      *prometheus.CounterVec
	errors       *prometheus.CounterVec
}

// NewSourceMetrics creates the backend source metrics under namespace (the daemon's,
// e.g. trellis_wg_gateway) and registers them on reg (nil: not registered). Calling
// it twice with the same registry returns metrics sharing the registered series. An
// invalid namespace is a programming error and panics, as MustRegister does.
func NewSourceMetrics(reg prometheus.Registerer, namespace string) *SourceMetrics {
	m := &SourceMetrics{
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace,
			Name:      "invalid_backends",
			Help:      "Backend entries (Services or file entries) currently skipped because they are invalid.",
		}, []string{"source"}),
		invalidTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "backend_problems_total",
			Help:      "Times a backend entry was found invalid (counted when the problem appears or changes), by reason.",
		}, []string{"source", "reason"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "backend_source_updates_total",
			Help:      "Backend lists handed to the gateway by a source (the first one and every change).",
		}, []string{"source"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace,
			Name:      "backend_source_errors_total",
			Help:      "Failures of a backend source (file unreadable or invalid, list/watch errors); the last good list stays in use.",
		}, []string{"source"}),
	}
	if reg == nil {
		return m
	}
	m.invalid = registerOrExisting(reg, m.invalid)
	m.invalidTotal = registerOrExisting(reg, m.invalidTotal)
	m.updates = registerOrExisting(reg, m.updates)
	m.errors = registerOrExisting(reg, m.errors)
	return m
}

func registerOrExisting[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("wggateway: register backend source metrics: %v", err))
}

// init creates a source's series at 0, so rates and alerts work before the first event.
func (m *SourceMetrics) init(source string) {
	if m == nil {
		return
	}
	m.invalid.WithLabelValues(source).Set(0)
	for _, r := range allSkipReasons {
		m.invalidTotal.WithLabelValues(source, string(r))
	}
	m.updates.WithLabelValues(source)
	m.errors.WithLabelValues(source)
}

func (m *SourceMetrics) setInvalid(source string, n int) {
	if m != nil {
		m.invalid.WithLabelValues(source).Set(float64(n))
	}
}

func (m *SourceMetrics) invalidSeen(source string, r skipReason) {
	if m != nil {
		m.invalidTotal.WithLabelValues(source, string(r)).Inc()
	}
}

func (m *SourceMetrics) updated(source string) {
	if m != nil {
		m.updates.WithLabelValues(source).Inc()
	}
}

func (m *SourceMetrics) failed(source string) {
	if m != nil {
		m.errors.WithLabelValues(source).Inc()
	}
}

// problemTracker remembers which backends are skipped and why. It logs and counts a
// problem when it appears or changes, not on every recomputation, so a resync or a
// poll does not repeat the same complaint.
type problemTracker struct {
	source  string
	nameKey string // log key of the backend's name: "service" or "backend"
	log     *slog.Logger
	metrics *SourceMetrics
	current map[string]sourceProblem
}

// set replaces the current problems and returns the names, sorted, whose problem is
// new or changed.
func (t *problemTracker) set(problems map[string]sourceProblem) []string {
	var changed []string
	for _, name := range sortedKeys(problems) {
		p := problems[name]
		if old, ok := t.current[name]; ok && old == p {
			continue
		}
		changed = append(changed, name)
		t.metrics.invalidSeen(t.source, p.reason)
		t.log.Warn("skipping invalid backend", "source", t.source, t.nameKey, name, "reason", string(p.reason), "detail", p.detail)
	}
	for _, name := range sortedKeys(t.current) {
		if _, ok := problems[name]; !ok {
			t.log.Info("backend no longer skipped", "source", t.source, t.nameKey, name)
		}
	}
	t.current = problems
	t.metrics.setInvalid(t.source, len(problems))
	return changed
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// dropDuplicateKeys keeps, for each public key, the backend first by name; the
// gateway routes by key, so two backends with one key are ambiguous and the later
// ones are skipped. backends must be sorted by Name.
func dropDuplicateKeys(backends []Backend, problems map[string]sourceProblem) []Backend {
	owner := make(map[[32]byte]string, len(backends))
	kept := make([]Backend, 0, len(backends))
	for _, b := range backends {
		if first, ok := owner[b.PublicKey]; ok {
			problems[b.Name] = sourceProblem{
				reason: skipDuplicateKey,
				detail: "public key already used by " + first + " (the first by name is kept)",
			}
			continue
		}
		owner[b.PublicKey] = b.Name
		kept = append(kept, b)
	}
	return kept
}

func sortBackends(backends []Backend) {
	slices.SortFunc(backends, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) })
}

// publicKeyLen is the length of a WireGuard public key in standard base64 as
// `wg pubkey` prints it: 32 bytes, 43 characters and one "=".
const publicKeyLen = 44

// parsePublicKey decodes a WireGuard public key as `wg pubkey` prints it. Surrounding
// white space (a trailing newline) is ignored; anything else must be exactly 44
// characters of standard, padded base64 encoding 32 bytes, not all zero.
func parsePublicKey(s string) ([32]byte, error) {
	var key [32]byte
	s = strings.TrimSpace(s)
	if s == "" {
		return key, errors.New("public key is empty")
	}
	if len(s) != publicKeyLen {
		return key, fmt.Errorf("public key must be %d characters of base64 (as `wg pubkey` prints it), got %d", publicKeyLen, len(s))
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return key, fmt.Errorf("public key is not standard base64: %w", err)
	}
	if len(raw) != len(key) {
		return key, fmt.Errorf("public key must decode to %d bytes, got %d", len(key), len(raw))
	}
	copy(key[:], raw)
	if key == ([32]byte{}) {
		return key, errors.New("public key is all zeros")
	}
	return key, nil
}

// orDiscard returns log, or a logger that drops everything when log is nil.
func orDiscard(log *slog.Logger) *slog.Logger {
	if log != nil {
		return log
	}
	return slog.New(slog.DiscardHandler)
}
