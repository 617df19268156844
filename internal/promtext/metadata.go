package promtext

import (
	"bytes"
	"unicode/utf8"
)

// textComment handles a text format comment line: "# HELP name text",
// "# TYPE name type", or anything else, which is ignored. Like expfmt it
// accepts blanks and tabs around the tokens, and no blank after '#'.
func (p *Parser) textComment(line []byte) error {
	rest := line[skipBlanks(line, 1):]
	end := tokenEnd(rest, 0)
	keyword := rest[:end]
	isHelp := string(keyword) == "HELP"
	if !isHelp && string(keyword) != "TYPE" {
		return nil
	}
	rest = rest[skipBlanks(rest, end):]
	if len(rest) == 0 {
		return nil // "# HELP" alone names nothing; expfmt ignores it too
	}
	n := scanMetricName(rest)
	if n == 0 || n < len(rest) && !isBlank(rest[n]) {
		return p.errorf("invalid metric name in %s line at %s", keyword, quote(rest))
	}
	name := rest[:n]
	rest = rest[skipBlanks(rest, n):]
	if isHelp {
		return p.setHelp(name, rest)
	}
	p.setFamily(name)
	if len(rest) == 0 {
		return nil // a TYPE line without a type leaves the type unknown
	}
	t, ok := textType(trimRightBlanks(rest))
	if !ok {
		return p.errorf("unknown metric type %s", quote(rest))
	}
	p.famType = t
	return nil
}

// textType maps a text format type name, in any case, to a MetricType.
// gaugehistogram and gauge_histogram are tolerated as expfmt does; the
// OpenMetrics-only types are not text format types.
func textType(b []byte) (MetricType, bool) {
	switch {
	case bytes.EqualFold(b, []byte("counter")):
		return TypeCounter, true
	case bytes.EqualFold(b, []byte("gauge")):
		return TypeGauge, true
	case bytes.EqualFold(b, []byte("histogram")):
		return TypeHistogram, true
	case bytes.EqualFold(b, []byte("summary")):
		return TypeSummary, true
	case bytes.EqualFold(b, []byte("untyped")):
		return TypeUnknown, true
	case bytes.EqualFold(b, []byte("gaugehistogram")), bytes.EqualFold(b, []byte("gauge_histogram")):
		return TypeGaugeHistogram, true
	}
	return TypeUnknown, false
}

// omComment handles an OpenMetrics comment line other than "# EOF":
// "# HELP name text", "# TYPE name type", "# UNIT name unit", each with
// single spaces; other comments are ignored.
func (p *Parser) omComment(line []byte) error {
	if len(line) < 7 || line[1] != ' ' || line[6] != ' ' {
		return nil
	}
	keyword := line[2:6]
	switch string(keyword) {
	case "HELP", "TYPE", "UNIT":
	default:
		return nil
	}
	rest := line[7:]
	n := scanMetricName(rest)
	if n == 0 || n < len(rest) && rest[n] != ' ' {
		return p.errorf("invalid metric name in %s line at %s", keyword, quote(rest))
	}
	name := rest[:n]
	if n < len(rest) {
		rest = rest[n+1:]
	} else {
		rest = rest[n:]
	}
	switch string(keyword) {
	case "HELP":
		return p.setHelp(name, rest)
	case "TYPE":
		t, ok := omType(rest)
		if !ok {
			return p.errorf("unknown metric type %s", quote(rest))
		}
		p.setFamily(name)
		p.famType = t
	default: // UNIT
		if scanUnit(rest) != len(rest) {
			return p.errorf("invalid unit %s", quote(rest))
		}
		p.setFamily(name)
		p.unitBuf = append(p.unitBuf[:0], rest...)
		p.unit = nilIfEmpty(p.unitBuf[:len(rest):len(rest)])
	}
	return nil
}

// omType maps an OpenMetrics type name (lower case only) to a MetricType.
func omType(b []byte) (MetricType, bool) {
	switch string(b) {
	case "counter":
		return TypeCounter, true
	case "gauge":
		return TypeGauge, true
	case "histogram":
		return TypeHistogram, true
	case "gaugehistogram":
		return TypeGaugeHistogram, true
	case "summary":
		return TypeSummary, true
	case "info":
		return TypeInfo, true
	case "stateset":
		return TypeStateSet, true
	case "unknown":
		return TypeUnknown, true
	}
	return TypeUnknown, false
}

// scanUnit returns the length of the run of metric name characters at the
// start of b (a unit may be empty and may start with a digit).
func scanUnit(b []byte) int {
	i := 0
	for i < len(b) && inSet(b[i], metricCharLo, metricCharHi) {
		i++
	}
	return i
}

// setFamily makes name the current family. A new name starts with no type,
// HELP or UNIT; the same name keeps what earlier lines set, since HELP, TYPE
// and UNIT of one family come on separate lines.
//
// The name, HELP and UNIT are copied: ParseReader reuses its buffer.
func (p *Parser) setFamily(name []byte) {
	if p.fam != nil && bytes.Equal(name, p.fam) {
		return
	}
	p.famBuf = append(p.famBuf[:0], name...)
	p.fam = p.famBuf[:len(name):len(name)]
	p.famType, p.help, p.unit = TypeUnknown, nil, nil
}

// setHelp makes name the current family and raw, unescaped, its HELP text.
// The escapes are \\, \n and \" in both formats (expfmt accepts \" in the
// text format too); any other escape is an error.
func (p *Parser) setHelp(name, raw []byte) error {
	p.setFamily(name)
	help := append(p.helpBuf[:0], raw...)
	if bytes.IndexByte(raw, '\\') >= 0 {
		var ok bool
		if help, ok = appendUnescaped(p.helpBuf[:0], raw); !ok {
			return p.errorf("invalid escape sequence in HELP text")
		}
	}
	p.helpBuf = help
	if !utf8.Valid(help) {
		return p.errorf("HELP text is not valid UTF-8")
	}
	p.help = nilIfEmpty(help[:len(help):len(help)])
	return nil
}

// appendUnescaped appends s with the escapes \\, \" and \n resolved. It
// reports false on any other escape or a trailing backslash.
func appendUnescaped(dst, s []byte) ([]byte, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			continue
		}
		if i++; i == len(s) {
			return dst, false
		}
		switch s[i] {
		case '\\', '"':
			dst = append(dst, s[i])
		case 'n':
			dst = append(dst, '\n')
		default:
			return dst, false
		}
	}
	return dst, true
}

// nilIfEmpty returns nil for an empty slice, so that "no HELP" and "empty
// HELP" look the same to consumers.
func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}
