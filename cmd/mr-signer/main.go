// Command mr-signer signs the Secrets behind Gardener ManagedResources when a
// trusted identity writes them, verifies them, and quarantines ManagedResources
// whose Secrets were tampered with. See docs/mr-signer.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/mrsigner"
)

func main() { daemon.Main(mrsigner.NewCommand()) }
