package promtext

import (
	"math"
	"strconv"
	"unsafe"
)

// Character classes as 128-bit sets over ASCII, split into bytes 0-63 (lo)
// and 64-127 (hi). Constants rather than a lookup table keep the package free
// of global variables.
const (
	digitsLo  = 0x03FF000000000000 // '0'-'9'
	colonLo   = 0x0400000000000000 // ':'
	lettersHi = 0x07FFFFFE07FFFFFE // 'A'-'Z', 'a'-'z'
	underHi   = 0x0000000080000000 // '_'

	labelStartLo  = 0
	labelStartHi  = lettersHi | underHi
	labelCharLo   = digitsLo
	labelCharHi   = labelStartHi
	metricStartLo = colonLo
	metricStartHi = labelStartHi
	metricCharLo  = digitsLo | colonLo
	metricCharHi  = labelStartHi
)

// inSet reports whether c is in the ASCII set lo|hi.
func inSet(c byte, lo, hi uint64) bool {
	if c < 64 {
		return lo&(1<<c) != 0
	}
	if c < 128 {
		return hi&(1<<(c-64)) != 0
	}
	return false
}

// scanMetricName returns the length of the metric name at the start of b
// (0 if b does not start with one).
func scanMetricName(b []byte) int {
	if len(b) == 0 || !inSet(b[0], metricStartLo, metricStartHi) {
		return 0
	}
	i := 1
	for i < len(b) && inSet(b[i], metricCharLo, metricCharHi) {
		i++
	}
	return i
}

// scanLabelName returns the length of the label name at the start of b (0 if
// b does not start with one).
func scanLabelName(b []byte) int {
	if len(b) == 0 || !inSet(b[0], labelStartLo, labelStartHi) {
		return 0
	}
	i := 1
	for i < len(b) && inSet(b[i], labelCharLo, labelCharHi) {
		i++
	}
	return i
}

// isBlank reports whether c separates tokens in the text format.
func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// skipBlanks returns the index of the first non-blank byte of b at or after i.
func skipBlanks(b []byte, i int) int {
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	return i
}

// tokenEnd returns the index of the first blank at or after i, or len(b).
func tokenEnd(b []byte, i int) int {
	for i < len(b) && !isBlank(b[i]) {
		i++
	}
	return i
}

// trimRightBlanks removes trailing blanks.
func trimRightBlanks(b []byte) []byte {
	for len(b) > 0 && isBlank(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// unsafeString views b as a string without copying. The string must not
// outlive b or be kept by the callee: strconv's parsers copy the input into
// their errors.
func unsafeString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// hasFloatJunk reports whether b has a character that strconv.ParseFloat
// would accept but the exposition formats do not: the exponent mark of a
// hexadecimal float or a digit separator. This is the rule expfmt applies.
func hasFloatJunk(b []byte) bool {
	for _, c := range b {
		if c == 'p' || c == 'P' || c == '_' {
			return true
		}
	}
	return false
}

// maxExactDigits is the most decimal digits whose value is always exactly
// representable in a float64 (10^15 < 2^53).
const maxExactDigits = 15

// parseValue parses a sample value: a decimal float, or NaN, Inf or Infinity
// with an optional sign in any case, as strconv.ParseFloat accepts them. Hex
// floats, digit separators and values out of range are rejected.
func parseValue(b []byte) (float64, bool) {
	if f, ok := parseFloatFast(b); ok {
		return f, true
	}
	if len(b) == 0 || hasFloatJunk(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafeString(b), 64)
	return f, err == nil
}

// parseFloatFast converts the common forms of decimal floats exactly, or
// reports false to leave the rest to strconv.ParseFloat: [+-]digits[.digits]
// [(e|E)[+-]digits] with at most 15 significant digits and a decimal
// exponent (after moving the point behind the digits) within ±22. Then the
// digits and the power of ten are exact float64 values and one
// multiplication or division rounds correctly, which is the exact fast path
// of strconv.ParseFloat itself (Clinger's algorithm).
func parseFloatFast(b []byte) (float64, bool) {
	i, neg := 0, false
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg, i = b[0] == '-', 1
	}
	var mant uint64
	digits, exp := 0, 0
	start := i
	for ; i < len(b); i++ {
		d := b[i] - '0'
		if d > 9 {
			break
		}
		if mant != 0 || d != 0 {
			digits++
		}
		mant = mant*10 + uint64(d)
	}
	intEnd := i
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b); i++ {
			d := b[i] - '0'
			if d > 9 {
				break
			}
			if mant != 0 || d != 0 {
				digits++
			}
			mant = mant*10 + uint64(d)
			exp--
		}
	}
	if i == start || i == intEnd+1 && intEnd == start || digits > maxExactDigits {
		return 0, false // no digits at all, or too many for the fast path
	}
	if i < len(b) {
		if b[i] != 'e' && b[i] != 'E' {
			return 0, false
		}
		i++
		eneg := false
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			eneg, i = b[i] == '-', i+1
		}
		if i == len(b) {
			return 0, false
		}
		e := 0
		for ; i < len(b); i++ {
			d := b[i] - '0'
			if d > 9 || e > 1000 {
				return 0, false
			}
			e = e*10 + int(d)
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	f := float64(mant)
	switch {
	case mant == 0 || exp == 0:
	case exp > 0 && exp <= 22:
		f *= pow10(exp)
	case exp < 0 && exp >= -22:
		f /= pow10(-exp)
	default:
		return 0, false
	}
	if neg {
		f = -f
	}
	return f, true
}

