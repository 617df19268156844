package zoneflow

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Label sets of --metrics.labels: how much of a record the byte counters show.
const (
	LabelsZone      = "zone"
	LabelsNamespace = "namespace"
	LabelsWorkload  = "workload"
)

const gib = 1 << 30

// metrics are the daemon's own series; the flow counters are read from the
// processor at scrape time by flowCollector.
type metrics struct {
	dumps          *prometheus.CounterVec
	dumpDuration   prometheus.Histogram
	dumpCPU        prometheus.Counter
	dumpEntries    prometheus.Gauge
	overflows      prometheus.Counter
	listenErrors   prometheus.Counter
	accounting     prometheus.Gauge
	indexRebuilds  prometheus.Counter
	indexEndpoints prometheus.Gauge
	stateLoads     *prometheus.CounterVec
	stateSaves     *prometheus.CounterVec
}

func newMetrics(ns string) *metrics {
	return (&metrics{
		dumps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dumps_total",
			Help: "Conntrack table dumps by result (success, error)."}, []string{"result"}),
		dumpDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "dump_duration_seconds",
			Help:    "Time to dump the conntrack table and account every entry.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		dumpCPU: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "dump_cpu_seconds_total",
			Help: "CPU time of the dumping thread, user and system: the kernel building the dump's messages, decoding and accounting. Divided by dumps_total: CPU per dump."}),
		dumpEntries: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "dump_entries",
			Help: "Conntrack entries in the last complete dump."}),
		overflows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "event_overflows_total",
			Help: "ENOBUFS on the DESTROY event socket (events lost), each followed by a resync dump."}),
		listenErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "event_errors_total",
			Help: "Failures of the DESTROY event socket other than ENOBUFS; the listener is reopened."}),
		accounting: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "accounting_enabled",
			Help: "1 when nf_conntrack_acct is on; 0 means flows carry no byte counters and every byte metric stays flat."}),
		indexRebuilds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "index_rebuilds_total",
			Help: "Rebuilds of the address index after Node or Pod changes."}),
		indexEndpoints: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "index_addresses",
			Help: "Addresses and prefixes in the address index (node InternalIPs, podCIDRs, pod IPs)."}),
		stateLoads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "state_loads_total",
			Help: "State file reads at start by result: restored, missing, damaged, stale, other_boot, other_netns, error."}, []string{"result"}),
		stateSaves: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "state_saves_total",
			Help: "State file writes at shutdown by result (success, error)."}, []string{"result"}),
	}).initStateSeries()
}

// initStateSeries exports every result of the state series from the start, at 0.
func (m *metrics) initStateSeries() *metrics {
	for _, r := range []string{loadRestored, loadMissing, loadDamaged, loadStale, loadOtherBoot, loadOtherNetNS, loadError} {
		m.stateLoads.WithLabelValues(r)
	}
	m.stateSaves.WithLabelValues("success")
	m.stateSaves.WithLabelValues("error")
	return m
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.dumps, m.dumpDuration, m.dumpCPU, m.dumpEntries, m.overflows, m.listenErrors, m.accounting, m.indexRebuilds, m.indexEndpoints, m.stateLoads, m.stateSaves}
}

// flowCollector exposes the processor's records, projected on the configured
// label set, and its own counters. Records only grow, so the sums are counters.
type flowCollector struct {
	p      *Processor
	labels string
	prices Prices

	bytes, packets, cost, price  *prometheus.Desc
	tracked, records, lost, fold *prometheus.Desc
	destroys, late, dup, resumed *prometheus.Desc
	restored, resets, memory     *prometheus.Desc
}

