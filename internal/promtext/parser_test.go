package promtext

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

var (
	inf  = math.Inf(1)
	nan  = math.NaN()
	negZ = math.Copysign(0, -1)
)

// parseCase is one table test: input in a format, and either the samples it
// yields or the error (message fragment and line) it stops with.
type parseCase struct {
	name    string
	format  Format
	in      string
	want    []rec
	wantErr string // fragment of ParseError.Msg; "" means success
	errLine int
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAll([]byte(tc.in), tc.format)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if d := diffRecs(got, tc.want); d != "" {
					t.Fatal(d)
				}
				return
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("Parse error = %v, want a *ParseError containing %q", err, tc.wantErr)
			}
			if !strings.Contains(pe.Msg, tc.wantErr) || (tc.errLine != 0 && pe.Line != tc.errLine) {
				t.Fatalf("Parse error = %v, want %q on line %d", err, tc.wantErr, tc.errLine)
			}
			// The samples before the bad line have been delivered.
			if d := diffRecs(got, tc.want); d != "" {
				t.Fatalf("samples before the error: %s", d)
			}
		})
	}
}

func TestParseText(t *testing.T) { runParseCases(t, textCases()) }

func TestParseTextErrors(t *testing.T) { runParseCases(t, textErrorCases()) }

func TestParseOpenMetrics(t *testing.T) { runParseCases(t, omCases()) }

func TestParseOpenMetricsErrors(t *testing.T) { runParseCases(t, omErrorCases()) }

