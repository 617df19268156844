// Package demo runs all six trellis daemons as processes against a local
// kube-apiserver + etcd (internal/testenv) with simulated surroundings, and
// shows, in a summary refreshed every few seconds, the numbers that prove each
// one does its job:
//
//   - wg-gateway: WireGuard clients (wireguard-go on userspace netstacks) reach
//     their own servers through the gateway, routed by public key;
//   - event-watcher: a scheduled event from a fake Azure metadata service
//     becomes a Node condition and taint, and the Node's pod is evicted;
//   - otel-shoot-scraper: a Prometheus endpoint scraped into a real OTLP
//     receiver;
//   - mr-signer: its webhook signs a ManagedResource Secret written by a trusted
//     identity; an untrusted change gets the ManagedResource quarantined;
//   - egress-reporter: the probe (against a loopback STUN server) and a static
//     list end up in kube-system/shoot-info as egressCIDRs;
//   - zone-flow-tracer (root only): TCP traffic between two network namespaces,
//     "nodes" in two zones, counted by zone with its cost.
//
// Run is the whole demo; scripts/demo is its command and docs/demo.md its page.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// Daemons are the six binaries the demo builds and runs, in summary order.
var Daemons = []string{"wg-gateway", "event-watcher", "otel-shoot-scraper", "mr-signer", "egress-reporter", "zone-flow-tracer"}

// Config says how to run the demo.
type Config struct {
	// Assets is the folder with kube-apiserver and etcd (testenv.AssetsDir()).
	Assets string
	// Duration stops the demo after this long; 0 runs until ctx ends.
	Duration time.Duration
	// UntilProven stops the demo as soon as every scenario reached its proof
	// point (or was skipped); Duration then is the deadline.
	UntilProven bool
	// Refresh is the summary period (default 3 s).
	Refresh time.Duration
	// Pace is how long a scenario shows a state before its next act (mr-signer:
	// signed and valid, then tampered). 0 goes on at once (tests).
	Pace time.Duration
	// BinDir holds prebuilt daemon binaries; empty builds them into the work
	// folder with `go build` (the Go build cache makes repeated runs quick).
	BinDir string
	// Out receives the summaries; nil discards them.
	Out io.Writer
	// Clear prefixes each summary with an ANSI clear screen (for terminals).
	Clear bool
	// KeepDir keeps the work folder (daemon logs, kubeconfig) at exit.
	KeepDir bool
	// SkipZoneFlow skips the zone-flow-tracer scenario even as root.
	SkipZoneFlow bool
}

// Status is what a scenario shows in the summary.
type Status struct {
	Name string
	// Endpoints are the daemon processes' /metrics URLs, "name url".
	Endpoints []string
	// Lines are the numbers that prove it works, human readable.
	Lines []string
	// Proven is set once the scenario reached its proof point (and stays set).
	Proven bool
	// Proof says what was proven.
	Proof string
	// Skipped says why the scenario did not run.
	Skipped string
	// Err is a failure to set the scenario up.
	Err string
}

// Report is the outcome of Run.
type Report struct {
	Scenarios []Status
	// Stops lists each daemon process and how it exited after SIGTERM.
	Stops []string
	// AllProven is true when every scenario that ran was proven and none failed.
	AllProven bool
	Elapsed   time.Duration
	// WorkDir and EnvDir are the folders the demo and the API server used
	// (removed at exit unless KeepDir).
	WorkDir, EnvDir string
}

// scenario is one daemon's part of the demo.
type scenario interface {
	name() string
	// start sets up the surroundings and the daemon process(es). It returns
	// errSkipped (wrapped) when the scenario cannot run here.
	start(ctx context.Context, d *Demo) error
	// status polls the daemons and the API server.
	status(ctx context.Context) Status
}

// Demo is a running demo: the API server, the work folder, the processes.
type Demo struct {
	cfg  Config
	env  *testenv.Env
	dir  string
	bins string
	tb   *helperTB
	// spawner starts every process outside network namespaces (see starter).
	spawner *spawner

	mu    sync.Mutex
	procs []*proc
}