func newFlowCollector(ns string, p *Processor, labels string, prices Prices) *flowCollector {
	ls := []string{"source_zone", "destination_zone", "direction"}
	switch labels {
	case LabelsNamespace:
		ls = append(ls, "namespace")
	case LabelsWorkload:
		ls = append(ls, "namespace", "workload")
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
	}
	return &flowCollector{
		p: p, labels: labels, prices: prices,
		bytes:    d("bytes_total", "IP bytes (headers included) counted once cluster-wide, by source and destination zone and by direction (egress: sent by this node's endpoint; ingress: received from outside the cluster).", ls...),
		packets:  d("packets_total", "IP packets, labelled as bytes_total.", ls...),
		cost:     d("cost_dollars_total", "Estimated transfer cost in US dollars by traffic class (bytes / GiB x the class's price).", "class"),
		price:    d("price_dollars_per_byte", "The price table in use, US dollars per byte by traffic class (the table's price per GiB / 2^30).", "class"),
		tracked:  d("tracked_flows", "Conntrack entries held in memory: live entries plus tombstones (entries a dump missed, waiting for their DESTROY event; destroyed ones, until a later dump)."),
		records:  d("aggregates", "Distinct aggregates (zones, direction, class, namespace, workload) kept; bounded by --metrics.max-records."),
		lost:     d("flows_lost_total", "Entries that left the table without a DESTROY event (lost to ENOBUFS, or never sent for entries created before the listener): their bytes after their last dump are not counted."),
		fold:     d("aggregates_folded_total", "New aggregates whose namespace and workload were folded into _other because --metrics.max-records was reached."),
		destroys: d("destroy_events_total", "DESTROY events accounted."),
		late:     d("destroy_events_late_total", "DESTROY events of entries a dump had already missed: only the difference to their last counters was counted."),
		dup:      d("destroy_events_duplicate_total", "DESTROY events of entries already accounted to their end (duplicates): ignored."),
		resumed:  d("flows_resumed_total", "Entries missing from one dump and seen again by a later one: counted on from their last counters."),
		resets:   d("flows_reset_total", "Entries whose counters went down between two looks: a new entry with the same tuple that reused the old one's kernel memory and so its conntrack ID (the old one's DESTROY counts against its own last counters), or counters zeroed by another tool. The new counters count whole."),
		memory:   d("flow_memory_bytes", "Memory held by the per-flow state (48-byte states in slab chunks, their index, the free list); it grows with the most flows tracked at once and is reused, not returned."),
		restored: d("state_flows_total", "Open flows restored from the state file by outcome: matched (seen again, the difference counted), ended (gone before the first dump).", "outcome"),
	}
}

func (c *flowCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.bytes, c.packets, c.cost, c.price, c.tracked, c.records, c.lost, c.fold, c.destroys, c.late, c.dup, c.resumed, c.restored, c.resets, c.memory} {
		ch <- d
	}
}

func (c *flowCollector) Collect(ch chan<- prometheus.Metric) {
	recs, st, tracked := c.p.snapshot()
	c.p.markScraped(recs)
	type sums struct {
		labels         []string
		bytes, packets uint64
	}
	agg := map[string]*sums{}
	byClass := map[string]uint64{}
	for _, r := range recs {
		lv := []string{r.key.srcZone, r.key.dstZone, directionNames[r.key.direction]}
		switch c.labels {
		case LabelsNamespace:
			lv = append(lv, r.key.namespace)
		case LabelsWorkload:
			lv = append(lv, r.key.namespace, r.key.workload)
		}
		k := strings.Join(lv, "\x00")
		s := agg[k]
		if s == nil {
			s = &sums{labels: lv}
			agg[k] = s
		}
		s.bytes += r.bytes
		s.packets += r.packets
		byClass[r.key.class] += r.bytes
	}
	for _, s := range agg {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(s.bytes), s.labels...)
		ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(s.packets), s.labels...)
	}
	for _, class := range Classes {
		price := c.prices[class]
		ch <- prometheus.MustNewConstMetric(c.price, prometheus.GaugeValue, price/(1<<30), class)
		if b, ok := byClass[class]; ok {
			ch <- prometheus.MustNewConstMetric(c.cost, prometheus.CounterValue, float64(b)/gib*price, class)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.tracked, prometheus.GaugeValue, float64(tracked))
	ch <- prometheus.MustNewConstMetric(c.memory, prometheus.GaugeValue, float64(st.tableBytes))
	ch <- prometheus.MustNewConstMetric(c.records, prometheus.GaugeValue, float64(len(recs)))
	ch <- prometheus.MustNewConstMetric(c.lost, prometheus.CounterValue, float64(st.lostFlows))
	ch <- prometheus.MustNewConstMetric(c.fold, prometheus.CounterValue, float64(st.foldedRecords))
	ch <- prometheus.MustNewConstMetric(c.destroys, prometheus.CounterValue, float64(st.destroyEvents))
	ch <- prometheus.MustNewConstMetric(c.late, prometheus.CounterValue, float64(st.lateDestroys))
	ch <- prometheus.MustNewConstMetric(c.dup, prometheus.CounterValue, float64(st.staleEvents))
	ch <- prometheus.MustNewConstMetric(c.resumed, prometheus.CounterValue, float64(st.resumedFlows))
	ch <- prometheus.MustNewConstMetric(c.resets, prometheus.CounterValue, float64(st.resets))
	ch <- prometheus.MustNewConstMetric(c.restored, prometheus.CounterValue, float64(st.restoredSeen), "matched")
	ch <- prometheus.MustNewConstMetric(c.restored, prometheus.CounterValue, float64(st.restoredGone), "ended")
}
