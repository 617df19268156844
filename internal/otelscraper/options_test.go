package otelscraper

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-garden/trellis/internal/daemon"
)

// TestFlagCombinationsThatDoNothing: flags that other flags make ignored, and
// configurations without any target, are usage errors (exit 2) naming the
// flags; the configurations that can scrape are accepted.
func TestFlagCombinationsThatDoNothing(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("default: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--otlp.endpoint=127.0.0.1:1", "--otlp.insecure", "--node.name=n"}
	off := append([]string{"--discovery.kubernetes=false"}, base...)
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error; none: valid
	}{
		{"node-exporter url without node address", append(off, "--node-exporter.url=http://127.0.0.1:9100/metrics"), nil},
		{"static target only", append(off, "--target.static=job=a,url=http://127.0.0.1:1/metrics"), nil},
		{"node address", append(off, "--node.address=127.0.0.1"), nil},
		{"nothing to scrape", off, []string{"no targets", "--node.address", "--target.static"}},
		{"kubelet without node address", append(off, "--kubelet.enabled", "--target.static=job=a,url=http://127.0.0.1:1/metrics"), []string{"--kubelet.enabled", "--node.address"}},
		{"node-exporter without address", append(off, "--node-exporter.enabled", "--target.static=job=a,url=http://127.0.0.1:1/metrics"), []string{"--node-exporter.enabled", "--node-exporter.url"}},
		{"pods without the API", append(off, "--pods.enabled", "--node.address=127.0.0.1"), []string{"--pods.enabled", "--discovery.kubernetes=false"}},
		{"configmap without the API", append(off, "--rules.configmap=kube-system/x", "--node.address=127.0.0.1"), []string{"--rules.configmap"}},
		{"rules file with the API", append(base, "--rules.file="+rules, "--kubeconfig=/nonexistent"), []string{"--rules.file", "--discovery.kubernetes=false"}},
		{"node-exporter url but disabled", append(off, "--node.address=127.0.0.1", "--node-exporter.enabled=false", "--node-exporter.url=http://x:9100/metrics"), []string{"--node-exporter.url", "--node-exporter.enabled=false"}},
		{"cadvisor interval but kubelet disabled", append(off, "--node.address=127.0.0.1", "--kubelet.enabled=false", "--cadvisor.interval=30s"), []string{"--cadvisor.interval", "--kubelet.enabled=false"}},
		{"everything disabled", append(base, "--kubelet.enabled=false", "--node-exporter.enabled=false", "--pods.enabled=false"), []string{"no targets", "--pods.enabled"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := false
			cmd := daemon.NewCommand(daemon.Spec{
				Name: Name, Options: []daemon.Options{NewOptions()}, Stderr: io.Discard,
				Run: func(context.Context, *daemon.Daemon) error { ran = true; return nil },
			})
			cmd.SetArgs(tt.args)
			cmd.SetOut(io.Discard)
			cmd.SetErr(io.Discard)
			err := cmd.ExecuteContext(context.Background())
			if len(tt.want) == 0 {
				if err != nil && strings.Contains(err.Error(), "--") {
					var ue *daemon.UsageError
					if errors.As(err, &ue) {
						t.Fatalf("rejected: %v", err)
					}
				}
				return
			}
			var ue *daemon.UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v (ran: %v), want a usage error", err, ran)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestZeroTargetsWarns: a discovery round without targets is a warning (once,
// not at every round) and discovered_targets 0.
func TestZeroTargetsWarns(t *testing.T) {
	var logs strings.Builder
	m := newMetrics(nil, "test")
	mg := newManager(DefaultRules, func([]byte, int) error { return nil }, m, slog.New(slog.NewTextHandler(&logs, nil)), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer func() { cancel(); mg.wait() }()
	mg.sync(ctx, nil)
	mg.sync(ctx, nil)
	if got := testutil.ToFloat64(m.discovered); got != 0 {
		t.Errorf("discovered_targets = %v, want 0", got)
	}
	if n := strings.Count(logs.String(), "no targets to scrape"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, logs.String())
	}
	mg.sync(ctx, []Target{{Job: "a", URL: "http://127.0.0.1:1/metrics", Interval: time.Hour, Timeout: time.Second}})
	if got := testutil.ToFloat64(m.discovered); got != 1 {
		t.Errorf("discovered_targets = %v, want 1", got)
	}
}
