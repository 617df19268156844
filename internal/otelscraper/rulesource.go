package otelscraper

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/kube"
)

// Event reasons on the rules ConfigMap.
const (
	// ReasonInvalidFilterRules: the rules under the key do not parse; the
	// scraper keeps the last good rules. Once per distinct error.
	ReasonInvalidFilterRules = "InvalidFilterRules"
	// ReasonFilterRulesApplied: new rules from the key are in use.
	ReasonFilterRulesApplied = "FilterRulesApplied"
)

// maxEventMessage keeps an Event's message within what the API server accepts.
const maxEventMessage = 1000

// RuleSource follows one key of one ConfigMap and keeps the compiled filter rules
// current without a restart. Until the ConfigMap has been read, and whenever the
// ConfigMap or its key is missing, the built-in DefaultRules apply. Rules that do
// not parse are reported (log line, metrics, a Warning Event on the ConfigMap)
// and the last good rules stay in use.
//
// It needs get, list and watch on that ConfigMap (RBAC resourceNames works: the
// watch selects it by metadata.name), and create and patch on Events in its
// namespace when a recorder is given.
type RuleSource struct {
	client               kubernetes.Interface
	namespace, name, key string
	recorder             record.EventRecorder
	log                  *slog.Logger
	metrics              *ruleMetrics
	current              atomic.Pointer[Rules]
	synced               atomic.Bool
	now                  func() time.Time
	configMapDescription string
}

// NewRuleSource returns a source for key in ConfigMap namespace/name. client nil
// means no API: the defaults apply for good. recorder may be nil (no Events), log
// may be nil, reg may be nil (metrics not registered); metricNamespace prefixes the
// metrics (trellis_otel_shoot_scraper).
func NewRuleSource(client kubernetes.Interface, namespace, name, key string, recorder record.EventRecorder, log *slog.Logger, reg prometheus.Registerer, metricNamespace string) *RuleSource {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &RuleSource{
		client:               client,
		namespace:            namespace,
		name:                 name,
		key:                  key,
		recorder:             recorder,
		log:                  log,
		metrics:              newRuleMetrics(reg, metricNamespace),
		now:                  time.Now,
		configMapDescription: namespace + "/" + name,
	}
	s.current.Store(DefaultRules())
	s.metrics.initial(s.now())
	return s
}

// Current returns the rules in use; never nil.
func (s *RuleSource) Current() *Rules { return s.current.Load() }

// HasSynced reports whether the ConfigMap has been read once (or there is no
// API); a readiness check.
func (s *RuleSource) HasSynced() bool { return s.synced.Load() }

// Run watches the ConfigMap until ctx ends and applies each change. List and watch
// failures are retried by the informer (and logged); Run returns nil when ctx
// ends. Run must be called once.
func (s *RuleSource) Run(ctx context.Context) error {
	if s.client == nil {
		s.synced.Store(true)
		<-ctx.Done()
		return nil
	}
	// One ConfigMap, no periodic resync: every change arrives as an event.
	factory := informers.NewSharedInformerFactoryWithOptions(s.client, 0,
		informers.WithNamespace(s.namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.name).String()
		}))
	informer := factory.Core().V1().ConfigMaps().Informer()
	changed := kube.NewNotifier()
	if err := changed.Watch(informer); err != nil {
		return err
	}
	if err := informer.SetWatchErrorHandlerWithContext(s.watchError); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	// Shutdown waits for the informer's goroutines, which end with ctx.
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		return nil // ctx ended before the first list
	}

	st := &sourceState{}
	s.reconcile(st, informer.GetStore())
	s.synced.Store(true)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed.C():
			s.reconcile(st, informer.GetStore())
		}
	}
}

// sourceState is what Run's goroutine remembers between changes.
type sourceState struct {
	seen bool
	last ruleInput
	// reported is the error last sent as an Event, so an unchanged error is not
	// reported again; cleared when good rules apply.
	reported string
}

// ruleInput is what the rules depend on: whether the ConfigMap and the key exist,
// and the key's content.
type ruleInput struct {
	exists, present bool
	data            string
}

