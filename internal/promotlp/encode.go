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
	c.sizeScrape()
	if c.stats.DataPoints > 0 {
		c.pieces = c.pieces[:0]
		for i, f := range c.order {
			c.pieces = append(c.pieces, piece{fam: i, hi: len(f.series)})
		}
		dst = c.appendRow(dst, resource, scope, c.pieces)
	}
	c.end(false)
	return dst, c.stats
}

// ChunkOptions bound the chunks FinishChunks encodes a scrape into.
type ChunkOptions struct {
	// MaxDataPoints is the most data points in one chunk; 0 means no bound.
	MaxDataPoints int
	// MaxBytes bounds the size of one chunk; 0 means no bound. A chunk holds
	// at least one data point, so a single larger data point makes a larger
	// chunk.
	MaxBytes int
	// Partial says that the scrape ended early (the target's response was
	// cut off or malformed): series it did not see are kept, with their
	// start times, for the next scrape instead of being forgotten. A series
	// is only forgotten when a complete scrape no longer has it.
	Partial bool
}

// FinishChunks ends the scrape like FinishEncoded (same state transitions,
// same Stats, same data points) but encodes it as a sequence of chunks of
// bounded size, each a MetricsData message, encoded into buf[:0] and handed to
// emit with its data point count. emit must copy what it keeps: buf is reused
// for the next chunk. An error from emit stops the encoding and is returned;
// the scrape is finished all the same. FinishChunks returns buf, grown to the
// largest chunk, for the next scrape.
//
// The data points are interleaved across families for compression: the
// scrape is sent in rows, each row holding the next k series of every family
// (k fitting about 24 KiB of points), so that the points of one object
// (a container's labels are the same in each cAdvisor family) lie within
// the 32 KiB window of DEFLATE instead of a whole family apart. A row is one
// resource_metrics field (resource, one ScopeMetrics with scope, one metric
// per family); a chunk holds consecutive rows or parts of them. Within each
// family the series keep their order; joined, the chunks hold the data
// points of FinishEncoded.
func (c *Converter) FinishChunks(buf, resource, scope []byte, o ChunkOptions, emit func(chunk []byte, dataPoints int) error) ([]byte, Stats, error) {
	c.sizeScrape()
	c.planRows()
	var err error
	rmOverhead := fieldSize(fieldSize(fieldSize(0)+fieldSize(len(scope)))+fieldSize(len(resource))) + 2*(1+binaryMaxVarintLen32)
	chunk := c.chunkPieces[:0]
	points, size, prevFam := 0, 0, -1
	for i := 0; i < len(c.pieces) && err == nil; {
		p := c.pieces[i]
		f := c.order[p.fam]
		first := metricOverhead(c, f)
		if prevFam < 0 || p.fam <= prevFam {
			first += rmOverhead
		}
		j, taken := p.lo, 0
		for ; j < p.hi; j++ {
			st := f.series[j]
			if !st.encOK {
				continue
			}
			add := fieldSize(int(st.encSize))
			if taken == 0 {
				add += first
			}
			if points > 0 && (o.MaxDataPoints > 0 && points >= o.MaxDataPoints || o.MaxBytes > 0 && size+add > o.MaxBytes) {
				break
			}
			points, size, taken = points+1, size+add, taken+1
		}
		if taken > 0 {
			chunk = append(chunk, piece{fam: p.fam, lo: p.lo, hi: j})
			prevFam = p.fam
		}
		if j < p.hi { // the chunk is full: the rest of the piece starts the next one
			buf = c.appendPieces(buf[:0], resource, scope, chunk)
			err = emit(buf, points)
			chunk, points, size, prevFam = chunk[:0], 0, 0, -1
			c.pieces[i].lo = j
			continue
		}
		i++
	}
	if points > 0 && err == nil {
		buf = c.appendPieces(buf[:0], resource, scope, chunk)
		err = emit(buf, points)
	}
	c.chunkPieces = chunk[:0]
	c.end(o.Partial)
	return buf, c.stats, err
}

// piece is the series [lo, hi) of family c.order[fam].
type piece struct{ fam, lo, hi int }

// rowBytes is about what a row holds of each family: DEFLATE (gzip) finds
// repetitions up to 32 KiB back.
const rowBytes = 24 << 10

// planRows sets c.pieces to the scrape's series in send order (after
// sizeScrape): rows of the next k series of every family that has series
// left, k the same for all families so that the rows stay aligned.
func (c *Converter) planRows() {
	c.pieces = c.pieces[:0]
	c.cursor = slices.Grow(c.cursor[:0], len(c.order))[:len(c.order)]
	clear(c.cursor)
	var points, bytes int
	for _, f := range c.order {
		for _, st := range f.series {
			if st.encOK {
				points++
				bytes += fieldSize(int(st.encSize))
			}
		}
	}
	if points == 0 {
		return
	}
	k := max(1, rowBytes/max(1, bytes/points))
	for left := points; left > 0; {
		for fi, f := range c.order {
			lo, n, j := c.cursor[fi], 0, c.cursor[fi]
			for ; j < len(f.series) && n < k; j++ {
				if f.series[j].encOK {
					n++
				}
			}
			if n < k { // skip series that are not encoded after the last one taken
				j = len(f.series)
			}
			c.cursor[fi] = j
			if n > 0 {
				c.pieces = append(c.pieces, piece{fam: fi, lo: lo, hi: j})
				left -= n
			}
		}
	}
}

// metricOverhead bounds the bytes of family f's metric field besides its data
// points.
func metricOverhead(c *Converter, f *family) int {
	const maxLenPrefix = 1 + binaryMaxVarintLen32
	return 2*maxLenPrefix + stringSize(f.name) + stringSize(f.help) + stringSize(f.unit) + len(c.encodedMeta(f)) + 4
}

