package promtext

// MetricType is the type of a metric family, as named by its TYPE line.
type MetricType uint8

const (
	// TypeUnknown is a family without a TYPE line, or with TYPE untyped (text)
	// or unknown (OpenMetrics).
	TypeUnknown MetricType = iota
	// TypeCounter is a counter.
	TypeCounter
	// TypeGauge is a gauge.
	TypeGauge
	// TypeHistogram is a classic (cumulative) histogram.
	TypeHistogram
	// TypeGaugeHistogram is an OpenMetrics gauge histogram (tolerated in the
	// text format as gaugehistogram or gauge_histogram, as expfmt does).
	TypeGaugeHistogram
	// TypeSummary is a summary.
	TypeSummary
	// TypeInfo is an OpenMetrics info family.
	TypeInfo
	// TypeStateSet is an OpenMetrics state set.
	TypeStateSet
)

// String returns the type's name as OpenMetrics spells it.
func (t MetricType) String() string {
	switch t {
	case TypeUnknown:
		return "unknown"
	case TypeCounter:
		return "counter"
	case TypeGauge:
		return "gauge"
	case TypeHistogram:
		return "histogram"
	case TypeGaugeHistogram:
		return "gaugehistogram"
	case TypeSummary:
		return "summary"
	case TypeInfo:
		return "info"
	case TypeStateSet:
		return "stateset"
	default:
		return "invalid"
	}
}

// Suffix says which part of its family a sample is. It is relative to
// Sample.Family: a sample whose name is the family name has SuffixNone, and
// so has every sample of a family that is not known from a TYPE line. The
// suffixes each type allows are:
//
//	counter         _total (OpenMetrics only), _created
//	histogram       _bucket, _sum, _count, _created
//	summary         _sum, _count, _created
//	gaugehistogram  _bucket, _gcount, _gsum
//	info            _info
//
// A sample with another suffix is not part of the family.
type Suffix uint8

const (
	// SuffixNone: the sample's name is the family name (a gauge, a text
	// format counter, a summary quantile, a state set, an unknown family).
	SuffixNone Suffix = iota
	// SuffixTotal: an OpenMetrics counter's value, name_total.
	SuffixTotal
	// SuffixBucket: a histogram or gauge histogram bucket, name_bucket.
	SuffixBucket
	// SuffixSum: a histogram or summary sum, name_sum.
	SuffixSum
	// SuffixCount: a histogram or summary count, name_count.
	SuffixCount
	// SuffixCreated: the creation time of a counter, histogram or summary in
	// seconds since the epoch, name_created.
	SuffixCreated
	// SuffixGCount: a gauge histogram count, name_gcount.
	SuffixGCount
	// SuffixGSum: a gauge histogram sum, name_gsum.
	SuffixGSum
	// SuffixInfo: an info family's sample, name_info.
	SuffixInfo
)

// String returns the suffix as it appears in a sample name ("" for
// SuffixNone).
func (s Suffix) String() string {
	switch s {
	case SuffixTotal:
		return "_total"
	case SuffixBucket:
		return "_bucket"
	case SuffixSum:
		return "_sum"
	case SuffixCount:
		return "_count"
	case SuffixCreated:
		return "_created"
	case SuffixGCount:
		return "_gcount"
	case SuffixGSum:
		return "_gsum"
	case SuffixInfo:
		return "_info"
	default:
		return ""
	}
}

// Label is one label of a sample.
type Label struct {
	Name, Value []byte
}

// Sample is one sample line. Every slice points into the input or the
// parser's scratch space and is valid only during the callback: copy what you
// keep, and do not modify the bytes.
type Sample struct {
	// Family is the family name from the TYPE/HELP/UNIT lines the sample
	// belongs to (for OpenMetrics counters without _total, for histograms
	// without _bucket/_sum/_count, and so on); it is the metric name itself
	// when the sample belongs to no family announced by metadata.
	Family []byte
	// Type is the family's type (TypeUnknown if it had no TYPE line).
	Type MetricType
	// Name is the sample's own name, e.g. http_requests_total,
	// rpc_seconds_bucket, x_created.
	Name []byte
	// Suffix is the part of the family this sample is: Name is Family
	// followed by Suffix.String().
	Suffix Suffix
	// Labels are in exposition order, with values unescaped (\\ \" \n).
	// The le and quantile labels stay bytes like every other label. Nil
	// when LabelsSkipped.
	Labels []Label
	// Key is the sample's name and label set exactly as written on its line
	// (up to and including the label set's '}', without what follows): two
	// samples with the same Key have the same name and labels. A consumer
	// that remembers what it made of a Key can recognise the sample next
	// time without its labels (Parser.SkipLabels).
	Key []byte
	// LabelsSkipped tells that the labels were not parsed, because
	// Parser.SkipLabels recognised Key: Labels is nil.
	LabelsSkipped bool
	// Value is the sample value, including NaN, +Inf and -Inf.
	Value float64
	// TimestampMs is the sample's timestamp in milliseconds since the epoch
	// when HasTimestamp is set. OpenMetrics timestamps (seconds) are
	// converted and rounded to the nearest millisecond.
	TimestampMs  int64
	HasTimestamp bool
	// Help is the family's HELP text, unescaped; nil if it has none or it is
	// empty.
	Help []byte
	// Unit is the family's OpenMetrics UNIT; nil in the text format and when
	// there is none.
	Unit []byte
}
