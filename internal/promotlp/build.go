package promotlp

import (
	"math"
	"slices"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// arena holds the messages of one scrape, allocated in a few large slices
// rather than one by one. The output owns them: nothing is reused.
type arena struct {
	metrics  []metricspb.Metric
	num      []metricspb.NumberDataPoint
	dbl      []metricspb.NumberDataPoint_AsDouble
	numPtr   []*metricspb.NumberDataPoint
	hist     []metricspb.HistogramDataPoint
	histPtr  []*metricspb.HistogramDataPoint
	counts   []uint64
	sums     []float64
	summ     []metricspb.SummaryDataPoint
	summPtr  []*metricspb.SummaryDataPoint
	quant    []metricspb.SummaryDataPoint_ValueAtQuantile
	quantPtr []*metricspb.SummaryDataPoint_ValueAtQuantile
}

// newArena sizes an arena for the families of this scrape.
func newArena(fams []*family) *arena {
	var nNum, nHist, nCounts, nSumm, nQuant int
	for _, f := range fams {
		switch f.kind {
		case kindGauge, kindSum:
			nNum += len(f.series)
		case kindHistogram:
			nHist += len(f.series)
			for _, st := range f.series {
				nCounts += len(st.x.buckets) + 1
			}
		case kindSummary:
			nSumm += len(f.series)
			for _, st := range f.series {
				nQuant += len(st.x.buckets)
			}
		}
	}
	return &arena{
		metrics:  make([]metricspb.Metric, len(fams)),
		num:      make([]metricspb.NumberDataPoint, nNum),
		dbl:      make([]metricspb.NumberDataPoint_AsDouble, nNum),
		numPtr:   make([]*metricspb.NumberDataPoint, nNum),
		hist:     make([]metricspb.HistogramDataPoint, nHist),
		histPtr:  make([]*metricspb.HistogramDataPoint, nHist),
		counts:   make([]uint64, nCounts),
		sums:     make([]float64, nHist),
		summ:     make([]metricspb.SummaryDataPoint, nSumm),
		summPtr:  make([]*metricspb.SummaryDataPoint, nSumm),
		quant:    make([]metricspb.SummaryDataPoint_ValueAtQuantile, nQuant),
		quantPtr: make([]*metricspb.SummaryDataPoint_ValueAtQuantile, nQuant),
	}
}

// build returns the metrics of the scrape.
func (c *Converter) build() []*metricspb.Metric {
	if len(c.order) == 0 {
		return nil
	}
	a := newArena(c.order)
	out := make([]*metricspb.Metric, 0, len(c.order))
	for i, f := range c.order {
		m := &a.metrics[i]
		var n int
		switch f.kind {
		case kindGauge:
			dps := c.numberPoints(f, a)
			n = len(dps)
			m.Data = &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: dps}}
		case kindSum:
			dps := c.numberPoints(f, a)
			n = len(dps)
			m.Data = &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				DataPoints:             dps,
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
				IsMonotonic:            true,
			}}
		case kindHistogram:
			dps := c.histogramPoints(f, a)
			n = len(dps)
			m.Data = &metricspb.Metric_Histogram{Histogram: &metricspb.Histogram{
				DataPoints:             dps,
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
			}}
		case kindSummary:
			dps := c.summaryPoints(f, a)
			n = len(dps)
			m.Data = &metricspb.Metric_Summary{Summary: &metricspb.Summary{DataPoints: dps}}
		}
		if n == 0 {
			continue
		}
		m.Name, m.Description, m.Unit, m.Metadata = f.name, f.help, f.unit, f.meta
		c.stats.DataPoints += n
		out = append(out, m)
	}
	return out
}

// numberPoints returns the gauge or sum points of family f.
func (c *Converter) numberPoints(f *family, a *arena) []*metricspb.NumberDataPoint {
	dps := a.numPtr[:0:len(f.series)]
	for _, st := range f.series {
		if !st.hasValue {
			c.stats.DroppedInvalid++ // e.g. a counter with only _created
			continue
		}
		dp, v := &a.num[0], &a.dbl[0]
		a.num, a.dbl = a.num[1:], a.dbl[1:]
		v.AsDouble = st.value
		dp.Value = v
		dp.Attributes = decodeAttrs(st.enc)
		dp.TimeUnixNano = st.timeNs
		if f.kind == kindSum {
			dp.StartTimeUnixNano = c.start(st, st.value)
		}
		dps = append(dps, dp)
	}
	a.numPtr = a.numPtr[len(dps):]
	return dps
}

// histogramPoints returns the valid histogram points of family f.
func (c *Converter) histogramPoints(f *family, a *arena) []*metricspb.HistogramDataPoint {
	dps := a.histPtr[:0:len(f.series)]
	for _, st := range f.series {
		count, finite, ok := st.checkHistogram()
		if !ok {
			c.stats.DroppedInvalid++
			continue
		}
		counts := a.counts[: len(finite)+1 : len(finite)+1]
		a.counts = a.counts[len(finite)+1:]
		var prev uint64
		for i, b := range finite {
			cum := uint64(b.value)
			counts[i] = cum - prev
			prev = cum
		}
		counts[len(finite)] = count - prev
		if !boundsEqual(st.x.bounds, finite) {
			st.x.bounds = make([]float64, len(finite))
			for i, b := range finite {
				st.x.bounds[i] = b.bound
			}
		}
		dp := &a.hist[0]
		a.hist = a.hist[1:]
		dp.Attributes = decodeAttrs(st.enc)
		dp.TimeUnixNano = st.timeNs
		dp.Count = count
		dp.BucketCounts = counts
		dp.ExplicitBounds = st.x.bounds
		if st.hasSum {
			a.sums[0] = st.x.sum
			dp.Sum, a.sums = &a.sums[0], a.sums[1:]
		}
		dp.StartTimeUnixNano = c.start(st, float64(count))
		dps = append(dps, dp)
	}
	a.histPtr = a.histPtr[len(dps):]
	return dps
}