// textCases are well-formed text format payloads.
func textCases() []parseCase {
	return []parseCase{
		{
			name: "gauge with metadata, labels and timestamp",
			in: "# HELP node_load1 1m load average.\n" +
				"# TYPE node_load1 gauge\n" +
				"node_load1{instance=\"a\",job=\"node\"} 0.21 1700000000123\n",
			want: []rec{{Family: "node_load1", Type: TypeGauge, Name: "node_load1", Labels: L("instance", "a", "job", "node"),
				Value: 0.21, TS: 1700000000123, HasTS: true, Help: "1m load average."}},
		},
		{
			name: "counter family is the full name",
			in:   "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 1027\n",
			want: []rec{{Family: "http_requests_total", Type: TypeCounter, Name: "http_requests_total", Labels: L("code", "200"), Value: 1027}},
		},
		{
			name: "counter _created belongs to the family, _total does not in text",
			in:   "# TYPE foo counter\nfoo 1\nfoo_created 1.7e9\nfoo_total 2\n",
			want: []rec{
				{Family: "foo", Type: TypeCounter, Name: "foo", Value: 1},
				{Family: "foo", Type: TypeCounter, Name: "foo_created", Suffix: SuffixCreated, Value: 1.7e9},
				{Family: "foo_total", Name: "foo_total", Value: 2},
			},
		},
		{
			name: "histogram",
			in: "# HELP rpc_seconds RPC latency.\n# TYPE rpc_seconds histogram\n" +
				"rpc_seconds_bucket{le=\"0.1\"} 3\nrpc_seconds_bucket{le=\"+Inf\"} 5\n" +
				"rpc_seconds_sum 1.5\nrpc_seconds_count 5\nrpc_seconds_created 1.7e9\n",
			want: []rec{
				{Family: "rpc_seconds", Type: TypeHistogram, Name: "rpc_seconds_bucket", Suffix: SuffixBucket, Labels: L("le", "0.1"), Value: 3, Help: "RPC latency."},
				{Family: "rpc_seconds", Type: TypeHistogram, Name: "rpc_seconds_bucket", Suffix: SuffixBucket, Labels: L("le", "+Inf"), Value: 5, Help: "RPC latency."},
				{Family: "rpc_seconds", Type: TypeHistogram, Name: "rpc_seconds_sum", Suffix: SuffixSum, Value: 1.5, Help: "RPC latency."},
				{Family: "rpc_seconds", Type: TypeHistogram, Name: "rpc_seconds_count", Suffix: SuffixCount, Value: 5, Help: "RPC latency."},
				{Family: "rpc_seconds", Type: TypeHistogram, Name: "rpc_seconds_created", Suffix: SuffixCreated, Value: 1.7e9, Help: "RPC latency."},
			},
		},
		{
			name: "summary",
			in: "# TYPE go_gc_duration_seconds summary\n" +
				"go_gc_duration_seconds{quantile=\"0.5\"} 4.1e-05\ngo_gc_duration_seconds_sum 0.5\ngo_gc_duration_seconds_count 92\n" +
				"go_gc_duration_seconds_bucket 1\n",
			want: []rec{
				{Family: "go_gc_duration_seconds", Type: TypeSummary, Name: "go_gc_duration_seconds", Labels: L("quantile", "0.5"), Value: 4.1e-05},
				{Family: "go_gc_duration_seconds", Type: TypeSummary, Name: "go_gc_duration_seconds_sum", Suffix: SuffixSum, Value: 0.5},
				{Family: "go_gc_duration_seconds", Type: TypeSummary, Name: "go_gc_duration_seconds_count", Suffix: SuffixCount, Value: 92},
				{Family: "go_gc_duration_seconds_bucket", Name: "go_gc_duration_seconds_bucket", Value: 1},
			},
		},
		{
			name: "gauge histogram tolerated in text",
			in:   "# TYPE q gauge_histogram\nq_bucket{le=\"1\"} 1\nq_gcount 1\nq_gsum 2\n# TYPE r GaugeHistogram\nr_bucket{le=\"+Inf\"} 0\n",
			want: []rec{
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_bucket", Suffix: SuffixBucket, Labels: L("le", "1"), Value: 1},
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_gcount", Suffix: SuffixGCount, Value: 1},
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_gsum", Suffix: SuffixGSum, Value: 2},
				{Family: "r", Type: TypeGaugeHistogram, Name: "r_bucket", Suffix: SuffixBucket, Labels: L("le", "+Inf"), Value: 0},
			},
		},
		{
			name: "untyped and missing TYPE are unknown",
			in:   "# TYPE a untyped\na 1\nb 2\n",
			want: []rec{{Family: "a", Name: "a", Value: 1}, {Family: "b", Name: "b", Value: 2}},
		},
		{
			name: "type names in any case",
			in:   "# TYPE a COUNTER\na 1\n# TYPE b Gauge\nb 2\n",
			want: []rec{{Family: "a", Type: TypeCounter, Name: "a", Value: 1}, {Family: "b", Type: TypeGauge, Name: "b", Value: 2}},
		},
		{
			name: "a sample belongs only to the last family",
			in:   "# TYPE a histogram\n# TYPE b gauge\na_bucket{le=\"1\"} 1\nb 2\n",
			want: []rec{
				{Family: "a_bucket", Name: "a_bucket", Labels: L("le", "1"), Value: 1},
				{Family: "b", Type: TypeGauge, Name: "b", Value: 2},
			},
		},
		{
			name: "suffix must suit the type",
			in:   "# TYPE g gauge\ng_sum 1\n# TYPE c counter\nc_bucket 2\n",
			want: []rec{{Family: "g_sum", Name: "g_sum", Value: 1}, {Family: "c_bucket", Name: "c_bucket", Value: 2}},
		},
		{
			name: "HELP without TYPE, HELP after TYPE, HELP of another family",
			in:   "# HELP a Help of a.\na 1\n# TYPE b gauge\n# HELP b Help of b.\nb 2\n# HELP c Help of c.\nb 3\n",
			want: []rec{
				{Family: "a", Name: "a", Value: 1, Help: "Help of a."},
				{Family: "b", Type: TypeGauge, Name: "b", Value: 2, Help: "Help of b."},
				{Family: "b", Name: "b", Value: 3},
			},
		},
		{
			name: "HELP escapes, trailing blanks kept, empty HELP is nil",
			in:   "# HELP a back\\\\slash new\\nline \\\"quote\\\" \n# TYPE a gauge\na 1\n# HELP b \nb 2\n",
			want: []rec{
				{Family: "a", Type: TypeGauge, Name: "a", Value: 1, Help: "back\\slash new\nline \"quote\" "},
				{Family: "b", Name: "b", Value: 2},
			},
		},
		{
			name: "label value escapes and awkward characters",
			in:   `m{a="x\\y",b="say \"hi\"",c="l1\nl2",d="{},=# ",e="ünï 日本",f=""} 1` + "\n",
			want: []rec{{Family: "m", Name: "m", Labels: L("a", `x\y`, "b", `say "hi"`, "c", "l1\nl2", "d", "{},=# ", "e", "ünï 日本", "f", ""), Value: 1}},
		},
		{
			name: "long non-ASCII label values",
			in:   "m{a=\"日本語のラベル値はとても長いです\",b=\"0123456789abcdef€\"} 1\n",
			want: []rec{{Family: "m", Name: "m", Labels: L("a", "日本語のラベル値はとても長いです", "b", "0123456789abcdef€"), Value: 1}},
		},
		{
			name: "values",
			in:   "v 1\nv -2\nv +3\nv 1.5e-3\nv .5\nv 5.\nv 1E3\nv -0\nv NaN\nv nan\nv +Inf\nv -Inf\nv Inf\nv inf\nv +infinity\nv 123456789012345678901\nv 1e308\n",
			want: []rec{
				{Family: "v", Name: "v", Value: 1}, {Family: "v", Name: "v", Value: -2}, {Family: "v", Name: "v", Value: 3},
				{Family: "v", Name: "v", Value: 1.5e-3}, {Family: "v", Name: "v", Value: .5}, {Family: "v", Name: "v", Value: 5},
				{Family: "v", Name: "v", Value: 1000}, {Family: "v", Name: "v", Value: negZ}, {Family: "v", Name: "v", Value: nan},
				{Family: "v", Name: "v", Value: nan}, {Family: "v", Name: "v", Value: inf}, {Family: "v", Name: "v", Value: -inf},
				{Family: "v", Name: "v", Value: inf}, {Family: "v", Name: "v", Value: inf}, {Family: "v", Name: "v", Value: inf},
				{Family: "v", Name: "v", Value: 123456789012345678901}, {Family: "v", Name: "v", Value: 1e308},
			},
		},
		{
			name: "timestamps are integer milliseconds",
			in:   "t 1 -5\nt 1 +7\nt 1 9223372036854775807\nt 1 -9223372036854775808\n",
			want: []rec{
				{Family: "t", Name: "t", Value: 1, TS: -5, HasTS: true}, {Family: "t", Name: "t", Value: 1, TS: 7, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: math.MaxInt64, HasTS: true}, {Family: "t", Name: "t", Value: 1, TS: math.MinInt64, HasTS: true},
			},
		},
		{
			name: "whitespace: blank lines, indentation, tabs, spaces in label sets, trailing comma, no final newline",
			in:   "\n  \n\t# TYPE w gauge\n  w\t{ a = \"1\" , b=\"2\", }\t3 \t 4\t\n\nw{}5\nw 6",
			want: []rec{
				{Family: "w", Type: TypeGauge, Name: "w", Labels: L("a", "1", "b", "2"), Value: 3, TS: 4, HasTS: true},
				{Family: "w", Type: TypeGauge, Name: "w", Value: 5},
				{Family: "w", Type: TypeGauge, Name: "w", Value: 6},
			},
		},
		{
			name: "comments are ignored, keyword without blank after #",
			in:   "# just a comment\n#\n# EOF\n# UNIT x seconds\n#TYPE x gauge\n# HELP\n# TYPE\nx 1\n",
			want: []rec{{Family: "x", Type: TypeGauge, Name: "x", Value: 1}},
		},
		{
			name: "TYPE without a type leaves the family untyped",
			in:   "# HELP x X.\n# TYPE x\nx 1\n",
			want: []rec{{Family: "x", Name: "x", Value: 1, Help: "X."}},
		},
		{
			name: "names with colons and underscores",
			in:   "_a:b_c{_l=\"v\",L2=\"w\"} 1\n:x 2\n",
			want: []rec{{Family: "_a:b_c", Name: "_a:b_c", Labels: L("_l", "v", "L2", "w"), Value: 1}, {Family: ":x", Name: ":x", Value: 2}},
		},
		{
			name: "Unit is OpenMetrics only",
			in:   "# UNIT x_seconds seconds\n# TYPE x_seconds gauge\nx_seconds 1\n",
			want: []rec{{Family: "x_seconds", Type: TypeGauge, Name: "x_seconds", Value: 1}},
		},
	}
}

