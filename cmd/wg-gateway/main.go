// Command wg-gateway relays WireGuard traffic on one UDP port to many WireGuard
// servers, routed by public key. See docs/wg-gateway.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/wggateway"
)

func main() { daemon.Main(wggateway.NewCommand()) }