// reconcile reads the ConfigMap from the cache and applies it when what matters
// changed.
func (s *RuleSource) reconcile(st *sourceState, store cache.Store) {
	var cm *corev1.ConfigMap
	in := ruleInput{}
	if obj, exists, _ := store.GetByKey(s.namespace + "/" + s.name); exists {
		cm, in.exists = obj.(*corev1.ConfigMap), true
		if v, ok := cm.Data[s.key]; ok {
			in.data, in.present = v, true
		} else if b, ok := cm.BinaryData[s.key]; ok {
			in.data, in.present = string(b), true
		}
	}
	if st.seen && in == st.last {
		return // labels, annotations or other keys changed
	}
	st.seen, st.last = true, in

	// Observers (tests, readiness) see the log, the Event and the metrics of a
	// change once they see its rules, or its reload counter for errors.
	if !in.present {
		reason := "configMapNotFound"
		if in.exists {
			reason = "keyNotFound"
		}
		st.reported = ""
		s.log.Info("filter rules not found, using the built-in defaults", "configMap", s.configMapDescription, "key", s.key, "reason", reason)
		s.metrics.applied(s.now(), true)
		s.current.Store(DefaultRules())
		return
	}
	rules, err := ParseRules([]byte(in.data))
	if err != nil {
		msg := err.Error()
		s.log.Error("invalid filter rules, keeping the last good rules", "configMap", s.configMapDescription, "key", s.key, "err", msg)
		if msg != st.reported {
			st.reported = msg
			s.event(cm, corev1.EventTypeWarning, ReasonInvalidFilterRules,
				"Filter rules in key "+s.key+" not applied, the last good rules stay in use: "+msg)
		}
		s.metrics.failed()
		return
	}
	st.reported = ""
	jobs := rules.Jobs()
	s.log.Info("filter rules applied", "configMap", s.configMapDescription, "key", s.key, "jobs", jobs)
	s.event(cm, corev1.EventTypeNormal, ReasonFilterRulesApplied,
		"Filter rules in key "+s.key+" applied; jobs with own rules: "+strings.Join(jobs, ", "))
	s.metrics.applied(s.now(), false)
	s.current.Store(rules)
}

func (s *RuleSource) event(cm *corev1.ConfigMap, eventType, reason, msg string) {
	if s.recorder == nil || cm == nil {
		return
	}
	s.recorder.Event(cm, eventType, reason, truncate(msg, maxEventMessage))
}

// truncate shortens s to at most n bytes without splitting a UTF-8 character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = " ..."
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// watchError logs a failed list or watch; the informer retries with backoff.
// Expired watches and closed connections are routine and logged at debug level.
func (s *RuleSource) watchError(ctx context.Context, _ *cache.Reflector, err error) {
	if ctx.Err() != nil {
		return
	}
	if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		s.log.Debug("rules configmap watch restarted", "reason", err.Error())
		return
	}
	s.log.Warn("listing or watching the rules configmap failed, retrying", "configMap", s.configMapDescription, "err", err.Error())
}

// ruleMetrics report reloads of the rules.
type ruleMetrics struct {
	reloads       *prometheus.CounterVec
	lastSuccess   prometheus.Gauge
	lastTimestamp prometheus.Gauge
	defaults      prometheus.Gauge
}

func newRuleMetrics(reg prometheus.Registerer, ns string) *ruleMetrics {
	m := &ruleMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "rules_reload_total",
			Help: "Changes of the rules ConfigMap's key evaluated, by result: success (applied, or defaults because the ConfigMap or key is missing), error (invalid, last good rules kept)."}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "rules_last_reload_success",
			Help: "1 if the last evaluation of the rules succeeded, 0 if the rules in the ConfigMap are invalid (the last good rules are in use)."}),
		lastTimestamp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "rules_last_reload_timestamp_seconds",
			Help: "Unix time at which the rules in use were applied (the last successful reload)."}),
		defaults: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "rules_defaults_in_use",
			Help: "1 if the built-in default rules are in use (no ConfigMap or key), 0 if rules from the ConfigMap are."}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastSuccess, m.lastTimestamp, m.defaults)
	}
	return m
}

// applied records a successful reload: rules in use since t; defaults says
// whether they are the built-in ones.
func (m *ruleMetrics) applied(t time.Time, defaults bool) {
	m.lastSuccess.Set(1)
	m.lastTimestamp.Set(float64(t.UnixNano()) / 1e9)
	if defaults {
		m.defaults.Set(1)
	} else {
		m.defaults.Set(0)
	}
	m.reloads.WithLabelValues("success").Inc()
}

// initial records the built-in rules in use from the start, before any reload.
func (m *ruleMetrics) initial(t time.Time) {
	m.lastSuccess.Set(1)
	m.lastTimestamp.Set(float64(t.UnixNano()) / 1e9)
	m.defaults.Set(1)
}

// failed records a reload that found invalid rules.
func (m *ruleMetrics) failed() {
	m.lastSuccess.Set(0)
	m.reloads.WithLabelValues("error").Inc()
}
