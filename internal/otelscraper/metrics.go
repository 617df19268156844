package otelscraper

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the scraper's own metrics (the exporter and the rule source
// register theirs).
type metrics struct {
	scrapeDuration *prometheus.GaugeVec
	up             *prometheus.GaugeVec
	scrapes        *prometheus.CounterVec
	samplesScraped *prometheus.CounterVec
	samplesKept    *prometheus.CounterVec
	samplesDropped *prometheus.CounterVec
	series         *prometheus.GaugeVec
	limitHit       *prometheus.CounterVec
	targets        *prometheus.GaugeVec
	discovered     prometheus.Gauge
	startsRestored *prometheus.CounterVec
	startsCorrupt  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, ns string) *metrics {
	m := &metrics{
		scrapeDuration: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "scrape_duration_seconds", Help: "Duration of the last scrape of the target (HTTP request and body)."}, []string{"job", "instance"}),
		up:             prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "scrape_up", Help: "1 if the last scrape of the target succeeded and parsed, else 0."}, []string{"job", "instance"}),
		scrapes:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "scrapes_total", Help: "Scrapes by result: success, error (HTTP, timeout, transport), parse_error."}, []string{"job", "result"}),
		samplesScraped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "samples_scraped_total", Help: "Samples parsed from targets."}, []string{"job"}),
		samplesKept:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "samples_kept_total", Help: "Samples that passed the filter rules."}, []string{"job"}),
		samplesDropped: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "samples_dropped_total", Help: "Samples not exported, by reason: rule (filtered out), series_limit."}, []string{"job", "reason"}),
		series:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "target_series", Help: "Series exported from the target at its last scrape."}, []string{"job", "instance"}),
		limitHit:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "series_limit_hit_total", Help: "Scrapes that hit the job's series limit."}, []string{"job"}),
		targets:        prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "targets", Help: "Targets being scraped, by job."}, []string{"job"}),
		startsRestored: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "start_times_restored_total", Help: "Cumulative series seen again after a restart, by result: kept (the start time saved by the earlier process, the value did not go down), reset (the value went down meanwhile: a new start time)."}, []string{"job", "result"}),
		startsCorrupt:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "start_state_corrupt_total", Help: "Start-time state files ignored because they were damaged or unreadable."}),
		discovered:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "discovered_targets", Help: "Targets found by the last discovery (0: nothing to scrape, also logged as a warning)."}),
	}
	if reg != nil {
		reg.MustRegister(m.scrapeDuration, m.up, m.scrapes, m.samplesScraped, m.samplesKept, m.samplesDropped, m.series, m.limitHit, m.targets, m.discovered, m.startsRestored, m.startsCorrupt)
	}
	return m
}

// forget removes a stopped target's per-target series.
func (m *metrics) forget(t Target) {
	m.scrapeDuration.DeleteLabelValues(t.Job, t.instance())
	m.up.DeleteLabelValues(t.Job, t.instance())
	m.series.DeleteLabelValues(t.Job, t.instance())
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
