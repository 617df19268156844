package promotlp

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"strconv"
	"unsafe"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// series is the state of one series (one data point per scrape).
type series struct {
	hash  uint64
	next  *series // next series with the same hash
	fam   *family
	attrs []*commonpb.KeyValue // interned, read-only, shared with the output
	raw   []byte               // identity bytes, only when attrs is no plain image of the labels
	seen  uint64               // last scrape generation that accepted the series
	pos   int                  // index in fam.series of that scrape

	// Kept across scrapes.
	startNs uint64
	last    float64   // last counter value or histogram/summary count
	bounds  []float64 // last explicit bounds, read-only, shared with the output

	// This scrape.
	timeNs  uint64
	value   float64
	count   float64
	sum     float64
	created float64
	buckets []bucket // histogram buckets or summary quantiles

	// FinishEncoded: the attributes as encoded data point fields (built when
	// the series is first encoded, kept for its lifetime) and what the sizing
	// pass found for this scrape's point.
	enc       string // interned in Converter.encs (series with the same labels share it)
	encStart  uint64
	encCount  uint64
	encFinite int // histogram: finite buckets (sorted, at the start of buckets)
	encSize   int // size of the data point message

	// Small fields together, to keep the struct small: kind; kept across
	// scrapes: started, hasLast; this scrape: hasValue to bad; FinishEncoded:
	// encOK.
	kind       kind
	started    bool
	hasLast    bool
	hasValue   bool
	hasCount   bool
	hasSum     bool
	hasCreated bool
	bad        bool
	encOK      bool
}

// bucket is one le bucket (cumulative count) or one quantile.
type bucket struct {
	bound float64
	value float64
}

// skipLabel tells whether l is no part of a series' identity and
// attributes: empty values are absent labels, le and quantile are part of
// the histogram and summary data points.
func skipLabel(k kind, l *promtext.Label) bool {
	switch {
	case len(l.Value) == 0:
		return true
	case k == kindHistogram:
		return string(l.Name) == "le"
	case k == kindSummary:
		return string(l.Name) == "quantile"
	}
	return false
}

// lookup returns the series of family f with these labels, accepting it
// into the scrape (and creating it) if needed. It returns nil when the
// sample must be dropped (series limit, invalid labels); stats are updated.
func (c *Converter) lookup(f *family, labels, extra []promtext.Label) *series {
	// Histogram and summary samples come in runs of the same series.
	if last := c.lastSeries; last != nil && last.fam == f && last.seen == c.gen && f.kind >= kindHistogram &&
		last.raw == nil && last.matchAttrs(labels, extra) {
		return last
	}
	// Exposition order rarely changes between scrapes: try the series that
	// came next in the previous scrape before hashing.
	var st *series
	if f.cursor < len(f.prev) {
		if p := f.prev[f.cursor]; p.seen != c.gen && p.kind == f.kind && p.raw == nil && p.matchAttrs(labels, extra) {
			st = p
		}
	}
	var h uint64
	if st == nil {
		h = c.identity(f, labels, extra)
		for st = c.series[h]; st != nil; st = st.next {
			if st.fam == f && st.kind == f.kind && st.matches(c.keyBuf, labels, extra) {
				break
			}
		}
		if st != nil && st.seen == c.gen {
			c.lastSeries = st
			return st
		}
	}
	if c.opts.SeriesLimit > 0 && c.stats.Series >= c.opts.SeriesLimit {
		c.stats.DroppedOverLimit++
		c.stats.LimitHit = true
		return nil
	}
	if st == nil {
		if st = c.newSeries(f, h, labels, extra); st == nil {
			c.stats.DroppedInvalid++
			return nil
		}
	} else {
		f.cursor = st.pos + 1 // resynchronise the prediction
	}
	st.accept(c.gen, len(f.series))
	f.series = append(f.series, st)
	c.stats.Series++
	c.lastSeries = st
	return st
}

