package promtext

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// fuzzSeed is one seed input and whether it is OpenMetrics.
type fuzzSeed struct {
	data []byte
	om   bool
}

// fuzzSeeds are the table test inputs and the first lines of the fixtures.
func fuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	for _, cases := range [][]parseCase{textCases(), textErrorCases(), omCases(), omErrorCases()} {
		for _, c := range cases {
			if len(c.in) <= 4096 {
				seeds = append(seeds, fuzzSeed{[]byte(c.in), c.format == FormatOpenMetrics})
			}
		}
	}
	node, _ := nodeExporterPayload()
	kubelet, _ := kubeletPayload()
	cadvisor, _ := cadvisorPayload(1)
	for _, b := range [][]byte{node, kubelet, cadvisor} {
		// Three pieces of about 1.5 kB each: large seeds make the fuzzer
		// slow to mutate and minimise.
		for range 3 {
			cut := bytes.LastIndexByte(b[:min(len(b), 1500)], '\n') + 1
			seeds = append(seeds, fuzzSeed{b[:cut], false})
			b = b[cut:]
		}
	}
	return seeds
}

// FuzzParse checks on arbitrary input that Parse never panics or loops,
// reports errors as *ParseError with a plausible line, is deterministic
// across reuse of a Parser, and that what it accepts survives a round trip:
// serialising the samples and parsing them again yields the same samples.
// In the text format it also checks that whatever both Parse and expfmt
// accept yields the same values.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.data, s.om)
	}
	f.Fuzz(func(t *testing.T, data []byte, om bool) {
		format := FormatText
		if om {
			format = FormatOpenMetrics
		}
		var p Parser
		recs, err := parseWith(&p, data, format)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if lines := bytes.Count(data, []byte("\n")) + 1; pe.Line < 1 || pe.Line > lines+1 {
				t.Fatalf("error on line %d of %d: %v", pe.Line, lines, err)
			}
		} else {
			out := serialise(format, recs)
			again, err := parseWith(&p, out, format)
			if err != nil {
				t.Fatalf("re-parsing the serialised samples: %v\n%s", err, out)
			}
			if d := diffRecs(again, recs); d != "" {
				t.Fatalf("round trip: %s\n%s", d, out)
			}
		}

		// A reused Parser gives the same result.
		recs2, err2 := parseWith(&p, data, format)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
			t.Fatalf("reuse: error %v, first %v", err2, err)
		}
		if d := diffRecs(recs2, recs); d != "" {
			t.Fatalf("reuse: %s", d)
		}

		if format == FormatText {
			compareWithExpfmt(t, data, recs, err)
		}
	})
}

// compareWithExpfmt checks a text format result against expfmt: when both
// accept, the values agree; when only one accepts, the difference is one of
// the known, deliberate ones.
func compareWithExpfmt(t *testing.T, data []byte, recs []rec, err error) {
	fams, ferr := expfmtParseSafe(data)
	switch {
	case ferr != nil && ferr.Error() == errExpfmtPanic:
	case err == nil && ferr == nil:
		compareFlat(t, flattenRecs(recs), flattenFamilies(fams))
	case err != nil && ferr == nil:
		if !stricterThanExpfmt(err.(*ParseError).Msg) {
			t.Fatalf("Parse rejects what expfmt accepts: %v", err)
		}
	case err == nil && ferr != nil:
		if !expfmtStricter(data, ferr.Error()) {
			t.Fatalf("Parse accepts what expfmt rejects: %v", ferr)
		}
	}
}

// stricterThanExpfmt reports whether Parse's error is one that expfmt does
// not raise: the Prometheus 3 form with the name inside the braces
// ("{foo} 1", "{\"foo\",a=\"b\"} 1"), a value glued to the metric name
// ("foo+1"), HELP text that is not
// UTF-8, a repeated le or quantile label (expfmt checks duplicates only among
// the other labels), and the size limits.
func stricterThanExpfmt(msg string) bool {
	if strings.Contains(msg, "invalid metric name in") && strings.Contains(msg, `\"`) {
		return true // expfmt reads quotes in names as the UTF-8 syntax: # TYPE a"" counter
	}
	for _, s := range []string{
		"after metric name",
		`at "{`,  // a label set without a name before it
		`at "\"`, // a quoted name
		"HELP text is not valid UTF-8",
		`duplicate label name "le"`,
		`duplicate label name "quantile"`,
		"line longer than",
		"more than",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// expfmtStricter reports whether expfmt's error is one of the rules Parse
// deliberately does not enforce: a trailing newline on the last line,
// one HELP and one TYPE per family before its samples (Parse follows the
// last metadata line), no blanks after the value, timestamp or type, and le and
// quantile values that parse as floats (Parse leaves them to consumers).
func expfmtStricter(data []byte, msg string) bool {
	switch {
	case strings.Contains(msg, "unexpected end of input stream"):
		return !bytes.HasSuffix(data, []byte("\n"))
	case strings.Contains(msg, "second TYPE line"), strings.Contains(msg, "second HELP line"),
		strings.Contains(msg, "expected float as value for 'le' label"),
		strings.Contains(msg, "expected float as value for 'quantile' label"):
		return true
	case strings.HasSuffix(msg, `expected integer as timestamp, got ""`):
		return true
	case strings.Contains(msg, "unknown metric type "):
		_, s, _ := strings.Cut(msg, "unknown metric type ")
		u, err := strconv.Unquote(s)
		_, ok := textType(trimRightBlanks([]byte(u)))
		return err == nil && ok
	case strings.Contains(msg, "spurious string after timestamp: "):
		_, s, _ := strings.Cut(msg, "spurious string after timestamp: ")
		u, err := strconv.Unquote(s)
		return err == nil && strings.Trim(u, " \t") == ""
	}
	return false
}

const errExpfmtPanic = "expfmt panicked"

// expfmtParseSafe runs expfmt and turns a panic in it into an error: the
// fuzz test checks this package, not the reference.
func expfmtParseSafe(data []byte) (fams map[string]*dto.MetricFamily, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New(errExpfmtPanic)
		}
	}()
	return expfmtParse(data)
}