// checkHistogram validates this scrape's histogram: it returns the count
// and the finite buckets (sorted), or ok == false when the histogram is
// incomplete or inconsistent.
func (st *series) checkHistogram() (count uint64, finite []bucket, ok bool) {
	if st.bad || !st.hasCount {
		return 0, nil, false
	}
	if count, ok = toCount(st.x.count); !ok {
		return 0, nil, false
	}
	b := sortBuckets(st.x.buckets)
	var prev uint64
	for i := range b {
		if math.IsNaN(b[i].bound) || (i > 0 && b[i].bound == b[i-1].bound) {
			return 0, nil, false
		}
		cum, ok := toCount(b[i].value)
		if !ok || cum < prev {
			return 0, nil, false
		}
		prev = cum
	}
	finite = b
	if n := len(b); n > 0 && math.IsInf(b[n-1].bound, 1) {
		if uint64(b[n-1].value) != count {
			return 0, nil, false
		}
		finite = b[:n-1]
	}
	if n := len(finite); n > 0 && uint64(finite[n-1].value) > count {
		return 0, nil, false
	}
	return count, finite, true
}

// summaryPoints returns the valid summary points of family f.
func (c *Converter) summaryPoints(f *family, a *arena) []*metricspb.SummaryDataPoint {
	dps := a.summPtr[:0:len(f.series)]
	for _, st := range f.series {
		count, ok := st.checkSummary()
		if !ok {
			c.stats.DroppedInvalid++
			continue
		}
		n := len(st.x.buckets)
		qs := a.quantPtr[:n:n]
		a.quantPtr = a.quantPtr[n:]
		for i, b := range st.x.buckets {
			q := &a.quant[i]
			q.Quantile, q.Value = b.bound, b.value
			qs[i] = q
		}
		a.quant = a.quant[n:]
		dp := &a.summ[0]
		a.summ = a.summ[1:]
		dp.Attributes = decodeAttrs(st.enc)
		dp.TimeUnixNano = st.timeNs
		dp.Count = count
		dp.Sum = st.x.sum
		if n > 0 {
			dp.QuantileValues = qs
		}
		dp.StartTimeUnixNano = c.start(st, float64(count))
		dps = append(dps, dp)
	}
	a.summPtr = a.summPtr[len(dps):]
	return dps
}

// checkSummary validates this scrape's summary (sorting its quantiles).
func (st *series) checkSummary() (count uint64, ok bool) {
	if st.bad || !st.hasCount {
		return 0, false
	}
	if count, ok = toCount(st.x.count); !ok {
		return 0, false
	}
	q := sortBuckets(st.x.buckets)
	for i := range q {
		if !(q[i].bound >= 0 && q[i].bound <= 1) || (i > 0 && q[i].bound == q[i-1].bound) {
			return 0, false
		}
	}
	return count, true
}

// start returns the start time of this scrape's cumulative point of st,
// whose cumulative value is cur, and updates the reset state.
func (c *Converter) start(st *series, cur float64) uint64 {
	t := st.timeNs
	reset := st.hasLast && cur < st.last
	if reset {
		c.stats.Resets++
	}
	if !math.IsNaN(cur) {
		st.last, st.hasLast = cur, true
	}
	if st.hasCreated {
		if ns, ok := nsFromSeconds(st.created); ok && ns <= t {
			st.startNs, st.started = ns, true
			return ns
		}
	}
	if !st.started && c.restored != nil {
		c.restoredStart(st, cur, t)
	}
	switch {
	case !st.started:
		st.startNs, st.started = t, true
	case reset:
		st.startNs = t
		if t >= 1e6 {
			st.startNs = t - 1e6 // 1 ms before the point, like the Collector
		}
	}
	return min(st.startNs, t)
}

// toCount converts a (cumulative) count to an integer, truncating like the
// Collector; ok is false for NaN, negative and too large values.
func toCount(v float64) (uint64, bool) {
	if !(v >= 0) || v >= 0x1p64 {
		return 0, false
	}
	return uint64(v), true
}

// sortBuckets sorts b by bound, if needed.
func sortBuckets(b []bucket) []bucket {
	if !slices.IsSortedFunc(b, cmpBucket) {
		slices.SortFunc(b, cmpBucket)
	}
	return b
}

// cmpBucket orders buckets by bound, NaN first.
func cmpBucket(x, y bucket) int {
	switch {
	case x.bound < y.bound:
		return -1
	case x.bound > y.bound:
		return 1
	case math.IsNaN(x.bound) && !math.IsNaN(y.bound):
		return -1
	case !math.IsNaN(x.bound) && math.IsNaN(y.bound):
		return 1
	}
	return 0
}

// boundsEqual tells whether bounds are the bounds of the finite buckets b.
func boundsEqual(bounds []float64, b []bucket) bool {
	if len(bounds) != len(b) {
		return false
	}
	for i := range b {
		if bounds[i] != b[i].bound {
			return false
		}
	}
	return true
}
