package otelscraper

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestFileRuleSource: a changed rules file is applied without a restart;
// invalid rules and a missing file keep the last good rules with the
// ConfigMap path's log line and metrics; SIGHUP reloads at once.
func TestFileRuleSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	testkit.WriteAtomic(t, path, "jobs:\n  a: {keep: [xx]}\n")
	var logs testkit.SyncBuffer
	reg := prometheus.NewRegistry()
	src, err := NewFileRuleSource(path, 100*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)), reg, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	jobs := func() string { return strings.Join(src.Current().Jobs(), ",") }
	if jobs() != "a" {
		t.Fatalf("jobs %q at start", jobs())
	}
	reloads := func(result string) float64 {
		return testutil.ToFloat64(src.metrics.reloads.WithLabelValues(result))
	}

	testkit.WriteAtomic(t, path, "jobs:\n  b: {keep: [up_total]}\n")
	testkit.Eventually(t, "the changed rules", func() bool { return jobs() == "b" })

	testkit.WriteAtomic(t, path, "jobs:\n  c: {kep: [y]}\n")
	testkit.Eventually(t, "the reload error", func() bool { return reloads("error") == 1 })
	if jobs() != "b" {
		t.Errorf("invalid rules replaced the last good ones: jobs %q", jobs())
	}
	if got := testutil.ToFloat64(src.metrics.lastSuccess); got != 0 {
		t.Errorf("rules_last_reload_success = %v, want 0", got)
	}
	testkit.Eventually(t, "the log line", func() bool {
		return strings.Contains(logs.String(), "invalid filter rules, keeping the last good rules")
	})
	// sleep-ok: a window for several polls (100 ms apart) of the same invalid file, none of which may count again; on a slow machine it only sees fewer
	time.Sleep(300 * time.Millisecond)
	if got := reloads("error"); got != 1 {
		t.Errorf("the same invalid file counted %v times", got)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the missing file reported", func() bool { return reloads("error") == 2 })
	if jobs() != "b" {
		t.Errorf("a missing file replaced the last good rules: jobs %q", jobs())
	}

	testkit.WriteAtomic(t, path, "jobs:\n  d: {keep: [zz]}\n")
	testkit.Eventually(t, "the fixed rules", func() bool { return jobs() == "d" })
	if got := testutil.ToFloat64(src.metrics.lastSuccess); got != 1 {
		t.Errorf("rules_last_reload_success = %v after a good reload", got)
	}
}

// TestFileRuleSourceSIGHUP: with a poll interval too long to matter, SIGHUP
// applies a changed file.
func TestFileRuleSourceSIGHUP(t *testing.T) {
	// The test process keeps SIGHUP from terminating it while the source's
	// handler may not be installed yet.
	// It stays registered for the life of the test binary: a SIGHUP still on
	// its way after the test must not end the process either.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	testkit.WriteAtomic(t, path, "jobs:\n  a: {keep: [xx]}\n")
	src, err := NewFileRuleSource(path, time.Hour, nil, nil, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testkit.WriteAtomic(t, path, "jobs:\n  b: {keep: [up_total]}\n")
	last := time.Time{}
	testkit.Eventually(t, "the rules after SIGHUP", func() bool {
		if time.Since(last) > 500*time.Millisecond {
			_ = syscall.Kill(os.Getpid(), syscall.SIGHUP)
			last = time.Now()
		}
		return strings.Join(src.Current().Jobs(), ",") == "b"
	})
}