// pow10 returns 10^n for 0 <= n <= 22, all exact in a float64.
func pow10(n int) float64 {
	switch n {
	case 0:
		return 1e0
	case 1:
		return 1e1
	case 2:
		return 1e2
	case 3:
		return 1e3
	case 4:
		return 1e4
	case 5:
		return 1e5
	case 6:
		return 1e6
	case 7:
		return 1e7
	case 8:
		return 1e8
	case 9:
		return 1e9
	case 10:
		return 1e10
	case 11:
		return 1e11
	case 12:
		return 1e12
	case 13:
		return 1e13
	case 14:
		return 1e14
	case 15:
		return 1e15
	case 16:
		return 1e16
	case 17:
		return 1e17
	case 18:
		return 1e18
	case 19:
		return 1e19
	case 20:
		return 1e20
	case 21:
		return 1e21
	default:
		return 1e22
	}
}

// parseInt64 parses a text format timestamp: a decimal integer with an
// optional sign, as strconv.ParseInt(s, 10, 64) accepts it.
func parseInt64(b []byte) (int64, bool) {
	neg, i := false, 0
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg, i = b[0] == '-', 1
	}
	if i == len(b) {
		return 0, false
	}
	var u uint64
	for ; i < len(b); i++ {
		d := b[i] - '0'
		if d > 9 || u > (1<<63)/10 {
			return 0, false
		}
		u = u*10 + uint64(d)
		if u > 1<<63 {
			return 0, false
		}
	}
	if neg {
		return int64(-u), true // -(1<<63) wraps to math.MinInt64, as it should
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// parseOMTimestamp parses an OpenMetrics timestamp (seconds, possibly
// fractional) into milliseconds, rounded to the nearest millisecond with
// halves away from zero. Decimal forms, with or without an exponent, are
// converted exactly (client_golang writes 1.700000000123e+09, which is not
// exact as a float64); others go through float64. NaN, infinities and
// values outside int64 milliseconds are rejected.
func parseOMTimestamp(b []byte) (int64, bool) {
	if ms, ok, exact := parseDecimalMs(b); exact {
		return ms, ok
	}
	if len(b) == 0 || hasFloatJunk(b) {
		return 0, false
	}
	f, err := strconv.ParseFloat(unsafeString(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	ms := math.Round(f * 1000)
	if ms >= math.MaxInt64 || ms <= math.MinInt64 {
		return 0, false
	}
	return int64(ms), true
}

// maxExactExponent bounds the exponents parseDecimalMs handles itself.
const maxExactExponent = 400

// parseDecimalMs converts [+-]digits[.digits][(e|E)[+-]digits] seconds to
// milliseconds exactly. exact is false when b has another form (for the
// float path); ok is false when it has this form but is out of range.
func parseDecimalMs(b []byte) (ms int64, ok, exact bool) {
	neg, i := false, 0
	if len(b) > 0 && (b[0] == '-' || b[0] == '+') {
		neg, i = b[0] == '-', 1
	}
	mantStart := i
	for i < len(b) && b[i]-'0' <= 9 {
		i++
	}
	intDigits := i - mantStart
	fracStart := i
	if i < len(b) && b[i] == '.' {
		i++
		fracStart = i
		for i < len(b) && b[i]-'0' <= 9 {
			i++
		}
	}
	mantEnd := i
	if intDigits+mantEnd-fracStart == 0 {
		return 0, false, false
	}
	exp := 0
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		eneg := false
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			eneg, i = b[i] == '-', i+1
		}
		if i == len(b) {
			return 0, false, false
		}
		for ; i < len(b); i++ {
			d := b[i] - '0'
			if d > 9 || exp > maxExactExponent {
				return 0, false, false
			}
			exp = exp*10 + int(d)
		}
		if eneg {
			exp = -exp
		}
	}
	if i != len(b) {
		return 0, false, false
	}
	// The digits before index point (in the digit sequence without the
	// '.') are whole milliseconds; the digit at point rounds.
	point := intDigits + exp + 3
	var u uint64
	k := 0
	roundUp := false
	for j := mantStart; j < mantEnd; j++ {
		if j == fracStart-1 && b[j] == '.' {
			continue
		}
		d := uint64(b[j] - '0')
		switch {
		case k < point:
			if u > math.MaxInt64/10 {
				return 0, false, true
			}
			u = u*10 + d
		case k == point:
			roundUp = d >= 5
		}
		k++
	}
	for ; k < point; k++ {
		if u > math.MaxInt64/10 {
			return 0, false, true
		}
		u *= 10
	}
	if roundUp {
		u++
	}
	if u > math.MaxInt64 {
		return 0, false, true
	}
	if neg {
		return -int64(u), true, true
	}
	return int64(u), true, true
}
