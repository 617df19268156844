package promtext

import (
	"math"
	"strconv"
	"strings"
	"testing"
)

// FuzzNumbers checks the number parsers against strconv: parseValue is
// strconv.ParseFloat without hex floats and digit separators (the rule
// expfmt applies), parseInt64 is strconv.ParseInt(s, 10, 64), and
// parseOMTimestamp is within a millisecond of the float conversion.
func FuzzNumbers(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "+0", "1", "-1", "123456789012345", "1234567890123456", "12345678901234567890",
		"0.1", "1.5e-3", "1E22", "1e23", "9007199254740993", "4.35", "0.000000000000000000000123",
		".5", "5.", ".", "+.5", "1e", "1e+", "e5", "NaN", "-Inf", "+inf", "Infinity", "0x1p3", "1_0",
		"1.7976931348623157e308", "1e309", "4.9e-324", "1e-400", "00000000000000000000001.5",
		"1520879607.789", "-0.0005", "9223372036854775.807", "9223372036854775808", "-9223372036854775808",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := []byte(s)

		got, ok := parseValue(b)
		want, err := strconv.ParseFloat(s, 64)
		wantOK := err == nil && !strings.ContainsAny(s, "pP_")
		if ok != wantOK || ok && !sameFloat(got, want) {
			t.Fatalf("parseValue(%q) = %v, %v; strconv: %v, %v", s, got, ok, want, err)
		}

		gotI, ok := parseInt64(b)
		wantI, err := strconv.ParseInt(s, 10, 64)
		if ok != (err == nil) || ok && gotI != wantI {
			t.Fatalf("parseInt64(%q) = %v, %v; strconv: %v, %v", s, gotI, ok, wantI, err)
		}

		ms, ok := parseOMTimestamp(b)
		sec, err := strconv.ParseFloat(s, 64)
		if err != nil || strings.ContainsAny(s, "pP_") || math.IsNaN(sec) || math.IsInf(sec, 0) {
			if ok {
				t.Fatalf("parseOMTimestamp(%q) = %v, want an error", s, ms)
			}
			return
		}
		if want := sec * 1000; ok && math.Abs(float64(ms)-want) > 1+math.Abs(want)*1e-15 {
			t.Fatalf("parseOMTimestamp(%q) = %v, want about %v", s, ms, want)
		}
		if !ok && math.Abs(sec*1000) < 9e18 {
			t.Fatalf("parseOMTimestamp(%q) failed, want about %v", s, sec*1000)
		}
	})
}

func TestParseDecimalMsRounding(t *testing.T) {
	for s, want := range map[string]int64{
		"0.0005": 1, "0.00049": 0, "-0.0005": -1, "1.2345": 1235, "1.2344999": 1234, "7": 7000, "-7.5": -7500,
		"9223372036854775.807": math.MaxInt64, "-9223372036854775.807": -math.MaxInt64,
		"1.700000000123e+09": 1700000000123, "5e-4": 1, "5e-5": 0, "1.5E3": 1500000, "-2.5e-3": -3,
		"9.223372036854775807e15": math.MaxInt64, "0e9999": 0, "0.0000001e7": 1000, "12345e-2": 123450,
	} {
		if got, ok := parseOMTimestamp([]byte(s)); !ok || got != want {
			t.Errorf("parseOMTimestamp(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	for _, s := range []string{"1e16", "9.223372036854775808e15", "1e401", "9223372036854775.808", "9223372036854775.8075", "99999999999999999999", "", "-", "+.", "1.2.3", "1,5"} {
		if got, ok := parseOMTimestamp([]byte(s)); ok {
			t.Errorf("parseOMTimestamp(%q) = %v, want an error", s, got)
		}
	}
}

// FuzzScanQuoteOrBackslash checks the eight-bytes-at-a-time scan against a
// byte loop.
func FuzzScanQuoteOrBackslash(f *testing.F) {
	for _, s := range []string{"", "a", `abc"`, `abcdefgh"`, `abcdefghi\`, "ünïcödé\"x", "\x80\x80\x80\x80\x80\x80\x80\x80\"", `""`, "0123456789abcdef\\"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantHigh := len(b), false
		for i, c := range b {
			if c == '"' || c == '\\' {
				want = i
				break
			}
			if c >= 0x80 {
				wantHigh = true
			}
		}
		if got, high := scanQuoteOrBackslash(b); got != want || high != wantHigh {
			t.Fatalf("scanQuoteOrBackslash(%q) = %d, %v; want %d, %v", b, got, high, want, wantHigh)
		}
	})
}
