package promotlp

import (
	"bytes"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// exportedPrefix is what Prometheus prepends to an exposed label that a
// target label overrides.
const exportedPrefix = "exported_"

// newSeries creates and stores the series of family f with identity hash h
// (c.keyBuf holds the identity). It returns nil when the labels repeat a
// name. The series' attributes are encoded (as the data point fields they
// become) and interned right away: the encoding is all a series keeps of
// its labels.
func (c *Converter) newSeries(f *family, h uint64, labels, extra []promtext.Label) *series {
	exact := true
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
		if hasName(extra, l.Name) || c.isTargetLabel(l.Name) || !utf8.Valid(l.Name) || !utf8.Valid(l.Value) {
			exact = false
		}
	}
	for i := range extra {
		l := &extra[i]
		if len(l.Value) != 0 && (firstWithName(extra, l.Name) != i || !utf8.Valid(l.Name) || !utf8.Valid(l.Value)) {
			exact = false
		}
	}
	num := attrsField(f.kind)
	b := c.encBuf[:0]
	for i := range labels {
		l := &labels[i]
		if skipLabel(f.kind, l) {
			continue
		}
		name := l.Name
		if hasName(extra, name) || c.isTargetLabel(name) {
			name = c.exportedName(name, labels, extra, b)
		}
		b = appendKV(b, num, name, l.Value)
	}
	for i := range extra {
		l := &extra[i]
		if len(l.Value) != 0 && firstWithName(extra, l.Name) == i {
			b = appendKV(b, num, l.Name, l.Value)
		}
	}
	c.encBuf = b
	if !exact && duplicateKey(b) {
		return nil // names that differ only in invalid UTF-8 became equal
	}
	st := &series{fam: f, kind: f.kind, next: c.series[h]}
	if f.kind == kindHistogram || f.kind == kindSummary || !exact {
		st.x = &seriesExt{}
	}
	if !exact {
		st.x.raw = bytes.Clone(c.keyBuf)
	}
	st.enc = c.internEnc(b)
	c.series[h] = st
	c.nSeries++
	return st
}

// appendKV appends the string attribute name=value as a KeyValue field num,
// with invalid UTF-8 replaced by U+FFFD (protobuf strings must be UTF-8).
func appendKV(b []byte, num protowire.Number, name, value []byte) []byte {
	if !utf8.Valid(name) || !utf8.Valid(value) {
		name = []byte(validUTF8(string(name)))
		value = []byte(validUTF8(string(value)))
	}
	anySize := fieldSize(len(value)) // oneof: written even when empty
	b = appendLen(b, num, bytesSize(name)+fieldSize(anySize))
	if len(name) > 0 {
		b = protowire.AppendTag(b, fieldKVKey, protowire.BytesType)
		b = protowire.AppendBytes(b, name)
	}
	b = appendLen(b, fieldKVValue, anySize)
	b = protowire.AppendTag(b, fieldAnyValueString, protowire.BytesType)
	return protowire.AppendBytes(b, value)
}

// bytesSize is the size of a string field holding b (0 if empty).
func bytesSize(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	return fieldSize(len(b))
}

// attrsField is the field number of a data point's attributes.
func attrsField(k kind) protowire.Number {
	if k == kindHistogram {
		return fieldHistAttrs
	}
	if k == kindSummary {
		return fieldSummAttrs
	}
	return fieldNumberAttrs
}

// nextKV splits the first KeyValue off encoded attributes (as appendKV
// writes them): its key and value and the rest. ok is false when enc does
// not start with one.
func nextKV(enc []byte) (key, value, rest []byte, ok bool) {
	_, typ, n := protowire.ConsumeTag(enc)
	if n < 0 || typ != protowire.BytesType {
		return nil, nil, nil, false
	}
	kv, m := protowire.ConsumeBytes(enc[n:])
	if m < 0 {
		return nil, nil, nil, false
	}
	rest = enc[n+m:]
	for len(kv) > 0 {
		num, typ, n := protowire.ConsumeTag(kv)
		if n < 0 || typ != protowire.BytesType {
			return nil, nil, nil, false
		}
		v, m := protowire.ConsumeBytes(kv[n:])
		if m < 0 {
			return nil, nil, nil, false
		}
		switch num {
		case fieldKVKey:
			key = v
		case fieldKVValue:
			_, _, k := protowire.ConsumeTag(v)
			if k < 0 {
				return nil, nil, nil, false
			}
			if value, k = protowire.ConsumeBytes(v[k:]); k < 0 {
				return nil, nil, nil, false
			}
		}
		kv = kv[n+m:]
	}
	return key, value, rest, true
}

// decodeAttrs returns encoded attributes as KeyValue messages (for Finish).
func decodeAttrs(enc string) []*commonpb.KeyValue {
	if enc == "" {
		return nil
	}
	var out []*commonpb.KeyValue
	for b := unsafeBytes(enc); len(b) > 0; {
		key, value, rest, ok := nextKV(b)
		if !ok {
			break
		}
		out = append(out, stringKV(string(key), string(value)))
		b = rest
	}
	return out
}

// duplicateKey tells whether two encoded attributes have the same key.
func duplicateKey(enc []byte) bool {
	for b := enc; len(b) > 0; {
		key, _, rest, ok := nextKV(b)
		if !ok {
			return false
		}
		if encHasKey(enc[:len(enc)-len(b)], key) {
			return true
		}
		b = rest
	}
	return false
}

// hasName tells whether a non-empty label of ls is called name.
// isTargetLabel tells whether name is one of Options.TargetLabels.
func (c *Converter) isTargetLabel(name []byte) bool {
	for _, t := range c.opts.TargetLabels {
		if string(name) == t {
			return true
		}
	}
	return false
}

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
// with no label, extra label or attribute encoded in enc so far.
func (c *Converter) exportedName(name []byte, labels, extra []promtext.Label, enc []byte) []byte {
	b := append(c.names[:0], name...)
	for {
		b = append([]byte(exportedPrefix), b...)
		if !hasName(labels, b) && !hasName(extra, b) && !encHasKey(enc, b) {
			c.names = b
			return b
		}
	}
}

// encHasKey tells whether an encoded attribute is called key.
func encHasKey(enc, key []byte) bool {
	for len(enc) > 0 {
		k, _, rest, ok := nextKV(enc)
		if !ok {
			return false
		}
		if bytes.Equal(k, key) {
			return true
		}
		enc = rest
	}
	return false
}

// sharedEnc is the interned encoding of a series' attributes and the number
// of series using it.
type sharedEnc struct {
	b    string
	refs int
}

// internEnc returns the interned copy of encoded attributes b: the series
// of a target's families often share their labels.
func (c *Converter) internEnc(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	e := c.encs[string(b)]
	if e == nil {
		e = &sharedEnc{b: string(b)}
		c.encs[e.b] = e
	}
	e.refs++
	return e.b
}

// release drops a series' reference to its encoded attributes.
func (c *Converter) release(st *series) {
	st.keyed = false
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
