package promtext

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// chunkReader returns data in reads of at most n bytes.
type chunkReader struct {
	data []byte
	n    int
}

func (r *chunkReader) Read(b []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	k := copy(b[:min(len(b), r.n)], r.data)
	r.data = r.data[k:]
	return k, nil
}

// readers returns the ways of reading data that ParseReader must not tell
// apart.
func readers(data []byte) map[string]io.Reader {
	return map[string]io.Reader{
		"whole":     bytes.NewReader(data),
		"one-byte":  iotest.OneByteReader(bytes.NewReader(data)),
		"half":      iotest.HalfReader(bytes.NewReader(data)),
		"data-err":  iotest.DataErrReader(bytes.NewReader(data)),
		"chunks-7":  &chunkReader{data, 7},
		"chunks-4k": &chunkReader{data, 4093},
	}
}

func parseReaderWith(p *Parser, r io.Reader, f Format) ([]rec, error) {
	var out []rec
	err := p.ParseReader(r, f, func(s *Sample) error {
		out = append(out, toRec(s))
		return nil
	})
	return out, err
}

// sameResult compares two parse results: the same samples and the same error.
func sameResult(t *testing.T, what string, got []rec, gotErr error, want []rec, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) || gotErr != nil && gotErr.Error() != wantErr.Error() {
		t.Fatalf("%s: error %v, Parse gives %v", what, gotErr, wantErr)
	}
	if d := diffRecs(got, want); d != "" {
		t.Fatalf("%s: %s", what, d)
	}
}

// TestParseReaderMatchesParse checks ParseReader against Parse on every table
// case and fixture, read whole, byte by byte and in odd pieces.
func TestParseReaderMatchesParse(t *testing.T) {
	type input struct {
		data []byte
		f    Format
	}
	inputs := map[string]input{}
	for _, cases := range [][]parseCase{textCases(), textErrorCases(), omCases(), omErrorCases()} {
		for _, c := range cases {
			inputs[c.name] = input{[]byte(c.in), c.format}
		}
	}
	for name, data := range fixtures() {
		inputs["fixture "+name] = input{data, FormatText}
	}
	var p Parser
	for name, in := range inputs {
		want, wantErr := parseAll(in.data, in.f)
		for rname, r := range readers(in.data) {
			got, err := parseReaderWith(&p, r, in.f)
			sameResult(t, name+" ("+rname+")", got, err, want, wantErr)
		}
	}
}

// TestParseReaderLongLines checks lines longer than the read buffer: up to
// MaxLineLength they parse, beyond it they fail on the right line, and a
// buffer grown for them is not kept.
func TestParseReaderLongLines(t *testing.T) {
	long := func(n int) string {
		prefix := `m{a="`
		suffix := `"} 1`
		return prefix + strings.Repeat("x", n-len(prefix)-len(suffix)) + suffix
	}
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"twice the buffer", "a 1\n" + long(2*ReadBufferSize+3) + "\nb 2\n"},
		{"the limit", "a 1\n" + long(MaxLineLength) + "\nb 2\n"},
		{"the limit, last line", "a 1\n" + long(MaxLineLength)},
		{"over the limit", "a 1\n" + long(MaxLineLength+1) + "\nb 2\n"},
		{"over the limit, last line", "a 1\n" + long(MaxLineLength+1)},
		{"far over the limit", "a 1\n" + long(3*MaxLineLength) + "\nb 2\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, wantErr := parseAll([]byte(tc.in), FormatText)
			var p Parser
			got, err := parseReaderWith(&p, &chunkReader{[]byte(tc.in), 100000}, FormatText)
			sameResult(t, tc.name, got, err, want, wantErr)
			if cap(p.rbuf) > ReadBufferSize {
				t.Errorf("read buffer of %d bytes kept", cap(p.rbuf))
			}
		})
	}
}

// TestParseReaderReadError checks that a read error ends parsing with that
// error, after the samples of the complete lines before it.
func TestParseReaderReadError(t *testing.T) {
	boom := errors.New("connection reset")
	r := io.MultiReader(strings.NewReader("a 1\nb 2\nc"), iotest.ErrReader(boom))
	var p Parser
	got, err := parseReaderWith(&p, r, FormatText)
	if !errors.Is(err, boom) {
		t.Fatalf("ParseReader = %v, want the read error", err)
	}
	if d := diffRecs(got, []rec{{Family: "a", Name: "a", Value: 1}, {Family: "b", Name: "b", Value: 2}}); d != "" {
		t.Fatal(d)
	}
	// A read error right after # EOF is returned too: the payload may be
	// longer than it looks.
	r = io.MultiReader(strings.NewReader("a 1\n# EOF\n"), iotest.ErrReader(boom))
	if _, err := parseReaderWith(&p, r, FormatOpenMetrics); !errors.Is(err, boom) {
		t.Fatalf("ParseReader = %v after # EOF, want the read error", err)
	}
}

// TestParseReaderMetadataAcrossReads checks that a family's name, HELP and
// UNIT stay intact while later reads reuse the buffer that held them.
func TestParseReaderMetadataAcrossReads(t *testing.T) {
	var b strings.Builder
	b.WriteString("# HELP fam_seconds Seconds \\\\ of fam.\n# TYPE fam_seconds counter\n# UNIT fam_seconds seconds\n")
	for range 5000 {
		b.WriteString("fam_seconds_total{l=\"some value to fill the buffer\"} 1\n")
	}
	b.WriteString("# EOF\n")
	var p Parser
	n := 0
	err := p.ParseReader(&chunkReader{[]byte(b.String()), 1000}, FormatOpenMetrics, func(s *Sample) error {
		n++
		if string(s.Family) != "fam_seconds" || string(s.Help) != `Seconds \ of fam.` || string(s.Unit) != "seconds" || s.Type != TypeCounter {
			t.Fatalf("sample %d: family %q help %q unit %q type %v", n, s.Family, s.Help, s.Unit, s.Type)
		}
		return nil
	})
	if err != nil || n != 5000 {
		t.Fatalf("ParseReader = %v after %d samples", err, n)
	}
}

// TestParseReaderAllocs checks that a warmed-up Parser reads and parses
// realistic payloads without allocating.
func TestParseReaderAllocs(t *testing.T) {
	for name, data := range fixtures() {
		var p Parser
		nop := func(*Sample) error { return nil }
		r := bytes.NewReader(data)
		allocs := testing.AllocsPerRun(5, func() {
			r.Reset(data)
			if err := p.ParseReader(r, FormatText, nop); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per ParseReader, want 0", name, allocs)
		}
	}
}

// FuzzParseReader checks on arbitrary input, read in pieces of arbitrary
// size, that ParseReader never panics and yields exactly what Parse yields.
func FuzzParseReader(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(s.data, s.om, uint16(i%17+1))
	}
	f.Fuzz(func(t *testing.T, data []byte, om bool, chunk uint16) {
		format := FormatText
		if om {
			format = FormatOpenMetrics
		}
		want, wantErr := parseAll(data, format)
		var p Parser
		got, err := parseReaderWith(&p, &chunkReader{data, int(chunk) + 1}, format)
		sameResult(t, "chunked", got, err, want, wantErr)
		// Reused, read whole.
		got, err = parseReaderWith(&p, bytes.NewReader(data), format)
		sameResult(t, "reused", got, err, want, wantErr)
	})
}
