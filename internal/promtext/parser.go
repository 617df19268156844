package promtext

import (
	"bytes"
)

// MaxLineLength is the longest line, in bytes without its newline, that
// Parse accepts. It bounds the scratch memory a hostile payload can make a
// Parser hold: unescaped text is kept for at most one line.
const MaxLineLength = 1 << 20

// MaxLabels is the most labels Parse accepts on one sample. Kubernetes
// targets rarely exceed a few dozen (kube-state-metrics' *_labels families
// carry one per object label).
const MaxLabels = 512

// Parser parses exposition payloads. It is reusable and keeps its scratch
// buffers between calls, so that parsing allocates almost nothing once it
// has seen a payload of the same shape; it is not safe for concurrent use.
// The zero value is ready to use.
type Parser struct {
	s       Sample   // handed to the callback
	labels  []Label  // backing array of s.Labels
	unesc   []byte   // unescaped label values of the current line
	helpBuf []byte   // unescaped HELP text of the current family
	names   [][]byte // scratch for finding duplicates in large label sets

	om   bool // parsing OpenMetrics rather than the text format
	line int  // current line number, 1-based

	// The current family, named by the last HELP, TYPE or UNIT line.
	fam     []byte
	famType MetricType
	help    []byte
	unit    []byte
}

// Parse calls fn for each sample in data, in order. An error from fn stops
// parsing and is returned as it is. On malformed input Parse returns a
// *ParseError; the samples before the offending line have been delivered,
// and the caller decides whether to keep a partial scrape.
//
// f selects the format; values other than FormatOpenMetrics mean
// FormatText. The *Sample and every slice in it are valid only during the
// callback. fn must not call Parse on the same Parser. Parse keeps no
// reference to data after it returns.
func (p *Parser) Parse(data []byte, f Format, fn func(*Sample) error) error {
	p.begin(f)
	err := p.parse(data, fn)
	p.end()
	return err
}

// begin resets the per-payload state.
func (p *Parser) begin(f Format) {
	p.om = f == FormatOpenMetrics
	p.line = 0
	p.fam, p.famType, p.help, p.unit = nil, TypeUnknown, nil, nil
}

// end drops every reference into the payload, so that a Parser kept for the
// next scrape does not keep the last payload alive.
func (p *Parser) end() {
	clear(p.labels[:cap(p.labels)])
	clear(p.names[:cap(p.names)])
	p.s = Sample{}
	p.fam, p.help, p.unit = nil, nil, nil
}

// parse splits data into lines and parses each.
func (p *Parser) parse(data []byte, fn func(*Sample) error) error {
	for pos := 0; pos < len(data); {
		p.line++
		rest := data[pos:]
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			n = len(rest)
		}
		pos += n + 1 // past the newline; past the end for the last line
		line := rest[:n]
		if len(line) > MaxLineLength {
			return p.errorf("line longer than %d bytes", MaxLineLength)
		}
		if p.om && isEOF(line) {
			if pos < len(data) {
				p.line++
				return p.errorf("content after # EOF")
			}
			return nil
		}
		if err := p.parseLine(line, fn); err != nil {
			return err
		}
	}
	if p.om {
		p.line++
		return p.errorf("missing # EOF")
	}
	return nil
}

// isEOF reports whether line is the OpenMetrics end marker.
func isEOF(line []byte) bool {
	return string(line) == "# EOF"
}

// parseLine parses one line without its newline.
func (p *Parser) parseLine(line []byte, fn func(*Sample) error) error {
	if !p.om {
		line = line[skipBlanks(line, 0):]
	}
	if len(line) == 0 {
		if p.om {
			return p.errorf("empty line")
		}
		return nil
	}
	if line[0] == '#' {
		if p.om {
			return p.omComment(line)
		}
		return p.textComment(line)
	}
	if err := p.parseSample(line); err != nil {
		return err
	}
	return fn(&p.s)
}
