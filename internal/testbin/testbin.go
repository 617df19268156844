// Package testbin builds a daemon binary for a test and stops it as Kubernetes
// does, for the binary-level end-to-end tests of each daemon.
package testbin

import (
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Build compiles ./cmd/<name> (relative to the repository root, two levels above
// the calling package) into a temporary folder and returns the binary's path.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// Terminate sends SIGTERM and fails the test unless the process exits 0 within
// 30 s. The caller must not have called Wait.
func Terminate(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("no exit within 30 s of SIGTERM")
	}
}