// Run runs the demo until ctx ends, cfg.Duration passes, or (UntilProven)
// every scenario is proven; then it stops every daemon with SIGTERM, stops the
// API server and removes what it created. The error is set only when the demo
// could not start (no API server, build failure).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Refresh <= 0 {
		cfg.Refresh = 3 * time.Second
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	cfg.Out = &lockedWriter{w: cfg.Out}
	if cfg.Assets == "" {
		cfg.Assets = testenv.AssetsDir()
	}
	begin := time.Now()
	dir, err := os.MkdirTemp("", "trellis-demo-")
	if err != nil {
		return nil, err
	}
	d := &Demo{cfg: cfg, dir: dir, tb: &helperTB{dir: dir}, spawner: newSpawner()}
	defer d.spawner.close()
	defer func() {
		if !cfg.KeepDir {
			_ = os.RemoveAll(dir)
		}
	}()
	fmt.Fprintf(cfg.Out, "trellis demo: work folder %s\n", dir)

	// Building and starting the API server run side by side.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		d.bins, err = buildDaemons(gctx, cfg.BinDir, filepath.Join(dir, "bin"), cfg.Out)
		return err
	})
	g.Go(func() error {
		fmt.Fprintf(cfg.Out, "starting kube-apiserver and etcd from %s\n", cfg.Assets)
		var env *testenv.Env
		var err error
		// etcd and kube-apiserver are started from the spawner's thread too.
		d.spawner.do(func() { env, err = testenv.Start(gctx, cfg.Assets) })
		if err != nil {
			return err
		}
		d.env = env
		return nil
	})
	err = g.Wait()
	defer func() {
		if d.env != nil {
			_ = d.env.Stop()
		}
	}()
	if err != nil {
		if ctx.Err() != nil {
			// Stopped (Ctrl-C) while building or starting: nothing ran yet.
			return &Report{WorkDir: dir, Elapsed: time.Since(begin)}, nil
		}
		return nil, err
	}
	fmt.Fprintf(cfg.Out, "kube-apiserver at %s (kubeconfig %s)\n", d.env.Config.Host, d.env.Kubeconfig)

	scenarios := []scenario{&wgScenario{}, &eventScenario{}, &otelScenario{}, &mrScenario{}, &egressScenario{}, &zoneScenario{skip: cfg.SkipZoneFlow}}
	setupErr := make([]string, len(scenarios))
	skipped := make([]string, len(scenarios))
	var setup sync.WaitGroup
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, s := range scenarios {
		setup.Add(1)
		go func() {
			defer setup.Done()
			var err error
			if ferr := try(func() { err = s.start(runCtx, d) }); ferr != nil {
				err = ferr
			}
			switch {
			case errors.Is(err, errSkipped):
				skipped[i] = err.Error()
			case err != nil:
				setupErr[i] = err.Error()
			}
		}()
	}

	report := func() []Status {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out := make([]Status, len(scenarios))
		var wg sync.WaitGroup
		for i, s := range scenarios {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch {
				case skipped[i] != "":
					out[i] = Status{Name: s.name(), Skipped: strings.TrimSuffix(skipped[i], ": "+errSkipped.Error())}
				default:
					out[i] = s.status(sctx)
					out[i].Name = s.name()
					out[i].Err = setupErr[i]
				}
			}()
		}
		wg.Wait()
		return out
	}

	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(cfg.Refresh)
	defer tick.Stop()
	setupDone := make(chan struct{})
	go func() { setup.Wait(); close(setupDone) }()
	var last []Status
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline:
			break loop
		case <-tick.C:
		}
		select {
		case <-setupDone:
		default:
			// Statuses read state the set-up goroutines write: show progress only.
			fmt.Fprintf(cfg.Out, "%s setting up the scenarios ...\n", time.Now().Format("15:04:05"))
			continue
		}
		last = report()
		d.print(last, begin)
		if cfg.UntilProven && allProven(last) {
			break loop
		}
	}
	cancel()
	select {
	case <-setupDone:
	case <-time.After(30 * time.Second):
	}
	if last == nil || !allProven(last) {
		select {
		case <-setupDone:
			last = report()
			d.print(last, begin)
		default:
		}
	}
	rep := &Report{Scenarios: last, AllProven: last != nil && allProven(last), WorkDir: dir, EnvDir: d.env.Dir}
	if last == nil {
		rep.Scenarios = nil
	}

	// Stop: every daemon gets SIGTERM at once, then the surroundings go.
	d.mu.Lock()
	procs := append([]*proc(nil), d.procs...)
	d.mu.Unlock()
	fmt.Fprintf(cfg.Out, "stopping: SIGTERM to %d daemon processes\n", len(procs))
	stops := make([]string, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.stop(30 * time.Second); err != nil {
				stops[i] = fmt.Sprintf("%s: %v", p.name, err)
			} else {
				stops[i] = p.name + ": exited 0"
			}
		}()
	}
	wg.Wait()
	rep.Stops = stops
	for _, s := range stops {
		fmt.Fprintf(cfg.Out, "  %s\n", s)
	}
	d.tb.runCleanups()
	rep.Elapsed = time.Since(begin)
	return rep, nil
}

