package promtext

import "bytes"

// parseSample parses a sample line into p.s:
//
//	name [labels] value [timestamp]                  (text format)
//	name [labels] SP value [SP timestamp] [exemplar] (OpenMetrics)
//
// The text format allows runs of blanks and tabs between the parts (and none
// between the label set and the value, as expfmt does); OpenMetrics wants
// exactly one space.
func (p *Parser) parseSample(line []byte) error {
	// Only label values may hold non-ASCII bytes, and labelValue checks
	// them; everything else on the line is checked against an ASCII grammar.
	n := p.scanSampleName(line)
	if n == 0 {
		return p.errorf("invalid metric name at %s", quote(line))
	}
	name := line[:n:n]
	i := n
	if !p.om {
		i = skipBlanks(line, i)
	}
	s := &p.s
	if p.SkipLabels != nil {
		if keyEnd, next, ok := p.quickKey(line, n, i); ok {
			s.Name, s.Key, s.Labels, s.LabelsSkipped = name, line[:keyEnd:keyEnd], nil, true
			p.classify(s)
			if p.SkipLabels(s) {
				return p.sampleTail(line, next, name, s.Key, nil, true)
			}
		}
	}
	labels := p.labels[:0]
	p.unesc = p.unesc[:0]
	keyEnd := n
	if i < len(line) && line[i] == '{' {
		var err error
		labels, i, err = p.parseLabels(line, i+1, labels, true)
		p.labels = labels // keep a grown backing array
		if err != nil {
			return err
		}
		if dup := p.duplicateLabel(labels); dup != nil {
			return p.errorf("duplicate label name %s", quote(dup))
		}
		keyEnd = i
		if !p.om {
			i = skipBlanks(line, i)
		}
	} else if !p.om && i == n && i < len(line) {
		return p.errorf("invalid character %s after metric name", quote(line[i:i+1]))
	}
	return p.sampleTail(line, i, name, line[:keyEnd:keyEnd], labels, false)
}

// quickKey finds, without parsing the labels, where the sample's key (its
// name and label set as written) ends, and where the value starts. ok is
// false for a line it cannot cut this way (an OpenMetrics line with a '#',
// which may start an exemplar; a text line with garbage after the name):
// those are parsed in full. In the text format nothing after the label set
// may hold a '}', so the set ends at the line's last '}'; a line that is
// malformed in its labels yields a key that no valid line has, so a caller
// that recognises only keys of lines it saw parsed in full (SkipLabels)
// never skips the labels of a malformed line.
func (p *Parser) quickKey(line []byte, n, i int) (keyEnd, next int, ok bool) {
	if i < len(line) && line[i] == '{' {
		rest := line[i:]
		if p.om && bytes.IndexByte(rest, '#') >= 0 {
			return 0, 0, false
		}
		j := bytes.LastIndexByte(rest, '}')
		if j < 0 {
			return 0, 0, false
		}
		keyEnd = i + j + 1
		next = keyEnd
		if !p.om {
			next = skipBlanks(line, keyEnd)
		}
		return keyEnd, next, true
	}
	if !p.om && i == n && i < len(line) {
		return 0, 0, false
	}
	return n, i, true
}

// sampleTail parses what follows the sample's name and labels (from i: the
// value, the timestamp, an OpenMetrics exemplar) and fills in p.s.
func (p *Parser) sampleTail(line []byte, i int, name, key []byte, labels []Label, skipped bool) error {
	if p.om {
		if i >= len(line) || line[i] != ' ' {
			return p.errorf("expected a space and a value after %s", quote(line[:i]))
		}
		i++
	}
	end := tokenEnd(line, i)
	if end == i {
		return p.errorf("missing value")
	}
	value, ok := parseValue(line[i:end])
	if !ok {
		return p.errorf("invalid value %s", quote(line[i:end]))
	}
	var ts int64
	var hasTS bool
	var err error
	if p.om {
		ts, hasTS, err = p.omTail(line, end)
	} else {
		ts, hasTS, err = p.textTail(line, end)
	}
	if err != nil {
		return err
	}
	// Field by field rather than with a composite literal, for the reason
	// given in parseLabels.
	s := &p.s
	s.Name, s.Key, s.Labels, s.LabelsSkipped = name, key, labels, skipped
	s.Value, s.TimestampMs, s.HasTimestamp = value, ts, hasTS
	p.classify(s)
	return nil
}

