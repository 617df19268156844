package promotlp

import (
	"math"
	"slices"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of the OTLP messages FinishEncoded writes.
const (
	fieldMetricsDataResourceMetrics = 1

	fieldResourceMetricsResource = 1
	fieldResourceMetricsScope    = 2

	fieldScopeMetricsScope   = 1
	fieldScopeMetricsMetrics = 2

	fieldMetricName        = 1
	fieldMetricDescription = 2
	fieldMetricUnit        = 3
	fieldMetricGauge       = 5
	fieldMetricSum         = 7
	fieldMetricHistogram   = 9
	fieldMetricSummary     = 11
	fieldMetricMetadata    = 12

	fieldDataPoints             = 1 // Gauge, Sum, Histogram, Summary
	fieldAggregationTemporality = 2 // Sum, Histogram
	fieldIsMonotonic            = 3 // Sum

	fieldPointStart     = 2 // all data points
	fieldPointTime      = 3
	fieldNumberAsDouble = 4
	fieldNumberAttrs    = 7
	fieldPointCount     = 4 // histogram, summary
	fieldPointSum       = 5
	fieldHistCounts     = 6
	fieldHistBounds     = 7
	fieldHistAttrs      = 9
	fieldSummQuantiles  = 6
	fieldSummAttrs      = 7

	fieldQuantile      = 1
	fieldQuantileValue = 2

	fieldKVKey          = 1
	fieldKVValue        = 2
	fieldAnyValueString = 1
)

// cumulative is AGGREGATION_TEMPORALITY_CUMULATIVE.
const cumulative = 2

// FinishEncoded ends the scrape exactly like Finish (same state transitions,
// same Stats, same data) but, instead of returning messages, appends to dst
// the protobuf encoding of one resource_metrics field of a MetricsData (or
// ExportMetricsServiceRequest) message: tag, length and a ResourceMetrics
// holding resource, then one ScopeMetrics holding scope and the scrape's
// metrics in the order Finish returns them. resource and scope are encoded
// Resource and InstrumentationScope messages (nil omits the field). When the
// scrape has no data point (Finish would return no metric), nothing is
// appended. The attributes of every series are encoded once, when the
// series is first encoded, and copied from then on; with a dst of sufficient
// capacity FinishEncoded does not allocate in the steady state.
//
// Appending several results to the same dst yields a MetricsData with one
// ResourceMetrics per call.
func (c *Converter) FinishEncoded(dst, resource, scope []byte) ([]byte, Stats) {
	dst = c.encode(dst, resource, scope)
	c.end()
	return dst, c.stats
}

// encode appends the scrape's ResourceMetrics field to dst. A first pass
// validates the points, updates the start time and reset state exactly as
// build does and computes every message size; the second writes the bytes,
// so that every length is known when it is written and nothing is copied.
func (c *Converter) encode(dst, resource, scope []byte) []byte {
	metrics, points := 0, 0
	for _, f := range c.order {
		c.sizeFamily(f)
		if f.encPoints > 0 {
			points += f.encPoints
			metrics += fieldSize(c.metricSize(f))
		}
	}
	c.stats.DataPoints += points
	if points == 0 {
		return dst
	}
	sm := metrics
	if scope != nil {
		sm += fieldSize(len(scope))
	}
	rm := fieldSize(sm)
	if resource != nil {
		rm += fieldSize(len(resource))
	}
	dst = slices.Grow(dst, fieldSize(rm))
	dst = appendLen(dst, fieldMetricsDataResourceMetrics, rm)
	if resource != nil {
		dst = appendLen(dst, fieldResourceMetricsResource, len(resource))
		dst = append(dst, resource...)
	}
	dst = appendLen(dst, fieldResourceMetricsScope, sm)
	if scope != nil {
		dst = appendLen(dst, fieldScopeMetricsScope, len(scope))
		dst = append(dst, scope...)
	}
	for _, f := range c.order {
		if f.encPoints > 0 {
			dst = c.appendMetric(dst, f)
		}
	}
	return dst
}

// fieldSize is the size of a length-delimited field of n bytes whose field
// number is below 16.
func fieldSize(n int) int { return 1 + protowire.SizeBytes(n) }

// appendLen appends the tag and length of a length-delimited field.
func appendLen(b []byte, num protowire.Number, n int) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(n))
}

// appendFixed64 appends a fixed64 field unless v is zero (proto3).
func appendFixed64(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, v)
}

