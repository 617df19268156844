package promtext

import (
	"bytes"
	"errors"
	"io"
)

// MaxLineLength is the longest line, in bytes without its newline, that
// Parse accepts. It bounds the scratch memory a hostile payload can make a
// Parser hold: unescaped text is kept for at most one line.
const MaxLineLength = 1 << 20

// MaxLabels is the most labels Parse accepts on one sample. Kubernetes
// targets rarely exceed a few dozen (kube-state-metrics' *_labels families
// carry one per object label).
const MaxLabels = 512

// ReadBufferSize is the size of the buffer ParseReader reads into. It grows,
// up to MaxLineLength+1 bytes, only for a line that does not fit, and
// shrinks back when the parse ends.
const ReadBufferSize = 64 << 10

// Parser parses exposition payloads. It is reusable and keeps its scratch
// buffers between calls, so that parsing allocates almost nothing once it
// has seen a payload of the same shape; it is not safe for concurrent use.
// The zero value is ready to use.
type Parser struct {
	// SkipLabels, if set, is asked before the labels of a sample line are
	// parsed, with the sample's Name, Key, Family, Type, Suffix, Help and
	// Unit filled in (not its Labels or Value). When it returns true the
	// labels are not parsed: the callback receives the sample with
	// LabelsSkipped set and Labels nil, and its value and timestamp parsed
	// and checked as always. A caller must return true only for a Key it
	// saw delivered with its labels parsed (the bytes are then known to be a
	// valid label set), which is what makes skipping safe: the labels of a
	// malformed line are never skipped, and a line is rejected exactly as
	// without SkipLabels. It is not asked for every line: an OpenMetrics line
	// with a '#' after its name is always parsed in full.
	SkipLabels func(*Sample) bool

	s       Sample   // handed to the callback
	labels  []Label  // backing array of s.Labels
	unesc   []byte   // unescaped label values of the current line
	helpBuf []byte   // unescaped HELP text of the current family
	famBuf  []byte   // name of the current family
	unitBuf []byte   // UNIT of the current family
	names   [][]byte // scratch for finding duplicates in large label sets
	rbuf    []byte   // ParseReader's read buffer

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

// ParseReader is Parse for a payload read from r: it reads and parses the
// payload piece by piece through a buffer of ReadBufferSize bytes (grown for
// a longer line, up to MaxLineLength+1), so that the payload is never held
// in memory as a whole. It accepts and rejects exactly what Parse accepts and
// rejects for the same bytes, and delivers the same samples, as they are
// read. A read error other than io.EOF stops parsing and is returned as it
// is (not as a *ParseError); the samples of the lines read completely before
// it have been delivered.
func (p *Parser) ParseReader(r io.Reader, f Format, fn func(*Sample) error) error {
	p.begin(f)
	err := p.parseReader(r, fn)
	p.end()
	if cap(p.rbuf) > ReadBufferSize {
		p.rbuf = nil // do not keep a buffer grown for one long line
	}
	return err
}

// parseReader is ParseReader's loop: buf[start:end] holds the bytes read
// but not yet parsed; complete lines are parsed in place, the incomplete
// last line is moved to the front before the next read.
func (p *Parser) parseReader(r io.Reader, fn func(*Sample) error) error {
	if cap(p.rbuf) < ReadBufferSize {
		p.rbuf = make([]byte, ReadBufferSize)
	}
	buf := p.rbuf[:cap(p.rbuf)]
	start, end := 0, 0
	scanned := 0 // buf[start:scanned] has no newline: small reads do not rescan it
	eof := false
	for {
		// Parse the complete lines buffered.
		for {
			n := bytes.IndexByte(buf[scanned:end], '\n')
			if n < 0 {
				scanned = end
				break
			}
			line := buf[start : scanned+n]
			start = scanned + n + 1
			scanned = start
			p.line++
			if len(line) > MaxLineLength {
				return p.errorf("line longer than %d bytes", MaxLineLength)
			}
			if p.om && isEOF(line) {
				return p.afterEOF(r, start < end)
			}
			if err := p.parseLine(line, fn); err != nil {
				return err
			}
		}
		if eof {
			break
		}
		// Keep the incomplete line and make room behind it.
		if start > 0 {
			end = copy(buf, buf[start:end])
			scanned, start = end, 0
		}
		if end == len(buf) {
			if end > MaxLineLength {
				p.line++
				return p.errorf("line longer than %d bytes", MaxLineLength)
			}
			grown := make([]byte, min(2*len(buf), MaxLineLength+1))
			copy(grown, buf[:end])
			buf = grown
			p.rbuf = grown
		}
		n, err := r.Read(buf[end:])
		end += n
		switch {
		case errors.Is(err, io.EOF):
			eof = true
		case err != nil:
			return err
		}
	}
	// The last line, without a newline.
	if start < end {
		line := buf[start:end]
		p.line++
		if len(line) > MaxLineLength {
			return p.errorf("line longer than %d bytes", MaxLineLength)
		}
		if p.om && isEOF(line) {
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

// afterEOF checks that nothing follows an OpenMetrics "# EOF" line: more
// buffers, or more bytes from r.
func (p *Parser) afterEOF(r io.Reader, buffered bool) error {
	var b [1]byte
	for !buffered {
		n, err := r.Read(b[:])
		if n > 0 {
			break
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
	p.line++
	return p.errorf("content after # EOF")
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