// binaryMaxVarintLen32 is the longest varint of a message length (messages
// are below 2 GiB).
const binaryMaxVarintLen32 = 5

// sizeScrape is the first pass of the encoding: it validates the points,
// updates the start time and reset state exactly as build does and
// computes the size of every point (sizeFamily).
func (c *Converter) sizeScrape() {
	for _, f := range c.order {
		c.sizeFamily(f)
		c.stats.DataPoints += f.encPoints
	}
}

// rangeData returns the data points of sers (of family f) that are encoded,
// and the size of the data message (Gauge, Sum, ...) holding them.
func rangeData(f *family, sers []*series) (points, size int) {
	for _, st := range sers {
		if st.encOK {
			points++
			size += fieldSize(int(st.encSize))
		}
	}
	switch f.kind {
	case kindSum:
		size += 4 // aggregation_temporality, is_monotonic
	case kindHistogram:
		size += 2 // aggregation_temporality
	}
	return points, size
}

// appendPieces appends the chunk of pieces: one resource_metrics field for
// each run of pieces of increasing families (a row or part of one).
func (c *Converter) appendPieces(dst, resource, scope []byte, pieces []piece) []byte {
	for start := 0; start < len(pieces); {
		end := start + 1
		for end < len(pieces) && pieces[end].fam > pieces[end-1].fam {
			end++
		}
		dst = c.appendRow(dst, resource, scope, pieces[start:end])
		start = end
	}
	return dst
}

// appendRow appends one resource_metrics field holding the data points of
// pieces (of distinct families, after sizeScrape).
func (c *Converter) appendRow(dst, resource, scope []byte, pieces []piece) []byte {
	metrics := 0
	for _, p := range pieces {
		f := c.order[p.fam]
		if n, data := rangeData(f, f.series[p.lo:p.hi]); n > 0 {
			metrics += fieldSize(c.metricSize(f, data))
		}
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
	for _, p := range pieces {
		f := c.order[p.fam]
		sers := f.series[p.lo:p.hi]
		if n, data := rangeData(f, sers); n > 0 {
			dst = c.appendMetric(dst, f, sers, data)
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
	f.encPoints = 0
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
			if !boundsEqual(st.x.bounds, finite) {
				st.x.bounds = make([]float64, len(finite))
				for i, b := range finite {
					st.x.bounds[i] = b.bound
				}
			}
			st.x.encCount, st.x.encFinite = count, len(finite)
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
			st.x.encCount = count
			st.encStart = c.start(st, float64(count))
			size = fixedSize(st.encStart) + fixedSize(st.timeNs) + fixedSize(count) + doubleSize(st.x.sum)
			for _, q := range st.x.buckets {
				size += fieldSize(doubleSize(q.bound) + doubleSize(q.value))
			}
		default:
			continue
		}
		size += len(st.enc)
		st.encOK, st.encSize = true, int32(size)
		f.encPoints++
	}
}

// metricSize is the size of the Metric message of family f whose data
// message (Gauge, Sum, ...) has size data.
func (c *Converter) metricSize(f *family, data int) int {
	return stringSize(f.name) + stringSize(f.help) + stringSize(f.unit) + fieldSize(data) + len(c.encodedMeta(f))
}

// appendMetric appends the metrics field of family f holding the points of
// sers, whose data message has size data (after sizeFamily).
func (c *Converter) appendMetric(b []byte, f *family, sers []*series, data int) []byte {
	b = appendLen(b, fieldScopeMetricsMetrics, c.metricSize(f, data))
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
	b = appendLen(b, num, data)
	for _, st := range sers {
		if !st.encOK {
			continue
		}
		b = appendLen(b, fieldDataPoints, int(st.encSize))
		b = appendFixed64(b, fieldPointStart, st.encStart)
		b = appendFixed64(b, fieldPointTime, st.timeNs)
		switch f.kind {
		case kindGauge, kindSum:
			// Attributes (7) before the value oneof (4), as proto.Marshal.
			b = append(b, st.enc...)
			b = protowire.AppendTag(b, fieldNumberAsDouble, protowire.Fixed64Type)
			b = protowire.AppendFixed64(b, math.Float64bits(st.value))
			continue
		case kindHistogram:
			b = appendFixed64(b, fieldPointCount, st.x.encCount)
			if st.hasSum {
				b = protowire.AppendTag(b, fieldPointSum, protowire.Fixed64Type)
				b = protowire.AppendFixed64(b, math.Float64bits(st.x.sum))
			}
			finite := st.x.buckets[:st.x.encFinite]
			b = appendLen(b, fieldHistCounts, 8*(len(finite)+1))
			var prev uint64
			for _, bk := range finite {
				cum := uint64(bk.value)
				b = protowire.AppendFixed64(b, cum-prev)
				prev = cum
			}
			b = protowire.AppendFixed64(b, st.x.encCount-prev)
			if len(finite) > 0 {
				b = appendLen(b, fieldHistBounds, 8*len(finite))
				for _, bk := range finite {
					b = protowire.AppendFixed64(b, math.Float64bits(bk.bound))
				}
			}
		case kindSummary:
			b = appendFixed64(b, fieldPointCount, st.x.encCount)
			b = appendDouble(b, fieldPointSum, st.x.sum)
			for _, q := range st.x.buckets {
				b = appendLen(b, fieldSummQuantiles, doubleSize(q.bound)+doubleSize(q.value))
				b = appendDouble(b, fieldQuantile, q.bound)
				b = appendDouble(b, fieldQuantileValue, q.value)
			}
		}
		b = append(b, st.enc...)
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
