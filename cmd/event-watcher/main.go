// Command event-watcher turns its VM's cloud scheduled events into Node conditions,
// taints, Events and safe drains. See docs/event-watcher.md.
package main

import (
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/eventwatcher"
)

func main() { daemon.Main(eventwatcher.NewCommand()) }
