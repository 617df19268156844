package promotlp

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// sharedKV is an interned attribute and the number of series using it.
type sharedKV struct {
	kv   *commonpb.KeyValue
	refs int
}

// exportedPrefix is what Prometheus prepends to an exposed label that a
// target label overrides.
const exportedPrefix = "exported_"

// newSeries creates and stores the series of family f with identity hash h
// (c.keyBuf holds the identity). It returns nil when the labels repeat a
// name.
func (c *Converter) newSeries(f *family, h uint64, labels, extra []promtext.Label) *series {
	n, exact := 0, true
	for i := range labels {
		l := &labels[i]
		if skipLabel(f.kind, l) {
			continue
		}
		for j := range i {
			if p := &labels[j]; !skipLabel(f.kind, p) && bytes.Equal(p.Name, l.Name) {
				return nil
			}
		}
		if hasName(extra, l.Name) {
			exact = false
		}
		if !utf8.Valid(l.Name) || !utf8.Valid(l.Value) {
			exact = false
		}
		n++
	}
	for i := range extra {
		l := &extra[i]
		if len(l.Value) == 0 {
			continue
		}
		if firstWithName(extra, l.Name) != i || !utf8.Valid(l.Name) || !utf8.Valid(l.Value) {
			exact = false
		}
		n++
	}
	attrs := make([]*commonpb.KeyValue, 0, n)
	for i := range labels {
		l := &labels[i]
		if skipLabel(f.kind, l) {
			continue
		}
		name := l.Name
		if hasName(extra, name) {
			name = c.exportedName(name, labels, extra, attrs)
		}
		attrs = append(attrs, c.intern(name, l.Value))
	}
	for i := range extra {
		l := &extra[i]
		if len(l.Value) != 0 && firstWithName(extra, l.Name) == i {
			attrs = append(attrs, c.intern(l.Name, l.Value))
		}
	}
	if !exact && duplicateKey(attrs) {
		// Names that differ only in invalid UTF-8 became equal.
		c.release(&series{attrs: attrs})
		return nil
	}
	st := &series{hash: h, fam: f, kind: f.kind, attrs: attrs, next: c.series[h]}
	if !exact {
		st.raw = bytes.Clone(c.keyBuf)
	}
	c.series[h] = st
	c.nSeries++
	return st
}

// duplicateKey tells whether two attributes have the same key.
func duplicateKey(attrs []*commonpb.KeyValue) bool {
	for i, kv := range attrs {
		for _, p := range attrs[:i] {
			if p.Key == kv.Key {
				return true
			}
		}
	}
	return false
}

// hasName tells whether a non-empty label of ls is called name.
func hasName(ls []promtext.Label, name []byte) bool {
	for i := range ls {
		if len(ls[i].Value) != 0 && bytes.Equal(ls[i].Name, name) {
			return true
		}
	}
	return false
}

// firstWithName returns the index of the first non-empty label called name.
func firstWithName(ls []promtext.Label, name []byte) int {
	for i := range ls {
		if len(ls[i].Value) != 0 && bytes.Equal(ls[i].Name, name) {
			return i
		}
	}
	return -1
}

// exportedName returns exported_<name>, prefixed again until it clashes
// with no label, extra label or attribute chosen so far.
func (c *Converter) exportedName(name []byte, labels, extra []promtext.Label, attrs []*commonpb.KeyValue) []byte {
	b := append(c.names[:0], name...)
	for {
		b = append([]byte(exportedPrefix), b...)
		if !hasName(labels, b) && !hasName(extra, b) && !hasKey(attrs, b) {
			c.names = b
			return b
		}
	}
}

// hasKey tells whether an attribute is called key.
func hasKey(attrs []*commonpb.KeyValue, key []byte) bool {
	for _, kv := range attrs {
		if kv.Key == string(key) {
			return true
		}
	}
	return false
}

// intern returns the shared string attribute name=value. Attributes are
// interned under their (UTF-8 sanitised) text, so release can find them
// again from the attribute alone.
func (c *Converter) intern(name, value []byte) *commonpb.KeyValue {
	if !utf8.Valid(name) || !utf8.Valid(value) {
		name = []byte(validUTF8(string(name)))
		value = []byte(validUTF8(string(value)))
	}
	b := internKey(c.kvBuf[:0], name, value)
	c.kvBuf = b
	if e := c.kvs[string(b)]; e != nil {
		e.refs++
		return e.kv
	}
	key := string(b)
	off := len(key) - len(value)
	kv := stringKV(key[off-len(name):off], key[off:])
	c.kvs[key] = &sharedKV{kv: kv, refs: 1}
	return kv
}

// internKey appends the interning key of name=value to b.
func internKey[T string | []byte](b []byte, name, value T) []byte {
	b = binary.AppendUvarint(b, uint64(len(name)))
	return append(append(b, name...), value...)
}

// release drops a series' references to its attributes.
func (c *Converter) release(st *series) {
	c.releaseEnc(st)
	for _, kv := range st.attrs {
		b := internKey(c.kvBuf[:0], kv.Key, stringValue(kv))
		c.kvBuf = b
		if e := c.kvs[string(b)]; e != nil {
			if e.refs--; e.refs <= 0 {
				delete(c.kvs, string(b))
			}
		}
	}
}

// sweep forgets the series and families the scrape did not see.
func (c *Converter) sweep() {
	if c.stats.Series != c.nSeries {
		for h, head := range c.series {
			var keep *series
			for st := head; st != nil; {
				next := st.next
				if st.seen == c.gen {
					st.next, keep = keep, st
				} else {
					c.release(st)
					c.nSeries--
				}
				st = next
			}
			switch {
			case keep == nil:
				delete(c.series, h)
			case keep != head:
				c.series[h] = keep
			}
		}
	}
	if len(c.families) != len(c.order) {
		for k, f := range c.families {
			if f.seen != c.gen {
				delete(c.families, k)
			}
		}
	}
}
