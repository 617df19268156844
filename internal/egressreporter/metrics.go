package egressreporter

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Results of an apply in applies_total.
const (
	resultSuccess  = "success"
	resultConflict = "conflict"
	resultError    = "error"
)

// metrics are the reporter's series.
type metrics struct {
	published      *prometheus.GaugeVec
	pending        prometheus.Gauge
	candidates     *prometheus.GaugeVec
	sourceProblems *prometheus.CounterVec
	probeNodes     *prometheus.GaugeVec
	changes        prometheus.Counter
	applies        *prometheus.CounterVec
	lastApply      prometheus.Gauge
	leader         prometheus.Gauge
}

func newMetrics(namespace string) *metrics {
	return &metrics{
		published: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "published_cidrs",
			Help: "CIDRs in the egressCIDRs key of shoot-info as last applied, by family (ipv4, ipv6).",
		}, []string{"family"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "pending_cidrs",
			Help: "Probed CIDRs seen but not yet published (waiting for --hysteresis.add).",
		}),
		candidates: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "source_cidrs",
			Help: "CIDRs each source reports at the last sync, by source (infrastructure, probe, static).",
		}, []string{"source"}),
		sourceProblems: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "source_problems_total",
			Help: "Entries a source could not use (an unparsable CIDR in the Infrastructure status, an invalid node annotation), counted per sync, by source.",
		}, []string{"source"}),
		probeNodes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "probe_nodes",
			Help: "Nodes with probe annotations at the last sync, by state: fresh, stale (older than --probe.max-age), invalid.",
		}, []string{"state"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "changes_total",
			Help: "Changes of the published egressCIDRs value written to shoot-info.",
		}),
		applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "applies_total",
			Help: "Server-side applies of shoot-info by result: success, conflict (another field manager owns egressCIDRs with another value), error.",
		}, []string{"result"}),
		lastApply: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_apply_timestamp_seconds",
			Help: "Unix time of the last successful apply of shoot-info.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "leader",
			Help: "1 while this replica leads (or leader election is off), else 0.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.published, m.pending, m.candidates, m.sourceProblems, m.probeNodes, m.changes, m.applies, m.lastApply, m.leader}
}

// probeMetrics are the probe's series.
type probeMetrics struct {
	attempts  *prometheus.CounterVec
	lastOK    *prometheus.GaugeVec
	changes   prometheus.Counter
	writes    *prometheus.CounterVec
	addresses *prometheus.GaugeVec
}

func newProbeMetrics(namespace string) *probeMetrics {
	return &probeMetrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "attempts_total",
			Help: "Probe attempts by family, method (stun, http), server and result: success, timeout, unreachable, invalid, http_status, other.",
		}, []string{"family", "method", "server", "result"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_success_timestamp_seconds",
			Help: "Unix time of the last round that found the family's egress address.",
		}, []string{"family"}),
		changes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "address_changes_total",
			Help: "Changes of the addresses this node reports (the first one counts too).",
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "node_writes_total",
			Help: "Writes of the probe annotations to the Node by result: success, error.",
		}, []string{"result"}),
		addresses: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "address_info",
			Help: "Always 1 for the egress address found by the last successful round, by family and address.",
		}, []string{"family", "address"}),
	}
}

func (m *probeMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.attempts, m.lastOK, m.changes, m.writes, m.addresses}
}
