package promtext

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// parseLabels parses a label set from just after its '{' to just after its
// '}', appending the labels to labels when store is set (exemplar labels are
// only checked). It returns the index after the '}'.
//
// The text format allows blanks around every token and a trailing comma, as
// expfmt does; OpenMetrics allows neither.
func (p *Parser) parseLabels(line []byte, i int, labels []Label, store bool) ([]Label, int, error) {
	if !p.om {
		i = skipBlanks(line, i)
	}
	if i < len(line) && line[i] == '}' {
		return labels, i + 1, nil
	}
	for {
		n := scanLabelName(line[i:])
		if n == 0 {
			return labels, i, p.errorf("invalid label name at %s", quote(line[i:]))
		}
		name := line[i : i+n : i+n]
		i += n
		if !p.om {
			i = skipBlanks(line, i)
		}
		if i >= len(line) || line[i] != '=' {
			return labels, i, p.errorf("expected '=' after label name %s", quote(name))
		}
		i++
		if !p.om {
			i = skipBlanks(line, i)
		}
		if i >= len(line) || line[i] != '"' {
			return labels, i, p.errorf("expected '\"' to start the value of label %s", quote(name))
		}
		var value []byte
		var err error
		if value, i, err = p.labelValue(line, i+1, store); err != nil {
			return labels, i, err
		}
		if store {
			if string(name) == "__name__" {
				return labels, i, p.errorf("label name __name__ is reserved")
			}
			if len(labels) == MaxLabels {
				return labels, i, p.errorf("more than %d labels", MaxLabels)
			}
			// Append a zero Label and fill it in place: appending a
			// composite literal makes the compiler build it on the stack
			// and copy it with wide loads that stall on store forwarding.
			labels = append(labels, Label{})
			l := &labels[len(labels)-1]
			l.Name, l.Value = name, value
		}
		if !p.om {
			i = skipBlanks(line, i)
		}
		if i >= len(line) {
			return labels, i, p.errorf("unterminated label set")
		}
		switch line[i] {
		case '}':
			return labels, i + 1, nil
		case ',':
			i++
			if !p.om {
				if i = skipBlanks(line, i); i < len(line) && line[i] == '}' {
					return labels, i + 1, nil
				}
			}
		default:
			return labels, i, p.errorf("expected ',' or '}' after the value of label %s", quote(name))
		}
	}
}

// labelValue parses a quoted label value from just after its opening quote
// and returns it unescaped and the index after its closing quote. A value
// without escapes is a slice of line; one with escapes is unescaped into
// p.unesc (when store is set; otherwise it is only checked). Values must be
// valid UTF-8.
func (p *Parser) labelValue(line []byte, i int, store bool) ([]byte, int, error) {
	rest := line[i:]
	q, nonASCII := scanQuoteOrBackslash(rest)
	if q < len(rest) && rest[q] == '"' {
		value := rest[:q:q]
		if nonASCII && !utf8.Valid(value) {
			return nil, i + q, p.errorf("label value %s is not valid UTF-8", quote(value))
		}
		return value, i + q + 1, nil
	}
	if q == len(rest) {
		return nil, len(line), p.errorf("unterminated label value")
	}
	return p.escapedLabelValue(line, i, store)
}

// escapedLabelValue is labelValue's slow path, for a value with escapes. The
// unescaped values of one line never outgrow the line, so growing p.unesc to
// the line's length before the first one keeps the earlier values of the
// line valid while later ones are appended.
func (p *Parser) escapedLabelValue(line []byte, i int, store bool) ([]byte, int, error) {
	if store && len(p.unesc) == 0 && cap(p.unesc) < len(line) {
		p.unesc = make([]byte, 0, len(line))
	}
	start := len(p.unesc)
	for j := i; j < len(line); j++ {
		c := line[j]
		switch c {
		case '"':
			if !utf8.Valid(line[i:j]) {
				return nil, j, p.errorf("label value %s is not valid UTF-8", quote(line[i:j]))
			}
			if !store {
				return nil, j + 1, nil
			}
			return p.unesc[start:len(p.unesc):len(p.unesc)], j + 1, nil
		case '\\':
			j++
			if j == len(line) {
				return nil, j, p.errorf("unterminated label value")
			}
			switch line[j] {
			case '\\', '"':
				c = line[j]
			case 'n':
				c = '\n'
			default:
				return nil, j, p.errorf("invalid escape sequence %s in label value", quote(line[j-1:j+1]))
			}
		}
		if store {
			p.unesc = append(p.unesc, c)
		}
	}
	return nil, len(line), p.errorf("unterminated label value")
}

// Constants for scanning eight bytes at a time.
const (
	ones   = 0x0101010101010101
	highs  = 0x8080808080808080
	quotes = ones * '"'
	slashs = ones * '\\'
)

// scanQuoteOrBackslash returns the index of the first '"' or '\\' in b (or
// len(b)), and whether a byte before it is not ASCII. It reads eight bytes
// at a time: most label values are short, where a call to bytes.IndexByte
// costs more than it saves, and one pass finds both bytes and checks for
// non-ASCII ones.
func scanQuoteOrBackslash(b []byte) (int, bool) {
	var high uint64
	i := 0
	for ; i+8 <= len(b); i += 8 {
		w := binary.LittleEndian.Uint64(b[i:])
		q, s := w^quotes, w^slashs
		// A zero byte in q or s is a match; (x-ones)&^x&highs flags the first
		// zero byte of x exactly (only bytes after it can be flagged
		// falsely).
		if t := ((q-ones)&^q | (s-ones)&^s) & highs; t != 0 {
			n := uint(bits.TrailingZeros64(t)) / 8
			high |= w & (1<<(8*n) - 1) & highs
			return i + int(n), high != 0
		}
		high |= w & highs
	}
	for ; i < len(b); i++ {
		if c := b[i]; c == '"' || c == '\\' {
			return i, high != 0
		} else {
			high |= uint64(c & 0x80)
		}
	}
	return len(b), high != 0
}

// smallLabelSet is the largest label set that duplicateLabel checks with a
// bit mask and pairwise comparison instead of sorting.
const smallLabelSet = 32

// duplicateLabel returns a label name that occurs twice in labels, or nil.
// Small sets use a 64-bit mask of name hashes, so that distinct names (the
// normal case) cost one pass; larger ones sort a scratch copy of the names.
func (p *Parser) duplicateLabel(labels []Label) []byte {
	if len(labels) < 2 {
		return nil
	}
	if len(labels) <= smallLabelSet {
		var seen uint64
		for i, l := range labels {
			bit := uint64(1) << (nameHash(l.Name) & 63)
			if seen&bit != 0 {
				for _, m := range labels[:i] {
					if bytes.Equal(m.Name, l.Name) {
						return l.Name
					}
				}
			}
			seen |= bit
		}
		return nil
	}
	names := p.names[:0]
	for _, l := range labels {
		names = append(names, l.Name)
	}
	p.names = names
	slices.SortFunc(names, bytes.Compare)
	for i := 1; i < len(names); i++ {
		if bytes.Equal(names[i-1], names[i]) {
			return names[i]
		}
	}
	return nil
}

// nameHash is a cheap hash of a non-empty label name for duplicateLabel.
func nameHash(b []byte) uint {
	return uint(len(b))*7 + uint(b[0])*3 + uint(b[len(b)-1])
}
