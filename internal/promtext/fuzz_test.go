package promtext

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// fuzzSeeds are the table test inputs, small fixtures and a few OpenMetrics
// payloads, each in the format it is meant for.
func fuzzSeeds() []struct {
	data []byte
	om   bool
} {
	var seeds []struct {
		data []byte
		om   bool
	}
	add := func(s string, om bool) {
		seeds = append(seeds, struct {
			data []byte
			om   bool
		}{[]byte(s), om})
	}
	node, _ := nodeExporterPayload()
	kubelet, _ := kubeletPayload()
	cadvisor, _ := cadvisorPayload(1)
	for _, b := range [][]byte{node, kubelet, cadvisor} {
		// The first lines only: large seeds make the fuzzer slow to
		// mutate and minimise.
		for i := 0; i < 3; i++ {
			cut := bytes.LastIndexByte(b[:min(len(b), 1500)], '\n')
			add(string(b[:cut+1]), false)
			b = b[cut+1:]
		}
	}
	for _, s := range []string{
		"# TYPE foo counter\n# HELP foo Foo.\n# UNIT foo things\nfoo_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"x\"} 0.67 1520879602.890\nfoo_created{a=\"b\"} 1520430000.123\n# EOF\n",
		"# TYPE h histogram\nh_bucket{le=\"0.1\"} 8 # {} 0.054\nh_bucket{le=\"+Inf\"} 17\nh_sum 3.5\nh_count 17\n# EOF",
		"# TYPE s summary\ns{quantile=\"0.9\"} 2\ns_sum 10\ns_count 5\n# TYPE b info\nb_info{v=\"1\"} 1\n# TYPE st stateset\nst{st=\"a\"} 1\n# TYPE g gaugehistogram\ng_bucket{le=\"+Inf\"} 1\ng_gcount 1\ng_gsum 1\n# EOF\n",
		"a{b=\"c\\\\d\\\"e\\nf\"} NaN -1.5\n# EOF\n",
	} {
		add(s, true)
	}
	for _, s := range []string{
		"# HELP x a\\\\b\\nc\n# TYPE x summary\nx{quantile=\"0.5\"} 1 123\nx_sum 2\nx_count 3\n",
		"  w\t{ a = \"1\" , b=\"2\", }\t3 \t 4\t\n\nw{}5\nw 6",
		"# TYPE a histogram\n# TYPE b gauge\na_bucket{le=\"1\"} 1\nb 2\n",
		"v +Inf\nv -Inf\nv nan\nv 1e3\nv -0\nv .5\n",
		"foo{a=\"1\",a=\"2\"} 1\n",
	} {
		add(s, false)
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
// last metadata line), no blanks after the value or timestamp, and le and
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
