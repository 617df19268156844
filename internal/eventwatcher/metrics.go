package eventwatcher

import (
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultNamespace is the metric namespace when New gets none.
const DefaultNamespace = "trellis_event_watcher"

// Results in the actions_total metric.
const (
	resultSuccess     = "success"
	resultError       = "error"
	resultBlocked     = "blocked"
	resultDryRun      = "dry_run"
	resultTimeout     = "timeout"
	resultCanceled    = "canceled"
	resultUnsupported = "unsupported"
)

// metrics are the controller's Prometheus series.
type metrics struct {
	eventTransitions *prometheus.CounterVec
	events           *prometheus.GaugeVec
	actions          *prometheus.CounterVec
	drainDuration    *prometheus.HistogramVec
	metadataErrors   *prometheus.CounterVec
	lastPoll         prometheus.Gauge
	unknownTypes     *prometheus.CounterVec
	evictionsBlocked prometheus.Counter
	podsLeft         *prometheus.CounterVec
}

func newMetrics(namespace string) *metrics {
	return &metrics{
		eventTransitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "events_seen_total",
			Help: "Scheduled events seen entering a status: scheduled, started, completed or canceled.",
		}, []string{"provider", "type", "status"}),
		events: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "active_events",
			Help: "Scheduled events announced for this VM at the last successful poll, by status (scheduled, started).",
		}, []string{"provider", "type", "status"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "actions_total",
			Help: "Actions taken on the Node (taint, untaint, cordon, uncordon, drain, evict, approve) by result (success, error, blocked, dry_run, timeout, canceled, unsupported).",
		}, []string{"action", "result"}),
		drainDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "drain_duration_seconds",
			Help:    "Time from the start of a drain until it finished (success) or was no longer needed (canceled).",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600},
		}, []string{"result"}),
		metadataErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "metadata_errors_total",
			Help: "Failed metadata polls and approvals by kind: http_4xx, http_5xx, timeout, transport, parse, invalid, other.",
		}, []string{"kind"}),
		lastPoll: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_poll_timestamp_seconds",
			Help: "Unix time of the last successful metadata poll.",
		}),
		unknownTypes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "unknown_event_types_total",
			Help: "Events of a type event-watcher does not know (acted on with action none), counted once per event.",
		}, []string{"provider", "type"}),
		evictionsBlocked: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "evictions_blocked_total",
			Help: "Evictions refused with 429 Too Many Requests, i.e. blocked by a PodDisruptionBudget.",
		}),
		podsLeft: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "drain_pods_left_total",
			Help: "Pods a drain left on the node and did not wait for, counted once per pod and drain, by reason: no_controller and emptydir (the drain policy, see --drain.force and --drain.delete-emptydir-data), stuck_terminating (still terminating --drain.terminating-timeout after its deletion time).",
		}, []string{"reason"}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.eventTransitions, m.events, m.actions, m.drainDuration, m.metadataErrors, m.lastPoll, m.unknownTypes, m.evictionsBlocked, m.podsLeft}
}

func (m *metrics) action(action, result string) { m.actions.WithLabelValues(action, result).Inc() }
