package promtext

import "strings"

// Format is a text exposition format.
type Format uint8

const (
	// FormatText is the Prometheus text format, version 0.0.4.
	FormatText Format = iota
	// FormatOpenMetrics is the OpenMetrics 1.0 text format.
	FormatOpenMetrics
)

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case FormatText:
		return "text"
	case FormatOpenMetrics:
		return "openmetrics"
	default:
		return "unknown"
	}
}

// AcceptHeader is the Accept header a scraper should send: OpenMetrics 1.0.0
// preferred, OpenMetrics 0.0.1 (the same syntax) next, and the text format
// 0.0.4 accepted. It asks targets that have UTF-8 metric names to escape them
// with underscores, because the parser accepts only legacy names. It
// deliberately has no */* entry: client_golang answers */* with its first
// format, which is protobuf.
const AcceptHeader = "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.9," +
	"application/openmetrics-text;version=0.0.1;escaping=underscores;q=0.8," +
	"text/plain;version=0.0.4;escaping=underscores;q=0.5"

// FormatFromContentType picks the format from a Content-Type header:
// application/openmetrics-text (any version, any parameters, any case) is
// FormatOpenMetrics; everything else, including an empty header, is
// FormatText.
func FormatFromContentType(contentType string) Format {
	mediaType, _, _ := strings.Cut(contentType, ";")
	if strings.EqualFold(strings.TrimSpace(mediaType), "application/openmetrics-text") {
		return FormatOpenMetrics
	}
	return FormatText
}
