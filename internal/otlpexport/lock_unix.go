//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package otlpexport

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking flock: one exporter per queue directory.
// The kernel releases it when the process dies.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}