// identity fills c.keyBuf with the unambiguous identity of a series
// (family, then name and value of every identifying label) and returns its
// hash.
func (c *Converter) identity(f *family, labels, extra []promtext.Label) uint64 {
	b := appendLP(c.keyBuf[:0], f.key)
	for i := range labels {
		if l := &labels[i]; !skipLabel(f.kind, l) {
			b = appendLP(b, unsafeString(l.Name))
			b = appendLP(b, unsafeString(l.Value))
		}
	}
	for i := range extra {
		if l := &extra[i]; len(l.Value) != 0 {
			b = appendLP(b, unsafeString(l.Name))
			b = appendLP(b, unsafeString(l.Value))
		}
	}
	c.keyBuf = b
	return maphash.Bytes(c.seed, b)
}

// appendLP appends s with a length prefix.
func appendLP(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// matches tells whether st is the series with identity key and these labels.
func (st *series) matches(key []byte, labels, extra []promtext.Label) bool {
	if st.raw != nil {
		return bytes.Equal(st.raw, key)
	}
	return st.matchAttrs(labels, extra)
}

// matchAttrs compares the identifying labels with the attributes of a
// series whose attributes are a plain image of its labels.
func (st *series) matchAttrs(labels, extra []promtext.Label) bool {
	i := 0
	for j := range labels {
		l := &labels[j]
		if skipLabel(st.kind, l) {
			continue
		}
		if i == len(st.attrs) || !kvEqual(st.attrs[i], l) {
			return false
		}
		i++
	}
	for j := range extra {
		l := &extra[j]
		if len(l.Value) == 0 {
			continue
		}
		if i == len(st.attrs) || !kvEqual(st.attrs[i], l) {
			return false
		}
		i++
	}
	return i == len(st.attrs)
}

// kvEqual tells whether kv is the string attribute l.
func kvEqual(kv *commonpb.KeyValue, l *promtext.Label) bool {
	return kv.Key == string(l.Name) && stringValue(kv) == string(l.Value)
}

// stringValue returns the value of a string attribute.
func stringValue(kv *commonpb.KeyValue) string {
	if sv, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
		return sv.StringValue
	}
	return ""
}

// accept resets the per-scrape state of a series the scrape gen sees first.
func (st *series) accept(gen uint64, pos int) {
	st.seen, st.pos = gen, pos
	st.hasValue, st.hasCount, st.hasSum, st.hasCreated, st.bad = false, false, false, false, false
	st.value, st.count, st.sum, st.created = 0, 0, 0, 0
	st.buckets = st.buckets[:0]
}

// add records what sample s (with role r, taken at t) contributes.
func (st *series) add(c *Converter, r role, s *promtext.Sample, t uint64) {
	switch r {
	case roleValue:
		if st.hasValue {
			c.stats.DroppedInvalid++ // duplicate sample: keep the first
			return
		}
		st.value, st.hasValue, st.timeNs = s.Value, true, t
	case roleCreated:
		st.created, st.hasCreated = s.Value, true
	case roleCount:
		if st.hasCount {
			st.bad = true
		}
		st.count, st.hasCount, st.timeNs = s.Value, true, t
	case roleSum:
		if st.hasSum {
			st.bad = true
		}
		st.sum, st.hasSum = s.Value, true
		if !st.hasCount {
			st.timeNs = t
		}
	case roleBucket, roleQuantile:
		name := "le"
		if r == roleQuantile {
			name = "quantile"
		}
		bound, ok := labelFloat(s.Labels, name)
		if !ok {
			st.bad = true
			return
		}
		st.buckets = append(st.buckets, bucket{bound: bound, value: s.Value})
		if !st.hasCount {
			st.timeNs = t
		}
	}
}

// labelFloat parses the value of label name.
func labelFloat(labels []promtext.Label, name string) (float64, bool) {
	for i := range labels {
		if string(labels[i].Name) == name {
			// ParseFloat copies the string into any error it returns, so
			// the unsafe view does not outlive the call.
			v, err := strconv.ParseFloat(unsafeString(labels[i].Value), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// unsafeString views b as a string without copying; the string must not
// outlive b's contents.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
