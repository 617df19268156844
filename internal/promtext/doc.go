// Package promtext parses the Prometheus text exposition format (version
// 0.0.4) and the OpenMetrics 1.0 text format into a stream of samples.
//
// It is the parsing path of otel-shoot-scraper, which scrapes kubelet,
// cAdvisor, node-exporter and pods: the bytes are untrusted and a payload can
// hold tens of thousands of series. The parser therefore
//
//   - hands out slices of its input instead of strings, so that a warmed-up
//     Parser allocates nothing per sample; Parse takes a payload in memory,
//     ParseReader reads it from an io.Reader (a scrape's response body)
//     through one buffer of ReadBufferSize bytes, so that the payload is
//     never held in memory as a whole, and accepts, rejects and delivers
//     exactly what Parse does for the same bytes;
//   - delivers each sample to a callback as soon as its line is parsed, with
//     its family's name, type, HELP and UNIT attached, and builds no maps or
//     trees;
//   - bounds everything a hostile payload controls: line length
//     (MaxLineLength), labels per sample (MaxLabels), and the scratch memory
//     it keeps (one unescaped line, one family name, HELP text and UNIT, and
//     ParseReader's buffer, grown up to MaxLineLength+1 bytes only for a
//     longer line and dropped after that parse);
//   - stops at the first malformed line with a *ParseError; the samples before
//     it have already been delivered.
//
// # Families
//
// A HELP, TYPE or UNIT line names the current family. A sample belongs to it
// when its name is the family name, or the family name plus a suffix that the
// family's type allows (see Suffix); otherwise the sample is
// a family of its own, named like the sample, of type TypeUnknown and without
// HELP. Both formats require a family's samples to follow its metadata
// without other families in between, and the parser relies on that instead
// of remembering every family it has seen. Repeated HELP or TYPE lines are
// not errors: the last one wins.
//
// # Validation
//
// Names must be legacy Prometheus names ([a-zA-Z_:][a-zA-Z0-9_:]* for
// metrics, [a-zA-Z_][a-zA-Z0-9_]* for labels); the quoted UTF-8 names of
// Prometheus 3, and names inside the braces, are rejected, and AcceptHeader asks targets to escape such
// names instead. Label values, HELP and UNIT must be valid UTF-8 (they end
// up in OTLP strings). Duplicate label names and the label name __name__ are
// errors. The le and quantile values are not parsed: consumers do that.
//
// Compared with github.com/prometheus/common/expfmt on the text format, the
// parser also rejects a value glued to the metric name ("foo+1") and invalid
// UTF-8 in HELP, and it accepts a last line without a newline, blanks after
// the value, timestamp or type, repeated HELP and TYPE lines, and le or
// quantile values that are not numbers. Where both accept a payload they yield the
// same values (a differential test and the fuzz test check this).
package promtext
