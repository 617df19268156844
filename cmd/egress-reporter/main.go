// Command egress-reporter finds a shoot's egress CIDRs (Infrastructure status,
// STUN/HTTP probes on its nodes, a static list) and publishes them in the shoot's
// kube-system/shoot-info ConfigMap; "egress-reporter probe" is its per-node probe.
// See docs/egress-reporter.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/egressreporter"
)

func main() { daemon.Main(egressreporter.NewCommand()) }
