package promtext

import (
	"fmt"
	"strconv"
)

// ParseError says where and why parsing stopped.
type ParseError struct {
	// Line is the 1-based line number of the offending line. For a missing
	// OpenMetrics "# EOF" it is the line after the last one.
	Line int
	// Msg describes the problem.
	Msg string
}

// Error implements error.
func (e *ParseError) Error() string {
	return "promtext: line " + strconv.Itoa(e.Line) + ": " + e.Msg
}

// maxQuoted bounds how much of an offending token goes into an error message,
// so that an error about a hostile megabyte-long token stays short.
const maxQuoted = 64

// errorf returns a *ParseError for the current line.
func (p *Parser) errorf(format string, args ...any) error {
	return &ParseError{Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

// quote renders an offending token for an error message, truncated to
// maxQuoted bytes.
func quote(b []byte) string {
	if len(b) > maxQuoted {
		return strconv.Quote(string(b[:maxQuoted])) + "..."
	}
	return strconv.Quote(string(b))
}
