// Package testbin builds a daemon binary for a test and stops it as Kubernetes
// does, for the binary-level end-to-end tests of each daemon.
package testbin

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BuildTags are the build tags of every daemon binary, as the Makefile and the
// Dockerfile build them: grpcnotrace keeps golang.org/x/net/trace (and
// html/template) out of binaries that link gRPC.
const BuildTags = "grpcnotrace"

// Build compiles ./cmd/<name> (relative to the repository root, two levels above
// the calling package) with BuildTags into a temporary folder and returns the
// binary's path.
func Build(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-tags", BuildTags, "-o", bin, "../../cmd/"+name).CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return bin
}

// UsageError runs bin with args, which must be bad flags: it fails the test
// unless the binary exits 2 and its output names every string of want (each
// problem named, not only the first).
func UsageError(t testing.TB, bin string, args []string, want ...string) {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("%s %v: %v, want exit status 2\n%s", filepath.Base(bin), args, err, out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("%s %v: output does not name %q:\n%s", filepath.Base(bin), args, w, out)
		}
	}
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

// Start starts cmd (a daemon run with --log.format=json and
// --web.listen-address=127.0.0.1:0) and returns the address of its web endpoints
// from its "serving web endpoints" log line, read within 30 s. The rest of its log
// is discarded; the process is killed at the end of the test unless Terminate
// stopped it first.
func Start(t testing.TB, cmd *exec.Cmd) string {
	t.Helper()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var web string
	logs := bufio.NewScanner(stderr)
	killer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	for web == "" && logs.Scan() {
		var l struct{ Msg, Address string }
		if json.Unmarshal(logs.Bytes(), &l) == nil && l.Msg == "serving web endpoints" {
			web = l.Address
		}
	}
	killer.Stop()
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	if web == "" {
		t.Fatalf("%v: web address not logged", cmd.Args)
	}
	return web
}
