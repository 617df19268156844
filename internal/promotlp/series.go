package promotlp

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"strconv"
	"unsafe"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// series is the state of one series (one data point per scrape). It is kept
// small: a target can have tens of thousands. What only histograms and
// summaries (and series with a raw identity) need is in x.
type series struct {
	next *series // next series with the same identity hash
	fam  *family
	x    *seriesExt // histograms, summaries, raw identities; nil for others
	seen uint64     // last scrape generation that accepted the series

	// Kept across scrapes.
	startNs uint64
	last    float64 // last counter value or histogram/summary count

	// This scrape.
	timeNs  uint64
	value   float64
	created float64

	// The attributes, encoded as the data point fields they become; interned
	// in Converter.encs (series with the same labels share them). And what
	// the sizing pass of FinishEncoded found for this scrape's point.
	enc      string
	encStart uint64
	encSize  int32 // size of the data point message (data points are far below 2 GiB)
	pos      int32 // index in fam.series of the scrape that last accepted the series

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
	fresh      bool // created by this scrape
	keyed      bool // keyHash is set (Known)
	// keyHash is the hash of the promtext.Sample.Key of the series' value
	// sample in the last scrape that delivered it with its labels parsed.
	keyHash uint64
}

// seriesExt is the part of a series' state that only histograms and
// summaries use, and the raw identity of the rare series that need one.
type seriesExt struct {
	raw    []byte    // identity bytes, only when attrs is no plain image of the labels
	bounds []float64 // last explicit bounds, read-only, shared with the output

	// This scrape.
	count   float64
	sum     float64
	buckets []bucket // histogram buckets or summary quantiles

	// FinishEncoded.
	encCount  uint64
	encFinite int // histogram: finite buckets (sorted, at the start of buckets)
}

// rawKey returns the raw identity of a series whose attributes are no plain
// image of its labels, nil for the others.
func (st *series) rawKey() []byte {
	if st.x == nil {
		return nil
	}
	return st.x.raw
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
		last.rawKey() == nil && last.matchAttrs(labels, extra) {
		return last
	}
	// Exposition order rarely changes between scrapes: try the series that
	// came next in the previous scrape before hashing.
	var st *series
	if f.cursor < len(f.prev) {
		if p := f.prev[f.cursor]; p.seen != c.gen && p.kind == f.kind && p.rawKey() == nil && p.matchAttrs(labels, extra) {
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
	if c.overLimit() {
		return nil
	}
	created := st == nil
	if created {
		if st = c.newSeries(f, h, labels, extra); st == nil {
			c.stats.DroppedInvalid++
			return nil
		}
	}
	c.admit(f, st, created)
	return st
}

// overLimit tells whether the series limit keeps a further series out of
// the scrape, and counts the dropped sample.
func (c *Converter) overLimit() bool {
	if c.opts.SeriesLimit > 0 && c.stats.Series >= c.opts.SeriesLimit {
		c.stats.DroppedOverLimit++
		c.stats.LimitHit = true
		return true
	}
	return false
}

// admit accepts st into the scrape as the next series of f.
func (c *Converter) admit(f *family, st *series, created bool) {
	if !created {
		f.cursor = int(st.pos) + 1 // resynchronise the prediction
	}
	st.accept(c.gen, len(f.series))
	st.fresh = created
	f.series = append(f.series, st)
	c.stats.Series++
	c.lastSeries = st
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
	if raw := st.rawKey(); raw != nil {
		return bytes.Equal(raw, key)
	}
	return st.matchAttrs(labels, extra)
}

// matchAttrs compares the identifying labels with the attributes of a
// series whose attributes are a plain image of its labels.
func (st *series) matchAttrs(labels, extra []promtext.Label) bool {
	enc := unsafeBytes(st.enc)
	for j := range labels {
		l := &labels[j]
		if skipLabel(st.kind, l) {
			continue
		}
		var ok bool
		if enc, ok = matchKV(enc, l.Name, l.Value); !ok {
			return false
		}
	}
	for j := range extra {
		l := &extra[j]
		if len(l.Value) == 0 {
			continue
		}
		var ok bool
		if enc, ok = matchKV(enc, l.Name, l.Value); !ok {
			return false
		}
	}
	return len(enc) == 0
}

// matchKV tells whether enc starts with the attribute name=value as appendKV
// encodes it (valid UTF-8), and returns the rest. It is the hot path of
// finding a known series, so it compares the bytes in place rather than
// decoding the fields.
func matchKV(enc, name, value []byte) ([]byte, bool) {
	// Field tag (one byte: field 7 or 9), KeyValue length.
	kvLen, i, ok := readLen(enc, 1)
	if !ok || kvLen > len(enc)-i {
		return nil, false
	}
	end := i + kvLen
	if len(name) > 0 { // key: field 1
		if i >= end || enc[i] != fieldKVKey<<3|2 {
			return nil, false
		}
		n, j, ok := readLen(enc, i+1)
		if !ok || n != len(name) || n > end-j || string(enc[j:j+n]) != string(name) {
			return nil, false
		}
		i = j + n
	}
	// value: field 2, an AnyValue holding string_value (field 1).
	if i >= end || enc[i] != fieldKVValue<<3|2 {
		return nil, false
	}
	if _, i, ok = readLen(enc, i+1); !ok || i >= end || enc[i] != fieldAnyValueString<<3|2 {
		return nil, false
	}
	n, j, ok := readLen(enc, i+1)
	if !ok || n != len(value) || j+n != end || string(enc[j:end]) != string(value) {
		return nil, false
	}
	return enc[end:], true
}

// readLen reads the varint length at b[i:] and returns it and the index
// after it.
func readLen(b []byte, i int) (int, int, bool) {
	if i < len(b) && b[i] < 0x80 {
		return int(b[i]), i + 1, true
	}
	if i > len(b) {
		return 0, 0, false
	}
	v, n := protowire.ConsumeVarint(b[i:])
	if n < 0 || v > 1<<31 {
		return 0, 0, false
	}
	return int(v), i + n, true
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
	st.seen, st.pos = gen, int32(pos)
	st.hasValue, st.hasCount, st.hasSum, st.hasCreated, st.bad = false, false, false, false, false
	st.value, st.created = 0, 0
	if x := st.x; x != nil {
		x.count, x.sum = 0, 0
		x.buckets = x.buckets[:0]
	}
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
		st.x.count, st.hasCount, st.timeNs = s.Value, true, t
	case roleSum:
		if st.hasSum {
			st.bad = true
		}
		st.x.sum, st.hasSum = s.Value, true
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
		st.x.buckets = append(st.x.buckets, bucket{bound: bound, value: s.Value})
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

// unsafeBytes views s as bytes without copying; they must not be modified.
func unsafeBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// unsafeString views b as a string without copying; the string must not
// outlive b's contents.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