// textErrorCases are malformed text format payloads.
func textErrorCases() []parseCase {
	ok := []rec{{Family: "ok", Name: "ok", Value: 1}}
	return []parseCase{
		{name: "missing value", in: "ok 1\nfoo\n", want: ok, wantErr: "missing value", errLine: 2},
		{name: "missing value after labels", in: "ok 1\n\nfoo{a=\"1\"}\n", want: ok, wantErr: "missing value", errLine: 3},
		{name: "bad value", in: "foo bar\n", wantErr: "invalid value"},
		{name: "hex float", in: "foo 0x1p3\n", wantErr: "invalid value"},
		{name: "digit separator", in: "foo 1_000\n", wantErr: "invalid value"},
		{name: "value out of range", in: "foo 1e999\n", wantErr: "invalid value"},
		{name: "carriage return", in: "foo 1\r\n", wantErr: "invalid value"},
		{name: "bad timestamp", in: "foo 1 abc\n", wantErr: "invalid timestamp"},
		{name: "float timestamp", in: "foo 1 1.5\n", wantErr: "invalid timestamp"},
		{name: "timestamp overflow", in: "foo 1 9223372036854775808\n", wantErr: "invalid timestamp"},
		{name: "trailing content", in: "foo 1 2 3\n", wantErr: "after timestamp"},
		{name: "exemplar in text", in: "foo 1 # {a=\"b\"} 1\n", wantErr: "invalid timestamp"},
		{name: "duplicate label", in: "foo{a=\"1\",b=\"2\",a=\"3\"} 1\n", wantErr: "duplicate label name \"a\""},
		{name: "reserved label", in: "foo{__name__=\"x\"} 1\n", wantErr: "reserved"},
		{name: "bad metric name", in: "1foo 1\n", wantErr: "invalid metric name"},
		{name: "label set without name", in: "{a=\"b\"} 1\n", wantErr: "invalid metric name"},
		{name: "quoted name", in: "{\"my.metric\"} 1\n", wantErr: "invalid metric name"},
		{name: "junk after name", in: "foo-1\n", wantErr: "after metric name"},
		{name: "bad label name", in: "foo{1a=\"x\"} 1\n", wantErr: "invalid label name"},
		{name: "quoted label name", in: "foo{\"a.b\"=\"x\"} 1\n", wantErr: "invalid label name"},
		{name: "empty label name", in: "foo{,} 1\n", wantErr: "invalid label name"},
		{name: "double comma", in: "foo{a=\"1\",,b=\"2\"} 1\n", wantErr: "invalid label name"},
		{name: "missing equals", in: "foo{a \"1\"} 1\n", wantErr: "expected '='"},
		{name: "unquoted value", in: "foo{a=1} 1\n", wantErr: "expected '\"'"},
		{name: "missing comma", in: "foo{a=\"1\" b=\"2\"} 1\n", wantErr: "expected ',' or '}'"},
		{name: "unterminated value", in: "foo{a=\"x} 1\n", wantErr: "unterminated label value"},
		{name: "unterminated escaped value", in: "foo{a=\"x\\\"} 1\n", wantErr: "unterminated label value"},
		{name: "unterminated label set", in: "foo{a=\"1\"\n", wantErr: "unterminated label set"},
		{name: "bad escape", in: "foo{a=\"\\t\"} 1\n", wantErr: "invalid escape"},
		{name: "invalid UTF-8 in label value", in: "foo{a=\"\xff\"} 1\n", wantErr: "UTF-8"},
		{name: "invalid UTF-8 in a long label value", in: "foo{a=\"0123456789abcdef\xc3\x28 and more\"} 1\n", wantErr: "UTF-8"},
		{name: "invalid UTF-8 in an escaped label value", in: "foo{a=\"\\\\\xe2\x82\"} 1\n", wantErr: "UTF-8"},
		{name: "non-ASCII metric name", in: "fö 1\n", wantErr: "after metric name"},
		{name: "non-ASCII after timestamp", in: "foo 1 2 ü\n", wantErr: "after timestamp"},
		{name: "non-ASCII value", in: "foo 1ü\n", wantErr: "invalid value"},
		{name: "unknown type", in: "# TYPE foo bogus\n", wantErr: "unknown metric type"},
		{name: "OpenMetrics type in text", in: "# TYPE foo info\n", wantErr: "unknown metric type"},
		{name: "bad HELP escape", in: "# HELP foo a\\tb\n", wantErr: "invalid escape"},
		{name: "trailing backslash in HELP", in: "# HELP foo a\\\n", wantErr: "invalid escape"},
		{name: "invalid UTF-8 in HELP", in: "# HELP foo \xc3\x28\n", wantErr: "UTF-8"},
		{name: "bad name in TYPE", in: "# TYPE 1foo counter\n", wantErr: "invalid metric name in TYPE"},
		{name: "junk after name in HELP", in: "# HELP foo{ x\n", wantErr: "invalid metric name in HELP"},
		{name: "line too long", in: "ok 1\nfoo{a=\"" + strings.Repeat("x", MaxLineLength) + "\"} 1\n", want: ok, wantErr: "line longer than", errLine: 2},
		{name: "too many labels", in: "foo{" + manyLabels(MaxLabels+1) + "} 1\n", wantErr: "more than 512 labels"},
		{name: "duplicate in a large label set", in: "foo{" + manyLabels(100) + ",l7=\"again\"} 1\n", wantErr: "duplicate label name \"l7\""},
	}
}

