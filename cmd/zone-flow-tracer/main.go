// Command zone-flow-tracer counts the bytes its node sends between availability
// zones, per workload, from conntrack, with an estimated cost. See
// docs/zone-flow-tracer.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/zoneflow"
)

func main() { daemon.Main(zoneflow.NewCommand()) }
