//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package otlpexport

import "os"

// lockFile does nothing where flock is missing: do not share a queue directory.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) error { return nil }