// manyLabels returns n distinct labels l0="v", l1="v", ...
func manyLabels(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("l" + strconv.Itoa(i) + `="v"`)
	}
	return b.String()
}

func TestParseMaxLabels(t *testing.T) {
	got, err := parseAll([]byte("foo{"+manyLabels(MaxLabels)+"} 1\n"), FormatText)
	if err != nil || len(got) != 1 || len(got[0].Labels) != MaxLabels {
		t.Fatalf("Parse with %d labels: %d samples, err %v", MaxLabels, len(got), err)
	}
}

// omCases are well-formed OpenMetrics payloads.
func omCases() []parseCase {
	om := FormatOpenMetrics
	return []parseCase{
		{
			name:   "counter with _total and _created",
			format: om,
			in: "# TYPE foo counter\n# HELP foo Foo things.\n# UNIT foo things\n" +
				"foo_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67 1520879602.890\n" +
				"foo_created{a=\"b\"} 1520430000.123\n# EOF\n",
			want: []rec{
				{Family: "foo", Type: TypeCounter, Name: "foo_total", Suffix: SuffixTotal, Labels: L("a", "b"), Value: 17, TS: 1520879607789, HasTS: true, Help: "Foo things.", Unit: "things"},
				{Family: "foo", Type: TypeCounter, Name: "foo_created", Suffix: SuffixCreated, Labels: L("a", "b"), Value: 1520430000.123, Help: "Foo things.", Unit: "things"},
			},
		},
		{
			name:   "histogram with exemplars",
			format: om,
			in: "# TYPE h_seconds histogram\n# UNIT h_seconds seconds\n" +
				"h_seconds_bucket{le=\"0.01\"} 0\nh_seconds_bucket{le=\"0.1\"} 8 # {} 0.054\n" +
				"h_seconds_bucket{le=\"+Inf\"} 17 # {trace_id=\"a\\\"b\"} 8.2 1520879603\n" +
				"h_seconds_sum 324789.3\nh_seconds_count 17\nh_seconds_created 1520430000.0\n# EOF\n",
			want: []rec{
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_bucket", Suffix: SuffixBucket, Labels: L("le", "0.01"), Value: 0, Unit: "seconds"},
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_bucket", Suffix: SuffixBucket, Labels: L("le", "0.1"), Value: 8, Unit: "seconds"},
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_bucket", Suffix: SuffixBucket, Labels: L("le", "+Inf"), Value: 17, Unit: "seconds"},
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_sum", Suffix: SuffixSum, Value: 324789.3, Unit: "seconds"},
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_count", Suffix: SuffixCount, Value: 17, Unit: "seconds"},
				{Family: "h_seconds", Type: TypeHistogram, Name: "h_seconds_created", Suffix: SuffixCreated, Value: 1520430000, Unit: "seconds"},
			},
		},
		{
			name:   "gauge histogram",
			format: om,
			in:     "# TYPE q gaugehistogram\nq_bucket{le=\"+Inf\"} 3\nq_gcount 3\nq_gsum 7\nq_count 3\n# EOF",
			want: []rec{
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_bucket", Suffix: SuffixBucket, Labels: L("le", "+Inf"), Value: 3},
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_gcount", Suffix: SuffixGCount, Value: 3},
				{Family: "q", Type: TypeGaugeHistogram, Name: "q_gsum", Suffix: SuffixGSum, Value: 7},
				{Family: "q_count", Name: "q_count", Value: 3},
			},
		},
		{
			name:   "summary, info, stateset, unknown, gauge",
			format: om,
			in: "# TYPE s summary\ns{quantile=\"0.9\"} 2\ns_sum 10\ns_count 5\ns_created 1.5e9\n" +
				"# TYPE build info\nbuild_info{version=\"1.2\"} 1\n" +
				"# TYPE st stateset\nst{st=\"a\"} 1\nst{st=\"b\"} 0\n" +
				"# TYPE u unknown\nu 3\n# TYPE g gauge\ng -1\n# EOF\n",
			want: []rec{
				{Family: "s", Type: TypeSummary, Name: "s", Labels: L("quantile", "0.9"), Value: 2},
				{Family: "s", Type: TypeSummary, Name: "s_sum", Suffix: SuffixSum, Value: 10},
				{Family: "s", Type: TypeSummary, Name: "s_count", Suffix: SuffixCount, Value: 5},
				{Family: "s", Type: TypeSummary, Name: "s_created", Suffix: SuffixCreated, Value: 1.5e9},
				{Family: "build", Type: TypeInfo, Name: "build_info", Suffix: SuffixInfo, Labels: L("version", "1.2"), Value: 1},
				{Family: "st", Type: TypeStateSet, Name: "st", Labels: L("st", "a"), Value: 1},
				{Family: "st", Type: TypeStateSet, Name: "st", Labels: L("st", "b"), Value: 0},
				{Family: "u", Name: "u", Value: 3},
				{Family: "g", Type: TypeGauge, Name: "g", Value: -1},
			},
		},
		{
			name:   "timestamps in seconds",
			format: om,
			in: "t 1 1520879607\nt 1 -0.5\nt 1 0.0005\nt 1 0.0004999\nt 1 1.5e9\nt 1 1.700000000123e+09\nt 1 +2.25\nt 1 .5\n" +
				"t 1 9223372036854775.807\n# EOF\n",
			want: []rec{
				{Family: "t", Name: "t", Value: 1, TS: 1520879607000, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: -500, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 1, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 0, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 1500000000000, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 1700000000123, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 2250, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: 500, HasTS: true},
				{Family: "t", Name: "t", Value: 1, TS: math.MaxInt64, HasTS: true},
			},
		},
		{
			name:   "bare counter name, other comments, empty UNIT and HELP",
			format: om,
			in:     "# TYPE c counter\n# HELP c \n# UNIT c \n# some comment\nc 1\n# EOF\n",
			want:   []rec{{Family: "c", Type: TypeCounter, Name: "c", Value: 1}},
		},
		{
			name:   "HELP escapes and leading spaces",
			format: om,
			in:     "# HELP a   x\\\"y\\\\z\\n\n# TYPE a gauge\na 1\n# EOF\n",
			want:   []rec{{Family: "a", Type: TypeGauge, Name: "a", Value: 1, Help: "  x\"y\\z\n"}},
		},
		{name: "empty payload is missing EOF", format: om, in: "", wantErr: "missing # EOF", errLine: 1},
	}
}

