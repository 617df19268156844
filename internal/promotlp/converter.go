package promotlp

import (
	"hash/maphash"
	"math"
	"time"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// staleNaN is the bit pattern Prometheus uses to mark a series as stale.
const staleNaN = 0x7ff0000000000002

// Options configure a Converter.
type Options struct {
	// SeriesLimit is the maximum number of distinct series of one scrape
	// (after filtering); 0 means unlimited. Samples of further series are
	// dropped and counted in Stats.DroppedOverLimit.
	SeriesLimit int
	// TargetLabels are label names the receiver sets from the resource
	// (Prometheus's OTLP translation: job and instance). A sample's label of
	// that name is kept as exported_<name>, as a direct Prometheus scrape
	// (honor_labels: false) keeps it, instead of being overwritten.
	TargetLabels []string
}

// Stats describe one scrape's conversion.
type Stats struct {
	// Series is the number of distinct series accepted in the scrape.
	Series int
	// DataPoints is the number of data points returned.
	DataPoints int
	// DroppedOverLimit is the number of samples dropped because
	// Options.SeriesLimit was reached.
	DroppedOverLimit int
	// LimitHit tells whether anything was dropped because of the limit.
	LimitHit bool
	// Resets is the number of cumulative series whose value decreased.
	Resets int
	// DroppedInvalid counts malformed input: samples whose suffix does not
	// fit their type, duplicate samples, samples with duplicate label names,
	// samples whose type contradicts an earlier sample of the same family,
	// counters without a value, and (once per data point) incomplete or
	// inconsistent histograms and summaries.
	DroppedInvalid int
	// DroppedStale counts Prometheus staleness markers.
	DroppedStale int
	// DroppedUnsupported counts samples of unsupported types
	// (gaugehistogram).
	DroppedUnsupported int
	// Restored counts series that kept the start time of an earlier process
	// (Restore); RestoreResets those whose value went down meanwhile (a new
	// start time).
	Restored, RestoreResets int
}

// NewSamples counts the samples so far in this scrape of series that the
// converter did not know before it (each sample of a new histogram or
// summary counts, as each is a series of its own in Prometheus): what a
// direct Prometheus scrape reports as scrape_series_added.
func (c *Converter) NewSamples() int { return c.newSamples }

// Converter converts the scrapes of one target. It is not safe for
// concurrent use.
type Converter struct {
	opts Options
	seed maphash.Seed

	gen   uint64 // scrape generation, incremented by Begin
	nowNs uint64 // scrape time
	stats Stats

	families map[string]*family // by exposed name
	order    []*family          // families of this scrape, in order of appearance
	lastFam  *family

	series     map[uint64]*series // by identity hash; collisions are chained
	nSeries    int                // series stored in the map
	lastSeries *series

	typeMeta [promtext.TypeStateSet + 1][]*commonpb.KeyValue
	metaEnc  [promtext.TypeStateSet + 1][]byte // typeMeta as encoded Metric fields
	encs     map[string]*sharedEnc             // encoded attributes of series
	encBuf   []byte

	// restored is the start state of an earlier process (Restore), until
	// the first complete scrape.
	restored map[uint64]SeriesStart

	keyBuf []byte // identity of the current sample
	names  []byte // scratch for exported_ names

	// FinishChunks' scratch: the scrape's pieces in send order, one chunk's
	// pieces, and the next series of each family.
	pieces, chunkPieces []piece
	cursor              []int

	newSamples int // see NewSamples

	known *series // Known's recognised series, for AddKnown
}

// New returns a Converter for one target.
func New(o Options) *Converter {
	return &Converter{
		opts:     o,
		seed:     maphash.MakeSeed(),
		families: make(map[string]*family),
		series:   make(map[uint64]*series),
		encs:     make(map[string]*sharedEnc),
	}
}

// Begin starts a scrape taken at scrapeTime.
func (c *Converter) Begin(scrapeTime time.Time) {
	c.gen++
	c.nowNs = nsFromTime(scrapeTime)
	c.stats = Stats{}
	c.newSamples = 0
	c.order = c.order[:0]
	c.lastFam, c.lastSeries = nil, nil
}

// Add takes one (already filtered) sample of the current scrape. It copies
// what it keeps: the slices in s and extraLabels may be reused once Add
// returns. extraLabels (may be nil) are appended to the attributes of the
// series.
func (c *Converter) Add(s *promtext.Sample, extraLabels []promtext.Label) {
	if s == nil {
		return
	}
	if math.Float64bits(s.Value) == staleNaN {
		c.stats.DroppedStale++
		return
	}
	k := kindOf(s.Type)
	if k == kindDrop {
		c.stats.DroppedUnsupported++
		return
	}
	r := roleOf(s.Type, s.Suffix)
	if r == roleInvalid {
		c.stats.DroppedInvalid++
		return
	}
	f := c.family(exposedName(s), s)
	if f == nil {
		c.stats.DroppedInvalid++
		return
	}
	st := c.lookup(f, s.Labels, extraLabels)
	if st == nil {
		return
	}
	if len(s.Key) > 0 && r == roleValue && k <= kindSum {
		st.keyHash, st.keyed = maphash.Bytes(c.seed, s.Key), true
	}
	if st.fresh {
		c.newSamples++
	}
	t := c.nowNs
	if s.HasTimestamp {
		t = nsFromMs(s.TimestampMs)
	}
	st.add(c, r, s, t)
}

// Finish ends the scrape and returns its metrics, one per family with at
// least one data point, in order of appearance, and the scrape's stats.
// Series not seen in this scrape are forgotten.
func (c *Converter) Finish() ([]*metricspb.Metric, Stats) {
	out := c.build()
	c.end(false)
	return out, c.stats
}

// end forgets what the scrape did not see, unless it was partial, and
// resets the per-scrape state.
func (c *Converter) end(partial bool) {
	if !partial {
		c.sweep()
		c.restored = nil // every series had its chance
	}
	clear(c.order) // do not keep forgotten families alive
	c.order = c.order[:0]
	c.lastFam, c.lastSeries = nil, nil
}

// nsFromTime converts t to nanoseconds since the epoch, clamped to the
// range OTLP can carry.
func nsFromTime(t time.Time) uint64 {
	sec := t.Unix()
	switch {
	case sec < 0:
		return 0
	case sec >= math.MaxInt64/int64(time.Second):
		return math.MaxInt64
	}
	return uint64(t.UnixNano())
}

// nsFromMs converts a Prometheus timestamp to nanoseconds, clamped.
func nsFromMs(ms int64) uint64 {
	switch {
	case ms < 0:
		return 0
	case ms >= math.MaxInt64/int64(time.Millisecond):
		return math.MaxInt64
	}
	return uint64(ms) * 1e6
}

// nsFromSeconds converts a _created value (seconds since the epoch) like
// the Collector does; ok is false for values that are no time.
func nsFromSeconds(sec float64) (ns uint64, ok bool) {
	if !(sec > 0) || sec >= math.MaxInt64/1e9 {
		return 0, false
	}
	secs := int64(sec)
	nanos := int64((sec - float64(secs)) * 1e9)
	return uint64(secs*1e9 + nanos), true
}

// Known tells whether s (delivered by promtext.Parser without its labels:
// Name, Key, Family, Type and Suffix set) is the value sample of the series
// that the converter expects next in its family, recognised by the sample's
// Key: the series whose value sample had the same Key when it was last added
// with its labels. It is promtext.Parser.SkipLabels for a caller whose
// filtering is a function of the labels alone (the same rules, the same
// extra labels): after Known returned true, the caller passes the sample to
// AddKnown instead of filtering it and calling Add. Only counters, gauges and
// untyped samples are recognised; histograms and summaries always take Add.
//
// A caller that changes how it filters, or the format it parses, calls
// ForgetKeys first: what a Key became is only known for the filtering that
// made it.
func (c *Converter) Known(s *promtext.Sample) bool {
	c.known = nil
	if len(s.Key) == 0 {
		return false
	}
	k := kindOf(s.Type)
	if k == kindDrop || k > kindSum || roleOf(s.Type, s.Suffix) != roleValue {
		return false
	}
	f := c.lookupFamily(exposedName(s))
	if f == nil || !f.typed || f.typ != s.Type {
		return false
	}
	// The series expected next: before the family's first sample of this
	// scrape (family has not rotated its lists yet) the first of the last
	// scrape.
	var p *series
	if f.seen == c.gen {
		if f.cursor < len(f.prev) {
			p = f.prev[f.cursor]
		}
	} else if len(f.series) > 0 {
		p = f.series[0]
	}
	if p == nil || !p.keyed || p.fam != f || p.seen == c.gen || p.kind != k || p.keyHash != maphash.Bytes(c.seed, s.Key) {
		return false
	}
	c.known = p
	return true
}

// AddKnown is Add for the sample that Known has just recognised; its labels
// were not parsed and are not needed.
func (c *Converter) AddKnown(s *promtext.Sample) {
	st := c.known
	c.known = nil
	if st == nil {
		panic("promotlp: AddKnown without Known")
	}
	if math.Float64bits(s.Value) == staleNaN {
		c.stats.DroppedStale++
		return
	}
	f := c.family(exposedName(s), s) // Known saw the type: f is st's family
	if c.overLimit() {
		return
	}
	c.admit(f, st, false)
	t := c.nowNs
	if s.HasTimestamp {
		t = nsFromMs(s.TimestampMs)
	}
	st.add(c, roleValue, s, t)
}

// ForgetKeys forgets what every Key became (see Known): the next scrape adds
// every sample with its labels. Call it when the filtering in front of Add
// changes.
func (c *Converter) ForgetKeys() {
	for _, head := range c.series {
		for st := head; st != nil; st = st.next {
			st.keyed = false
		}
	}
	c.known = nil
}

// exposedName is the name of the family a sample is converted into: its
// family's, but an untyped sample's own name, and an info family x is exposed
// (and named by Prometheus) as x_info.
func exposedName(s *promtext.Sample) []byte {
	if s.Type == promtext.TypeUnknown || s.Type == promtext.TypeInfo {
		return s.Name
	}
	return s.Family
}