// scanSampleName returns the length of the metric name at the start of
// line. Most samples are named after the current family, so when the line
// starts with the family name (checked once, on its metadata line) only the
// rest of the name is scanned byte by byte.
func (p *Parser) scanSampleName(line []byte) int {
	f := p.fam
	if len(f) == 0 || len(line) < len(f) || !bytes.Equal(line[:len(f)], f) {
		return scanMetricName(line)
	}
	i := len(f)
	for i < len(line) && inSet(line[i], metricCharLo, metricCharHi) {
		i++
	}
	return i
}

// textTail parses what follows the value in the text format: an optional
// integer timestamp in milliseconds, and blanks.
func (p *Parser) textTail(line []byte, i int) (int64, bool, error) {
	i = skipBlanks(line, i)
	if i == len(line) {
		return 0, false, nil
	}
	end := tokenEnd(line, i)
	ts, ok := parseInt64(line[i:end])
	if !ok {
		return 0, false, p.errorf("invalid timestamp %s", quote(line[i:end]))
	}
	if j := skipBlanks(line, end); j != len(line) {
		return 0, false, p.errorf("unexpected %s after timestamp", quote(line[j:]))
	}
	return ts, true, nil
}

// omTail parses what follows the value in OpenMetrics: an optional timestamp
// in seconds and an optional exemplar, which is checked and skipped.
func (p *Parser) omTail(line []byte, i int) (int64, bool, error) {
	if i == len(line) {
		return 0, false, nil
	}
	if line[i] != ' ' {
		return 0, false, p.errorf("unexpected %s after value", quote(line[i:]))
	}
	i++
	var ts int64
	hasTS := false
	if i < len(line) && line[i] != '#' {
		end := tokenEnd(line, i)
		var ok bool
		if ts, ok = parseOMTimestamp(line[i:end]); !ok {
			return 0, false, p.errorf("invalid timestamp %s", quote(line[i:end]))
		}
		hasTS = true
		if end == len(line) {
			return ts, true, nil
		}
		if line[end] != ' ' {
			return 0, false, p.errorf("unexpected %s after timestamp", quote(line[end:]))
		}
		i = end + 1
	}
	if err := p.skipExemplar(line, i); err != nil {
		return 0, false, err
	}
	return ts, hasTS, nil
}

// skipExemplar checks the exemplar at line[i:], "# {labels} value [timestamp]",
// and discards it.
func (p *Parser) skipExemplar(line []byte, i int) error {
	if len(line)-i < 3 || line[i] != '#' || line[i+1] != ' ' || line[i+2] != '{' {
		return p.errorf("unexpected %s after sample", quote(line[i:]))
	}
	_, i, err := p.parseLabels(line, i+3, nil, false)
	if err != nil {
		return err
	}
	if i >= len(line) || line[i] != ' ' {
		return p.errorf("expected a space and a value after exemplar labels")
	}
	i++
	end := tokenEnd(line, i)
	if _, ok := parseValue(line[i:end]); !ok {
		return p.errorf("invalid exemplar value %s", quote(line[i:end]))
	}
	if end == len(line) {
		return nil
	}
	if line[end] != ' ' {
		return p.errorf("unexpected %s after exemplar value", quote(line[end:]))
	}
	i = end + 1
	end = tokenEnd(line, i)
	if _, ok := parseOMTimestamp(line[i:end]); !ok {
		return p.errorf("invalid exemplar timestamp %s", quote(line[i:end]))
	}
	if end != len(line) {
		return p.errorf("unexpected %s after exemplar", quote(line[end:]))
	}
	return nil
}
