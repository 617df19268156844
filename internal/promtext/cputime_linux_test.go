package promtext

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used so far. Benchmarks
// report it per operation because this code runs on shared machines, where
// wall time per operation includes waiting for a core.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
