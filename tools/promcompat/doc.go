// Package promcompat holds the test that compares what otel-shoot-scraper
// delivers through Prometheus's own OTLP receiver and translation with what a
// direct Prometheus scrape of the same targets stores (make promcompat). It is
// a module of its own so that the Prometheus server packages stay out of the
// daemons' module graph.
package promcompat
