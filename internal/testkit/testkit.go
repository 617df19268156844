// Package testkit holds the small helpers every test package needs: waiting for a
// condition with a deadline (never a sleep to synchronise), a log sink safe for
// concurrent use, and a plain HTTP GET. Starting real components has its own
// packages: testenv (kube-apiserver + etcd), testbin (daemon binaries),
// netnstest (network namespaces), otlptest (an OTLP receiver). (Not "testutil":
// many tests import client_golang's prometheus/testutil beside it.)
package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Timeout is how long Eventually and EventuallyNil wait: generous, because the
// suite runs packages in parallel on loaded 2-core machines. A test that passes
// only with a tighter deadline is asserting a timing, which belongs in a
// benchmark.
const Timeout = 30 * time.Second

// poll intervals: quick first checks, then at most every maxInterval.
const (
	firstInterval = 2 * time.Millisecond
	maxInterval   = 50 * time.Millisecond
)

// Poll calls check until it returns nil or timeout has passed, waiting a little
// longer between calls each time (2 ms up to 50 ms). It returns nil, or the last
// error of check wrapped with the time waited. check is always called at least
// once, and once more after the deadline, so a condition met during the last wait
// is not missed.
func Poll(timeout time.Duration, check func() error) error {
	return poll(timeout, firstInterval, maxInterval, check)
}

func poll(timeout, interval, maxInterval time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		// The one sleep of the test helpers: the pause between two checks of a
		// polled condition.
		time.Sleep(min(interval, left)) // sleep-ok: the interval of a poll with a deadline
		interval = min(2*interval, maxInterval)
	}
}

// Measure checks cond every interval until it holds and returns how long that
// took, for a benchmark that reports a latency: the fixed interval is its
// resolution. ok is false when timeout passed first.
func Measure(interval, timeout time.Duration, cond func() bool) (elapsed time.Duration, ok bool) {
	start := time.Now()
	err := poll(timeout, interval, interval, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
	return time.Since(start), err == nil
}

// errNotYet is what a bool condition reports while it is false.
var errNotYet = errors.New("condition not met")

// Until polls cond until it is true or timeout has passed and reports whether it
// became true; for callers that fail with their own message or must not fail at
// all (a benchmark's setup, a helper outside a test).
func Until(timeout time.Duration, cond func() bool) bool {
	return Poll(timeout, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}) == nil
}

// Eventually polls cond until it is true and fails t (Fatalf, so only from the
// test's own goroutine) naming what it waited for when Timeout passes first.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	EventuallyWithin(t, Timeout, what, cond)
}

// EventuallyWithin is Eventually with another deadline: a longer one where the
// work waited for is long, a shorter one only where the test would otherwise
// take too long to fail.
func EventuallyWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Until(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// EventuallyNil polls check until it returns nil and fails t when Timeout passes
// first, with the last error check returned: the place to say what was seen
// instead of what was wanted.
func EventuallyNil(t testing.TB, what string, check func() error) {
	t.Helper()
	if err := Poll(Timeout, check); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a log sink
// for code that logs from its own goroutines while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset discards everything written so far.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// WriteAtomic replaces the file at path with content as editors and ConfigMap
// volume updates do: a new file renamed over the old one, so a reader sees the
// old content or the new, never a part.
func WriteAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpClient bounds a request, so a server that hangs fails a poll instead of
// blocking it.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// Get fetches url and returns the status code and body; a failed request is code
// 0 with the error as body, so a polled condition on the code just sees "not
// yet" and a failure message shows why.
func Get(url string) (int, string) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}

// Golden returns the content of the golden file at path; with update set it
// first writes got there (creating the folder), so the caller's comparison
// passes. A missing file fails the test and says how to generate it.
func Golden(t testing.TB, path string, got []byte, update bool, regenerate string) []byte {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return got
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it: %s)", err, regenerate)
	}
	return want
}