// omErrorCases are malformed OpenMetrics payloads.
func omErrorCases() []parseCase {
	om := FormatOpenMetrics
	ok := []rec{{Family: "ok", Name: "ok", Value: 1}}
	return []parseCase{
		{name: "missing EOF", format: om, in: "ok 1\n", want: ok, wantErr: "missing # EOF", errLine: 2},
		{name: "content after EOF", format: om, in: "ok 1\n# EOF\nfoo 2\n", want: ok, wantErr: "after # EOF", errLine: 3},
		{name: "blank line after EOF", format: om, in: "ok 1\n# EOF\n\n", want: ok, wantErr: "after # EOF", errLine: 3},
		{name: "blank line", format: om, in: "ok 1\n\nfoo 2\n# EOF\n", want: ok, wantErr: "empty line", errLine: 2},
		{name: "EOF with trailing space is a comment", format: om, in: "ok 1\n# EOF \n", want: ok, wantErr: "missing # EOF", errLine: 3},
		{name: "two spaces before value", format: om, in: "foo  1\n# EOF\n", wantErr: "missing value"},
		{name: "tab before value", format: om, in: "foo\t1\n# EOF\n", wantErr: "expected a space"},
		{name: "leading space", format: om, in: " foo 1\n# EOF\n", wantErr: "invalid metric name"},
		{name: "trailing space", format: om, in: "foo 1 \n# EOF\n", wantErr: "after sample"},
		{name: "trailing comma", format: om, in: "foo{a=\"1\",} 1\n# EOF\n", wantErr: "invalid label name"},
		{name: "space in label set", format: om, in: "foo{a=\"1\", b=\"2\"} 1\n# EOF\n", wantErr: "invalid label name"},
		{name: "no space after label set", format: om, in: "foo{a=\"1\"}1\n# EOF\n", wantErr: "expected a space"},
		{name: "text type name", format: om, in: "# TYPE foo untyped\n# EOF\n", wantErr: "unknown metric type"},
		{name: "upper case type", format: om, in: "# TYPE foo Counter\n# EOF\n", wantErr: "unknown metric type"},
		{name: "missing type", format: om, in: "# TYPE foo\n# EOF\n", wantErr: "unknown metric type"},
		{name: "bad unit", format: om, in: "# UNIT foo sec onds\n# EOF\n", wantErr: "invalid unit"},
		{name: "bad name in HELP", format: om, in: "# HELP 9foo x\n# EOF\n", wantErr: "invalid metric name in HELP"},
		{name: "NaN timestamp", format: om, in: "foo 1 NaN\n# EOF\n", wantErr: "invalid timestamp"},
		{name: "timestamp out of range", format: om, in: "foo 1 1e300\n# EOF\n", wantErr: "invalid timestamp"},
		{name: "decimal timestamp out of range", format: om, in: "foo 1 9223372036854776\n# EOF\n", wantErr: "invalid timestamp"},
		{name: "exemplar without value", format: om, in: "foo_total 1 # {a=\"b\"}\n# EOF\n", wantErr: "exemplar"},
		{name: "exemplar without labels", format: om, in: "foo_total 1 # 2\n# EOF\n", wantErr: "after sample"},
		{name: "exemplar bad labels", format: om, in: "foo_total 1 # {a=b} 2\n# EOF\n", wantErr: "expected '\"'"},
		{name: "exemplar invalid UTF-8", format: om, in: "foo_total 1 # {a=\"\xff\"} 2\n# EOF\n", wantErr: "UTF-8"},
		{name: "exemplar bad escape", format: om, in: "foo_total 1 # {a=\"\\q\"} 2\n# EOF\n", wantErr: "invalid escape"},
		{name: "exemplar bad value", format: om, in: "foo_total 1 # {a=\"b\"} x\n# EOF\n", wantErr: "invalid exemplar value"},
		{name: "exemplar bad timestamp", format: om, in: "foo_total 1 # {a=\"b\"} 1 x\n# EOF\n", wantErr: "invalid exemplar timestamp"},
		{name: "exemplar trailing junk", format: om, in: "foo_total 1 # {a=\"b\"} 1 2 3\n# EOF\n", wantErr: "after exemplar"},
		{name: "duplicate label", format: om, in: "foo{a=\"1\",a=\"1\"} 1\n# EOF\n", wantErr: "duplicate label"},
	}
}