// appendDouble appends a double field unless v is +0 (proto3).
func appendDouble(b []byte, num protowire.Number, v float64) []byte {
	return appendFixed64(b, num, math.Float64bits(v))
}

// fixedSize is the size of a fixed64 field holding v (proto3: 0 if zero).
func fixedSize(v uint64) int {
	if v == 0 {
		return 0
	}
	return 9
}

// doubleSize is the size of a double field holding v.
func doubleSize(v float64) int { return fixedSize(math.Float64bits(v)) }

// packedSize is the size of a non-empty packed repeated fixed64 field of n
// values.
func packedSize(n int) int { return fieldSize(8 * n) }

// appendString appends a string field unless s is empty (proto3).
func appendString(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// stringSize is the size of a string field holding s.
func stringSize(s string) int {
	if s == "" {
		return 0
	}
	return fieldSize(len(s))
}

// appendKeyValues appends kvs (string attributes) as repeated KeyValue
// fields num.
func appendKeyValues(b []byte, num protowire.Number, kvs []*commonpb.KeyValue) []byte {
	for _, kv := range kvs {
		v := stringValue(kv)
		anySize := fieldSize(len(v)) // oneof: written even when empty
		b = appendLen(b, num, stringSize(kv.Key)+fieldSize(anySize))
		b = appendString(b, fieldKVKey, kv.Key)
		b = appendLen(b, fieldKVValue, anySize)
		b = protowire.AppendTag(b, fieldAnyValueString, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// sharedEnc is the interned encoding of a series' attributes and the number
// of series using it.
type sharedEnc struct {
	b    string
	refs int
}

// encodedAttrs returns the attributes of st as encoded data point fields.
// They are encoded when the series is first encoded and interned: the series
// of a target's families often share their labels.
func (c *Converter) encodedAttrs(st *series) string {
	if st.enc == "" && len(st.attrs) > 0 {
		num := protowire.Number(fieldNumberAttrs)
		switch st.kind {
		case kindHistogram:
			num = fieldHistAttrs
		case kindSummary:
			num = fieldSummAttrs
		}
		b := appendKeyValues(c.encBuf[:0], num, st.attrs)
		c.encBuf = b
		e := c.encs[string(b)]
		if e == nil {
			e = &sharedEnc{b: string(b)}
			c.encs[e.b] = e
		}
		e.refs++
		st.enc = e.b
	}
	return st.enc
}

// releaseEnc drops a series' reference to its encoded attributes.
func (c *Converter) releaseEnc(st *series) {
	if st.enc == "" {
		return
	}
	if e := c.encs[st.enc]; e != nil {
		if e.refs--; e.refs <= 0 {
			delete(c.encs, st.enc)
		}
	}
	st.enc = ""
}

// encodedMeta returns the metadata of f as encoded Metric fields.
func (c *Converter) encodedMeta(f *family) []byte {
	if int(f.typ) >= len(c.metaEnc) {
		return appendKeyValues(nil, fieldMetricMetadata, f.meta)
	}
	if c.metaEnc[f.typ] == nil {
		c.metaEnc[f.typ] = appendKeyValues(nil, fieldMetricMetadata, c.metadata(f.typ))
	}
	return c.metaEnc[f.typ]
}

// sizeFamily is the first pass over family f: it checks each series' point
// (counting invalid ones), computes its start time (updating the reset
// state), and records the sizes of the points and of the data message.
func (c *Converter) sizeFamily(f *family) {
	f.encPoints, f.encData = 0, 0
	for _, st := range f.series {
		st.encOK = false
		var size int
		switch f.kind {
		case kindGauge, kindSum:
			if !st.hasValue {
				c.stats.DroppedInvalid++ // e.g. a counter with only _created
				continue
			}
			st.encStart = 0
			if f.kind == kindSum {
				st.encStart = c.start(st, st.value)
			}
			size = 9 + fixedSize(st.encStart) + fixedSize(st.timeNs) // as_double: a oneof, always written
		case kindHistogram:
			count, finite, ok := st.checkHistogram()
			if !ok {
				c.stats.DroppedInvalid++
				continue
			}
			if !boundsEqual(st.bounds, finite) {
				st.bounds = make([]float64, len(finite))
				for i, b := range finite {
					st.bounds[i] = b.bound
				}
			}
			st.encCount, st.encFinite = count, len(finite)
			st.encStart = c.start(st, float64(count))
			size = fixedSize(st.encStart) + fixedSize(st.timeNs) + fixedSize(count) + packedSize(len(finite)+1)
			if st.hasSum {
				size += 9 // optional: written even when zero
			}
			if len(finite) > 0 {
				size += packedSize(len(finite))
			}
		case kindSummary:
			count, ok := st.checkSummary()
			if !ok {
				c.stats.DroppedInvalid++
				continue
			}
			st.encCount = count
			st.encStart = c.start(st, float64(count))
			size = fixedSize(st.encStart) + fixedSize(st.timeNs) + fixedSize(count) + doubleSize(st.sum)
			for _, q := range st.buckets {
				size += fieldSize(doubleSize(q.bound) + doubleSize(q.value))
			}
		default:
			continue
		}
		size += len(c.encodedAttrs(st))
		st.encOK, st.encSize = true, size
		f.encPoints++
		f.encData += fieldSize(size)
	}
	switch f.kind {
	case kindSum:
		f.encData += 4 // aggregation_temporality, is_monotonic
	case kindHistogram:
		f.encData += 2 // aggregation_temporality
	}
}

// metricSize is the size of the Metric message of family f (after
// sizeFamily).
func (c *Converter) metricSize(f *family) int {
	return stringSize(f.name) + stringSize(f.help) + stringSize(f.unit) + fieldSize(f.encData) + len(c.encodedMeta(f))
}

// appendMetric appends the metrics field of family f (after sizeFamily).
func (c *Converter) appendMetric(b []byte, f *family) []byte {
	b = appendLen(b, fieldScopeMetricsMetrics, c.metricSize(f))
	b = appendString(b, fieldMetricName, f.name)
	b = appendString(b, fieldMetricDescription, f.help)
	b = appendString(b, fieldMetricUnit, f.unit)
	// proto.Marshal's order: plain fields by number, then the oneof.
	b = append(b, c.encodedMeta(f)...)
	var num protowire.Number
	switch f.kind {
	case kindGauge:
		num = fieldMetricGauge
	case kindSum:
		num = fieldMetricSum
	case kindHistogram:
		num = fieldMetricHistogram
	case kindSummary:
		num = fieldMetricSummary
	}
	b = appendLen(b, num, f.encData)
	for _, st := range f.series {
		if !st.encOK {
			continue
		}
		b = appendLen(b, fieldDataPoints, st.encSize)
		b = appendFixed64(b, fieldPointStart, st.encStart)
		b = appendFixed64(b, fieldPointTime, st.timeNs)
		switch f.kind {
		case kindGauge, kindSum:
			// Attributes (7) before the value oneof (4), as proto.Marshal.
			b = append(b, c.encodedAttrs(st)...)
			b = protowire.AppendTag(b, fieldNumberAsDouble, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(st.value))
			continue
		case kindHistogram:
			b = appendFixed64(b, fieldPointCount, st.encCount)
			if st.hasSum {
				b = protowire.AppendTag(b, fieldPointSum, protowire.Fixed64Type)
				b = protowire.AppendFixed64(b, math.Float64bits(st.sum))
			}
			finite := st.buckets[:st.encFinite]
			b = appendLen(b, fieldHistCounts, 8*(len(finite)+1))
			var prev uint64
			for _, bk := range finite {
				cum := uint64(bk.value)
				b = protowire.AppendFixed64(b, cum-prev)
				prev = cum
			}
			b = protowire.AppendFixed64(b, st.encCount-prev)
			if len(finite) > 0 {
				b = appendLen(b, fieldHistBounds, 8*len(finite))
				for _, bk := range finite {
					b = protowire.AppendFixed64(b, math.Float64bits(bk.bound))
				}
			}
		case kindSummary:
			b = appendFixed64(b, fieldPointCount, st.encCount)
			b = appendDouble(b, fieldPointSum, st.sum)
			for _, q := range st.buckets {
				b = appendLen(b, fieldSummQuantiles, doubleSize(q.bound)+doubleSize(q.value))
				b = appendDouble(b, fieldQuantile, q.bound)
				b = appendDouble(b, fieldQuantileValue, q.value)
			}
		}
		b = append(b, c.encodedAttrs(st)...)
	}
	switch f.kind {
	case kindSum:
		b = protowire.AppendTag(b, fieldAggregationTemporality, protowire.VarintType)
		b = protowire.AppendVarint(b, cumulative)
		b = protowire.AppendTag(b, fieldIsMonotonic, protowire.VarintType)
		b = protowire.AppendVarint(b, 1)
	case kindHistogram:
		b = protowire.AppendTag(b, fieldAggregationTemporality, protowire.VarintType)
		b = protowire.AppendVarint(b, cumulative)
	}
	return b
}
