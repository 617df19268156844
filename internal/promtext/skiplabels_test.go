package promtext

import (
	"bytes"
	"errors"
	"testing"
)

// keyMemo remembers the labels of every Key it saw delivered with its labels
// parsed, and recognises those keys in later parses (SkipLabels).
type keyMemo struct {
	labels  map[string][]lbl
	skip    bool // recognise known keys (otherwise only learn)
	asked   int
	skipped int
}

func newKeyMemo() *keyMemo { return &keyMemo{labels: make(map[string][]lbl)} }

func (m *keyMemo) skipLabels(s *Sample) bool {
	m.asked++
	_, ok := m.labels[string(s.Key)]
	if m.skip && ok {
		m.skipped++
		return true
	}
	return false
}

// parse parses data with p and m as SkipLabels; skipped samples get the
// labels m remembered for their key, so that the records compare with a
// parse without SkipLabels.
func (m *keyMemo) parse(t *testing.T, p *Parser, data []byte, f Format, reader bool) ([]rec, error) {
	t.Helper()
	p.SkipLabels = m.skipLabels
	defer func() { p.SkipLabels = nil }()
	var out []rec
	fn := func(s *Sample) error {
		r := toRec(s)
		if s.LabelsSkipped {
			if s.Labels != nil {
				t.Fatalf("skipped sample %s has labels", s.Key)
			}
			r.Labels = m.labels[string(s.Key)]
		} else {
			if len(s.Key) == 0 || !bytes.HasPrefix(s.Key, s.Name) {
				t.Fatalf("sample %s has key %q", s.Name, s.Key)
			}
			m.labels[string(s.Key)] = r.Labels
		}
		out = append(out, r)
		return nil
	}
	if reader {
		return out, p.ParseReader(bytes.NewReader(data), f, fn)
	}
	return out, p.Parse(data, f, fn)
}

// relearn parses learn with a new keyMemo and Parser (learning its keys),
// then data with the same Parser, recognising the keys learnt.
func relearn(t *testing.T, learn, data []byte, f Format, reader bool) (*keyMemo, []rec, error) {
	t.Helper()
	m := newKeyMemo()
	var p Parser
	_, _ = m.parse(t, &p, learn, f, false)
	m.skip, m.asked = true, 0
	got, err := m.parse(t, &p, data, f, reader)
	return m, got, err
}

// sameAsFullParse relearns data after learn (see relearn) and checks that the
// parse with SkipLabels delivered exactly the samples and error of a parse of
// data without it.
func sameAsFullParse(t *testing.T, name string, learn, data []byte, f Format, reader bool) (*keyMemo, error) {
	t.Helper()
	m, got, err := relearn(t, learn, data, f, reader)
	want, wantErr := parseAll(data, f)
	sameResult(t, name, got, err, want, wantErr)
	return m, err
}

func TestSkipLabelsKnownKeys(t *testing.T) {
	first := []byte(`# TYPE c counter
c{a="1",b="x\"y"} 1
c{a="2"} 2 1700000000000
c 3
c   {a="3"}   4
g{path="/a}b"} 5
`)
	second := []byte(`# TYPE c counter
c{a="1",b="x\"y"} 11
c{a="2"} 12 1700000001000
c 13
c   {a="3"}   14
g{path="/a}b"} 15
c{a="4"} 16
`)
	for _, reader := range []bool{false, true} {
		m, _ := sameAsFullParse(t, "second scrape", first, second, FormatText, reader)
		if m.skipped != 5 {
			t.Fatalf("skipped the labels of %d samples, want 5 (all but the new series)", m.skipped)
		}
	}
}

// TestSkipLabelsMalformed: a line that starts like a known one but is
// malformed is rejected exactly as without SkipLabels.
func TestSkipLabelsMalformed(t *testing.T) {
	known := "# TYPE c counter\nc{a=\"1\"} 1\nc 2\n"
	for _, bad := range []string{
		"c{a=\"1\"} x\n",          // bad value
		"c{a=\"1\"} 1 2 3\n",      // garbage after the timestamp
		"c{a=\"1\"}} 1\n",         // a second brace: another key
		"c{a=\"1\"} 1 }\n",        // a brace after the value
		"c-1 2\n",                 // garbage after a known name
		"c{a=\"1\"\n",             // unterminated
		"c{a=\"1\"}",              // no value, last line
		"c{a=\"1\",a=\"1\"} 1\n",  // duplicate label
		"c{a=\"1\"}1\n",           // no blank: expfmt accepts it
		"c\t{a=\"1\"}\t1\t1000\n", // tabs
	} {
		sameAsFullParse(t, bad, []byte(known), []byte(known+bad), FormatText, false)
	}
}

// TestSkipLabelsOpenMetrics: exemplar lines are parsed in full; the rest
// skip their labels.
func TestSkipLabelsOpenMetrics(t *testing.T) {
	data := []byte(`# TYPE c counter
c_total{a="1"} 1 # {trace_id="x"} 1
c_total{a="2"} 2 1700000000.5
c_total 3
# EOF
`)
	m, _ := sameAsFullParse(t, "openmetrics", data, data, FormatOpenMetrics, false)
	if m.asked != 2 {
		t.Fatalf("SkipLabels asked for %d samples, want 2 (not for the exemplar line)", m.asked)
	}
}

// FuzzSkipLabels checks that a parse with SkipLabels (recognising every key
// that an earlier parse of another input delivered with labels) delivers
// exactly the samples and errors of a parse without it.
func FuzzSkipLabels(f *testing.F) {
	seeds := fuzzSeeds()
	for i, s := range seeds {
		f.Add(s.data, seeds[(i+1)%len(seeds)].data, s.om)
		f.Add(s.data, s.data, s.om)
	}
	f.Fuzz(func(t *testing.T, learn, data []byte, om bool) {
		format := FormatText
		if om {
			format = FormatOpenMetrics
		}
		for _, reader := range []bool{false, true} {
			_, err := sameAsFullParse(t, "with SkipLabels", learn, data, format, reader)
			var pe *ParseError
			if err != nil && !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
		}
	})
}
