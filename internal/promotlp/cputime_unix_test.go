//go:build unix

package promotlp

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system) the process has used, GC
// included, so that benchmarks can report it on a busy machine where wall
// time says little.
func cpuTime() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