func TestParseCallbackError(t *testing.T) {
	stop := errors.New("stop")
	var p Parser
	calls := 0
	err := p.Parse([]byte("a 1\nb 2\nc 3\n"), FormatText, func(s *Sample) error {
		calls++
		if string(s.Name) == "b" {
			return stop
		}
		return nil
	})
	if err != stop || calls != 2 {
		t.Fatalf("Parse = %v after %d calls, want the callback's error after 2", err, calls)
	}
}

// TestParserReuse checks that nothing leaks from one payload to the next:
// family metadata, format, and references to the old payload.
func TestParserReuse(t *testing.T) {
	var p Parser
	om := []byte("# TYPE x counter\n# HELP x X.\nx_total{a=\"e\\\\sc\"} 1\n# EOF\n")
	if _, err := parseWith(&p, om, FormatOpenMetrics); err != nil {
		t.Fatal(err)
	}
	for i, l := range p.labels[:cap(p.labels)] {
		if l.Name != nil || l.Value != nil {
			t.Fatalf("label %d still references the payload after Parse", i)
		}
	}
	if p.fam != nil || p.help != nil || p.s.Name != nil {
		t.Fatal("family or sample still references the payload after Parse")
	}
	got, err := parseWith(&p, []byte("x_total 2\n"), FormatText)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRecs(got, []rec{{Family: "x_total", Name: "x_total", Value: 2}}); d != "" {
		t.Fatal(d)
	}
}

