// Package promtext parses the Prometheus text exposition format (version
// 0.0.4) and the OpenMetrics 1.0 text format into a stream of samples.
//
// It is the parsing path of otel-shoot-scraper, which scrapes kubelet,
// cAdvisor, node-exporter and pods: the bytes are untrusted and a payload can
// hold tens of thousands of series. The parser therefore
//
//   - works on the whole payload in memory and hands out slices of it instead
//     of strings, so that a sample costs no allocation once a Parser has warmed
//     up its scratch buffers;
//   - delivers each sample to a callback as soon as its line is parsed, with
//     its family's name, type, HELP and UNIT attached, and builds no maps or
//     trees;
//   - bounds everything a hostile payload controls: line length
//     (MaxLineLength), labels per sample (MaxLabels), and the scratch memory
//     kept for unescaping (at most one line);
//   - stops at the first malformed line with a *ParseError; samples before it
//     have already been delivered.
//
// Families follow the metadata lines: a HELP, TYPE or UNIT line names the
// current family, and a sample belongs to it when its name is the family name
// or the family name plus a suffix that the family's type allows (see
// Suffix). A sample that matches no current family is its own family of type
// TypeUnknown. Both formats require a family's samples to follow its metadata
// without other families in between, and the parser relies on that instead of
// remembering every family it has seen.
//
// Metric and label names must be legacy Prometheus names
// ([a-zA-Z_:][a-zA-Z0-9_:]* and [a-zA-Z_][a-zA-Z0-9_]*); the quoted UTF-8
// names of Prometheus 3 are rejected, and AcceptHeader asks targets to escape
// such names instead.
package promtext
