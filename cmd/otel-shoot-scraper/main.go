// Command otel-shoot-scraper scrapes node-local metrics on a shoot node, filters
// them by run-time rules and pushes OTLP without losing data. See
// docs/otel-shoot-scraper.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/otelscraper"
)

func main() { daemon.Main(otelscraper.NewCommand()) }