// TestLabelValuesStable checks that unescaped values of one line stay intact
// while later values of the same line are unescaped into the same buffer.
func TestLabelValuesStable(t *testing.T) {
	var b strings.Builder
	b.WriteString("m{")
	for i := range 50 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("l" + strconv.Itoa(i) + `="v\\` + strconv.Itoa(i) + `\"` + strings.Repeat("y", i) + `"`)
	}
	b.WriteString("} 1\n")
	got, err := parseAll([]byte(b.String()), FormatText)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range got[0].Labels {
		if want := `v\` + strconv.Itoa(i) + `"` + strings.Repeat("y", i); l.Value != want {
			t.Fatalf("label %d = %q, want %q", i, l.Value, want)
		}
	}
}

func TestFormatFromContentType(t *testing.T) {
	for ct, want := range map[string]Format{
		"":                          FormatText,
		"text/plain; version=0.0.4": FormatText,
		"text/plain;version=0.0.4;charset=utf-8;escaping=underscores":              FormatText,
		"application/openmetrics-text":                                             FormatOpenMetrics,
		"application/openmetrics-text; version=1.0.0; charset=utf-8":               FormatOpenMetrics,
		" Application/OpenMetrics-Text ;version=0.0.1":                             FormatOpenMetrics,
		"application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily": FormatText,
		"application/json": FormatText,
	} {
		if got := FormatFromContentType(ct); got != want {
			t.Errorf("FormatFromContentType(%q) = %v, want %v", ct, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	types := []string{"unknown", "counter", "gauge", "histogram", "gaugehistogram", "summary", "info", "stateset"}
	for i, want := range types {
		if got := MetricType(i).String(); got != want {
			t.Errorf("MetricType(%d) = %q, want %q", i, got, want)
		}
	}
	suffixes := []string{"", "_total", "_bucket", "_sum", "_count", "_created", "_gcount", "_gsum", "_info"}
	for i, want := range suffixes {
		if got := Suffix(i).String(); got != want {
			t.Errorf("Suffix(%d) = %q, want %q", i, got, want)
		}
	}
	if FormatText.String() != "text" || FormatOpenMetrics.String() != "openmetrics" {
		t.Error("Format.String")
	}
	if got := (&ParseError{Line: 3, Msg: "bad"}).Error(); got != "promtext: line 3: bad" {
		t.Errorf("ParseError.Error() = %q", got)
	}
}
