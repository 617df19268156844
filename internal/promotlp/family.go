package promotlp

import (
	"strings"
	"unicode/utf8"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// kind is the OTLP shape a family becomes.
type kind uint8

const (
	kindDrop kind = iota // not converted
	kindGauge
	kindSum
	kindHistogram
	kindSummary
)

// kindOf maps a Prometheus type to its OTLP shape.
func kindOf(t promtext.MetricType) kind {
	switch t {
	case promtext.TypeCounter:
		return kindSum
	case promtext.TypeGauge, promtext.TypeUnknown, promtext.TypeInfo, promtext.TypeStateSet:
		return kindGauge
	case promtext.TypeHistogram:
		return kindHistogram
	case promtext.TypeSummary:
		return kindSummary
	}
	return kindDrop // gaugehistogram and anything unknown to this package
}

// role is what one sample contributes to its series' data point.
type role uint8

const (
	roleInvalid  role = iota
	roleValue         // counter, gauge, untyped, info, stateset value
	roleCreated       // _created
	roleBucket        // histogram _bucket{le}
	roleSum           // _sum
	roleCount         // _count
	roleQuantile      // summary {quantile}
)

// roleOf tells what a sample with suffix s does in a family of type t.
func roleOf(t promtext.MetricType, s promtext.Suffix) role {
	switch t {
	case promtext.TypeCounter:
		switch s {
		case promtext.SuffixNone, promtext.SuffixTotal:
			return roleValue
		case promtext.SuffixCreated:
			return roleCreated
		}
	case promtext.TypeGauge, promtext.TypeStateSet:
		if s == promtext.SuffixNone {
			return roleValue
		}
	case promtext.TypeInfo:
		if s == promtext.SuffixNone || s == promtext.SuffixInfo {
			return roleValue
		}
	case promtext.TypeUnknown:
		return roleValue // untyped samples are named as exposed
	case promtext.TypeHistogram:
		switch s {
		case promtext.SuffixBucket:
			return roleBucket
		case promtext.SuffixSum:
			return roleSum
		case promtext.SuffixCount:
			return roleCount
		case promtext.SuffixCreated:
			return roleCreated
		}
	case promtext.TypeSummary:
		switch s {
		case promtext.SuffixNone:
			return roleQuantile
		case promtext.SuffixSum:
			return roleSum
		case promtext.SuffixCount:
			return roleCount
		case promtext.SuffixCreated:
			return roleCreated
		}
	}
	return roleInvalid
}

// typeName is the Prometheus name of t, as the Collector stores it in the
// metric metadata.
func typeName(t promtext.MetricType) string {
	switch t {
	case promtext.TypeCounter:
		return "counter"
	case promtext.TypeGauge:
		return "gauge"
	case promtext.TypeHistogram:
		return "histogram"
	case promtext.TypeGaugeHistogram:
		return "gaugehistogram"
	case promtext.TypeSummary:
		return "summary"
	case promtext.TypeInfo:
		return "info"
	case promtext.TypeStateSet:
		return "stateset"
	}
	return "unknown"
}

// metadataTypeKey is the metric metadata key of the Prometheus type.
const metadataTypeKey = "prometheus.type"

// family is the state of one metric family (one OTLP Metric).
type family struct {
	key     string // name as exposed (map key)
	name    string // metric name (key with invalid UTF-8 replaced)
	typ     promtext.MetricType
	kind    kind
	typed   bool // typ and kind are set
	helpRaw string
	help    string
	unitRaw string
	unit    string
	meta    []*commonpb.KeyValue // shared, read-only
	seen    uint64               // last scrape generation that saw the family
	series  []*series            // series of this scrape, in order of appearance
	prev    []*series            // series of the previous scrape, in order
	cursor  int                  // index in prev of the series expected next

	// FinishEncoded: this scrape's data points.
	encPoints int
}

// family returns the family of s named name, creating it on first use. It
// returns nil when an earlier sample of this scrape gave the family another
// type.
func (c *Converter) family(name []byte, s *promtext.Sample) *family {
	f := c.lookupFamily(name)
	if f == nil {
		key := string(name)
		f = &family{key: key, name: validUTF8(key)}
		c.families[key] = f
	}
	c.lastFam = f
	if f.seen == c.gen {
		if f.typ != s.Type {
			return nil
		}
		return f
	}
	f.seen = c.gen
	clear(f.prev)
	f.prev, f.series, f.cursor = f.series, f.prev[:0], 0
	if !f.typed || f.typ != s.Type {
		f.typ, f.kind, f.typed = s.Type, kindOf(s.Type), true
		f.meta = c.metadata(s.Type)
	}
	if f.helpRaw != string(s.Help) {
		f.helpRaw = string(s.Help)
		f.help = validUTF8(f.helpRaw)
	}
	if f.unitRaw != string(s.Unit) {
		f.unitRaw = string(s.Unit)
		f.unit = validUTF8(ucum(f.unitRaw))
	}
	c.order = append(c.order, f)
	return f
}

// lookupFamily returns the known family of this exposed name, or nil; it
// changes nothing.
func (c *Converter) lookupFamily(name []byte) *family {
	if f := c.lastFam; f != nil && f.key == string(name) {
		return f
	}
	return c.families[string(name)]
}

// metadata returns the shared metric metadata of type t.
func (c *Converter) metadata(t promtext.MetricType) []*commonpb.KeyValue {
	if int(t) >= len(c.typeMeta) {
		return []*commonpb.KeyValue{stringKV(metadataTypeKey, typeName(t))}
	}
	if c.typeMeta[t] == nil {
		c.typeMeta[t] = []*commonpb.KeyValue{stringKV(metadataTypeKey, typeName(t))}
	}
	return c.typeMeta[t]
}

// stringKV returns a string attribute.
func stringKV(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// validUTF8 replaces invalid UTF-8 (which protobuf refuses to marshal in
// string fields) by U+FFFD.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
