// Package monitoring holds no code, only the tests of trellis' alerting rules and
// dashboards (deploy/components/monitoring): every PromQL expression of a dashboard
// panel or an alert parses, and names only metrics and labels a daemon registers,
// as the golden files of the metrics conformance check list them
// (internal/metricstest/testdata: each daemon's TestMetrics compares its real
// registry with them); every alert has a runbook and a promtool test
// that fires it and one that does not; the PrometheusRule objects are generated
// from the plain rules files.
//
// It is a module of its own, outside go.work, so the Prometheus server library
// (github.com/prometheus/prometheus, for its PromQL parser) stays out of the
// daemons' module graph. `make test` runs it (target monitoring) with GOWORK=off.
package monitoring
