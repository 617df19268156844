package promtext

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// rec is a Sample copied out of the callback, for comparisons.
type rec struct {
	Family string
	Type   MetricType
	Name   string
	Suffix Suffix
	Labels []lbl
	Value  float64
	TS     int64
	HasTS  bool
	Help   string
	Unit   string
}

type lbl struct{ Name, Value string }

// L builds a label list from name, value pairs.
func L(kv ...string) []lbl {
	if len(kv)%2 != 0 {
		panic("L needs pairs")
	}
	var out []lbl
	for i := 0; i < len(kv); i += 2 {
		out = append(out, lbl{kv[i], kv[i+1]})
	}
	return out
}

func toRec(s *Sample) rec {
	r := rec{
		Family: string(s.Family),
		Type:   s.Type,
		Name:   string(s.Name),
		Suffix: s.Suffix,
		Value:  s.Value,
		TS:     s.TimestampMs,
		HasTS:  s.HasTimestamp,
		Help:   string(s.Help),
		Unit:   string(s.Unit),
	}
	for _, l := range s.Labels {
		r.Labels = append(r.Labels, lbl{string(l.Name), string(l.Value)})
	}
	return r
}

// parseAll parses data with a fresh Parser and copies every sample.
func parseAll(data []byte, f Format) ([]rec, error) {
	var p Parser
	return parseWith(&p, data, f)
}

func parseWith(p *Parser, data []byte, f Format) ([]rec, error) {
	var out []rec
	err := p.Parse(data, f, func(s *Sample) error {
		out = append(out, toRec(s))
		return nil
	})
	return out, err
}

// sameFloat compares floats bit for bit, except that all NaNs are equal.
func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return math.Float64bits(a) == math.Float64bits(b)
}

func (r rec) equal(o rec) bool {
	if r.Family != o.Family || r.Type != o.Type || r.Name != o.Name || r.Suffix != o.Suffix ||
		!sameFloat(r.Value, o.Value) || r.HasTS != o.HasTS || r.TS != o.TS ||
		r.Help != o.Help || r.Unit != o.Unit || len(r.Labels) != len(o.Labels) {
		return false
	}
	for i := range r.Labels {
		if r.Labels[i] != o.Labels[i] {
			return false
		}
	}
	return true
}

func (r rec) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s%v", r.Name, r.Labels)
	fmt.Fprintf(&b, " %v", r.Value)
	if r.HasTS {
		fmt.Fprintf(&b, " @%d", r.TS)
	}
	fmt.Fprintf(&b, " [family=%q type=%v suffix=%q help=%q unit=%q]", r.Family, r.Type, r.Suffix, r.Help, r.Unit)
	return b.String()
}

// diffRecs describes the first difference between two sample lists, or "".
func diffRecs(got, want []rec) string {
	for i := 0; i < len(got) && i < len(want); i++ {
		if !got[i].equal(want[i]) {
			return fmt.Sprintf("sample %d:\n got  %v\n want %v", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d samples, want %d", len(got), len(want))
	}
	return ""
}

// serialise writes samples back in format f, with a HELP, TYPE (and UNIT)
// block whenever the family metadata changes, so that parsing the result
// yields the same samples.
func serialise(f Format, recs []rec) []byte {
	type meta struct {
		family string
		typ    MetricType
		help   string
		unit   string
	}
	var b []byte
	var last meta
	have := false
	for _, r := range recs {
		m := meta{r.Family, r.Type, r.Help, r.Unit}
		if !have || m != last {
			b = append(b, "# HELP "+r.Family+" "...)
			b = appendEscaped(b, r.Help, false)
			b = append(b, "\n# TYPE "+r.Family+" "...)
			b = append(b, typeWord(f, r.Type)...)
			b = append(b, '\n')
			if f == FormatOpenMetrics {
				b = append(b, "# UNIT "+r.Family+" "+r.Unit+"\n"...)
			}
			last, have = m, true
		}
		b = append(b, r.Name...)
		if len(r.Labels) > 0 {
			b = append(b, '{')
			for i, l := range r.Labels {
				if i > 0 {
					b = append(b, ',')
				}
				b = append(b, l.Name+`="`...)
				b = appendEscaped(b, l.Value, true)
				b = append(b, '"')
			}
			b = append(b, '}')
		}
		b = append(b, ' ')
		b = strconv.AppendFloat(b, r.Value, 'g', -1, 64)
		if r.HasTS {
			b = append(b, ' ')
			if f == FormatOpenMetrics {
				b = appendSeconds(b, r.TS)
			} else {
				b = strconv.AppendInt(b, r.TS, 10)
			}
		}
		b = append(b, '\n')
	}
	if f == FormatOpenMetrics {
		b = append(b, "# EOF\n"...)
	}
	return b
}

func typeWord(f Format, t MetricType) string {
	if t == TypeUnknown && f == FormatText {
		return "untyped"
	}
	return t.String()
}

// appendEscaped escapes backslash and newline, and the double quote when
// quote is set.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendSeconds writes milliseconds as exact decimal seconds.
func appendSeconds(b []byte, ms int64) []byte {
	u := uint64(ms)
	if ms < 0 {
		b = append(b, '-')
		u = uint64(-ms)
	}
	b = strconv.AppendUint(b, u/1000, 10)
	return fmt.Appendf(b, ".%03d", u%1000)
}