func allProven(st []Status) bool {
	for _, s := range st {
		if s.Skipped != "" {
			continue
		}
		if !s.Proven || s.Err != "" {
			return false
		}
	}
	return true
}

// print writes one summary block.
func (d *Demo) print(st []Status, begin time.Time) {
	var b strings.Builder
	if d.cfg.Clear {
		b.WriteString("\033[H\033[2J")
	}
	proven := 0
	ran := 0
	for _, s := range st {
		if s.Skipped == "" {
			ran++
			if s.Proven {
				proven++
			}
		}
	}
	fmt.Fprintf(&b, "=== trellis demo  %s  up %s  proven %d/%d  (Ctrl-C stops)\n", time.Now().Format("15:04:05"),
		time.Since(begin).Round(time.Second), proven, ran)
	fmt.Fprintf(&b, "    kube-apiserver %s  kubeconfig %s\n", d.env.Config.Host, d.env.Kubeconfig)
	for _, s := range st {
		mark := "[..]"
		switch {
		case s.Skipped != "":
			mark = "[--]"
		case s.Err != "":
			mark = "[!!]"
		case s.Proven:
			mark = "[ok]"
		}
		fmt.Fprintf(&b, "%s %s\n", mark, s.Name)
		for _, e := range s.Endpoints {
			fmt.Fprintf(&b, "       %s\n", e)
		}
		if s.Skipped != "" {
			fmt.Fprintf(&b, "       skipped: %s\n", s.Skipped)
		}
		if s.Err != "" {
			fmt.Fprintf(&b, "       error: %s\n", indent(s.Err))
		}
		for _, l := range s.Lines {
			fmt.Fprintf(&b, "       %s\n", l)
		}
		if s.Proven {
			fmt.Fprintf(&b, "       proven: %s\n", s.Proof)
		}
	}
	fmt.Fprint(d.cfg.Out, b.String())
}

// lockedWriter serialises writes from the set-up goroutines and the summary.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n         ") }

// buildDaemons returns a folder with the six binaries: binDir if given, else
// built into out with `go build` from the repository root.
func buildDaemons(ctx context.Context, binDir, out string, log io.Writer) (string, error) {
	if binDir != "" {
		for _, n := range Daemons {
			if _, err := os.Stat(filepath.Join(binDir, n)); err != nil {
				return "", fmt.Errorf("prebuilt binaries: %w", err)
			}
		}
		return binDir, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(log, "building %d daemons into %s\n", len(Daemons), out)
	args := []string{"build", "-o", out + string(filepath.Separator)}
	for _, n := range Daemons {
		args = append(args, "./cmd/"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, b)
	}
	return out, nil
}

// repoRoot finds the repository (the folder whose go.mod declares the trellis
// module) from the working directory up.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/trellis-garden/trellis\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the trellis repository (no go.mod of github.com/trellis-garden/trellis above the working directory); pass prebuilt binaries")
		}
		dir = parent
	}
}

// bin is the path of a daemon's binary.
func (d *Demo) bin(name string) string { return filepath.Join(d.bins, name) }

// endpoint formats a daemon's metrics URL for the summary.
func endpoint(name string, p *proc) string {
	if p == nil {
		return name
	}
	s := fmt.Sprintf("%-22s http://%s/metrics", name, p.addr("serving web endpoints"))
	if e := p.exited(); e != "" {
		s += "  (" + e + ")"
	}
	return s
}

// now is a metav1 timestamp for kubelet-like status writes.
func now() metav1.Time { return metav1.Now() }
