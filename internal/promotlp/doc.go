// Package promotlp converts the samples of one Prometheus scrape target,
// scrape after scrape, into OTLP metrics the way the OpenTelemetry
// Collector's prometheus receiver does, with a fraction of its cost.
//
// A Converter holds the state of one target: for every series its start
// time, its last cumulative value (to detect resets) and a mark telling
// whether the current scrape saw it. A scrape is one Begin, any number of
// Add calls and one Finish, FinishEncoded or FinishChunks.
//
// # Mapping
//
// The metric name is the family name as the exposition declares it (the
// name of its TYPE line); nothing is trimmed, which is the Collector's
// behaviour while its trim-suffixes feature gate is off. An OpenMetrics
// counter "foo" exposed as foo_total is therefore named "foo", a Prometheus
// text counter "http_requests_total" keeps its "_total". Untyped samples are
// named as exposed. HELP becomes the description, UNIT the unit (converted to
// UCUM as the Collector does: seconds -> s, bytes -> By, ...), and the
// Prometheus type is kept in the metric metadata under "prometheus.type".
//
//   - counter -> Sum, cumulative, monotonic.
//   - gauge, unknown/untyped -> Gauge.
//   - info, stateset -> Gauge with the exposed value (1 for an info metric,
//     which is named as exposed, x_info, as a direct Prometheus scrape
//     stores it,
//     0/1 for a state) and the labels as attributes. The Collector emits a
//     non-monotonic cumulative Sum here; a Gauge needs no start time and no
//     reset tracking and carries the same information.
//   - classic histogram (_bucket{le}, _sum, _count, _created) -> Histogram,
//     cumulative, explicit bounds from le sorted ascending, +Inf as the
//     overflow bucket, bucket counts de-cumulated. The _count sample is
//     required; le="+Inf", when present, must equal _count; cumulative
//     bucket counts must not decrease and must not exceed _count; counts are
//     truncated to integers first so that the buckets always add up to
//     Count. A histogram that fails any check is dropped for that scrape and
//     counted in Stats.DroppedInvalid. A histogram whose +Inf bucket was
//     filtered away keeps count-minus-last-bucket as overflow, as in the
//     Collector.
//   - summary ({quantile}, _sum, _count, _created) -> Summary; quantiles
//     sorted, must lie in [0, 1] and be unique; _count is required.
//   - gaugehistogram -> dropped (Stats.DroppedUnsupported), as in the
//     Collector.
//
// Attributes are the sample's labels in exposition order, minus labels with
// an empty value (Prometheus treats them as absent), minus le for histograms
// and quantile for summaries, followed by the extra labels. An extra label
// whose name the sample already uses wins; the exposed label is kept as
// exported_<name>, as Prometheus does for target labels with
// honor_labels: false. Invalid UTF-8 in names and values is replaced by
// U+FFFD so that the output always marshals.
//
// The point's time is the sample's timestamp when it has one, else the
// scrape time (histograms and summaries take the time of their _count).
//
// # Start time and resets
//
// Gauges have no start time. For sums, histograms and summaries the start
// time is the series' _created value (seconds since the epoch) when it is
// present and not after the point's time; otherwise the time of the first
// observation of the series; when the cumulative value (the counter value,
// or the histogram/summary _count) decreases, the reset is counted in
// Stats.Resets and the start time becomes the point's time minus 1 ms, like
// the Collector's true_reset_point start time strategy. A decreasing _sum is
// not a reset (the Collector's older adjuster says it is, but a sum of
// negative observations legitimately decreases). A series absent from a
// complete scrape is forgotten: it gets no more points and, if it comes back,
// a new start time. A scrape finished as partial (ChunkOptions.Partial: the
// response was cut off or malformed) forgets nothing: a series it did not
// reach keeps its start time for the next scrape.
//
// # NaN
//
// Prometheus staleness markers (NaN with bit pattern 0x7ff0000000000002) are
// dropped and counted in Stats.DroppedStale; the Collector emits them as
// points with the NoRecordedValue flag, but a series that stops is simply
// absent here. Any other NaN is kept as a value, without a flag, as in the
// Collector (an empty summary legitimately exposes NaN quantiles). A NaN
// counter value does not take part in reset detection.
//
// # Series identity and limit
//
// A series is the family plus its attribute-relevant labels (everything but
// empty-valued labels and le/quantile) plus the extra labels, in order.
// Options.SeriesLimit bounds the distinct series of one scrape: once it is
// reached, samples of further series are dropped and counted in
// Stats.DroppedOverLimit, and Stats.LimitHit is set.
//
// # Cost
//
// Series are found by hashing their identity with hash/maphash into a map,
// with a collision check against the stored attributes, so the steady state
// does not allocate per sample. A series keeps its attributes only in their
// protobuf encoding (the data point fields they become), made when the
// series is created and interned: the series of a target's families share
// the bytes when they have the same labels. Per-series state is about 130
// bytes plus the shared attributes (BenchmarkConvert30kChunks reports the
// retained bytes per series); what only histograms and summaries need is
// kept apart.
//
// FinishChunks, the daemon's path, ends a scrape by encoding it straight
// from this state into chunks of bounded size (ChunkOptions), each a
// MetricsData message written into one reused buffer and handed to a
// callback, so that neither an object graph nor the whole encoded scrape is
// ever built; its steady state does not allocate. FinishEncoded appends the
// whole scrape to one buffer. Finish builds the messages (the reference the
// tests compare the encodings with): it decodes every series' attributes
// into fresh KeyValue messages, which the caller owns, and carves the data
// points out of a few large slices.
package promotlp
