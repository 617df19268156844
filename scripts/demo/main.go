// Command demo runs all six trellis daemons against a local kube-apiserver +
// etcd with simulated surroundings and prints a live summary (docs/demo.md).
// `make demo` runs it; Ctrl-C stops it cleanly.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/trellis-garden/trellis/internal/demo"
	"github.com/trellis-garden/trellis/internal/testenv"
)

func main() {
	cfg := demo.Config{Out: os.Stdout}
	flag.DurationVar(&cfg.Duration, "duration", 0, "stop this long after the API server is up and the daemons are built (e.g. 60s); 0 runs until Ctrl-C")
	flag.BoolVar(&cfg.UntilProven, "until-proven", false, "stop as soon as every scenario reached its proof point; with --duration as the deadline, exit 1 if it passes first")
	flag.DurationVar(&cfg.Refresh, "refresh", 3*time.Second, "summary period")
	flag.DurationVar(&cfg.Pace, "pace", 5*time.Second, "how long a scenario shows a state before its next act (mr-signer: signed, then tampered, then repaired); 0 plays on at once")
	flag.StringVar(&cfg.Assets, "assets", testenv.AssetsDir(), "folder with kube-apiserver and etcd ($"+testenv.AssetsEnv+", `make testenv`)")
	flag.StringVar(&cfg.BinDir, "bin-dir", "", "prebuilt daemon binaries (e.g. ./bin after `make build`); empty builds them with go build")
	flag.BoolVar(&cfg.KeepDir, "keep", false, "keep the work folder (daemon logs, kubeconfig) at exit")
	flag.BoolVar(&cfg.SkipZoneFlow, "skip-zone-flow", false, "skip the zone-flow-tracer scenario even as root")
	clear := flag.Bool("clear", isTerminal(os.Stdout), "clear the terminal before each summary (default: when stdout is a terminal)")
	flag.Parse()
	cfg.Clear = *clear

	// The first SIGINT/SIGTERM stops the demo cleanly; a second exits at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		again := make(chan os.Signal, 1)
		signal.Notify(again, os.Interrupt, syscall.SIGTERM)
		<-again
		fmt.Fprintln(os.Stderr, "second signal: exiting now")
		os.Exit(130)
	}()

	rep, err := demo.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
	if rep.Scenarios == nil {
		fmt.Println("demo stopped before the daemons ran")
		if cfg.UntilProven {
			os.Exit(1)
		}
		return
	}
	fmt.Printf("demo finished after %s: ", rep.Elapsed.Round(time.Second))
	if rep.AllProven {
		fmt.Println("every scenario reached its proof point")
	} else {
		fmt.Println("NOT every scenario reached its proof point")
		for _, s := range rep.Scenarios {
			if s.Skipped == "" && (!s.Proven || s.Err != "") {
				fmt.Printf("  %s: not proven %s\n", s.Name, s.Err)
			}
		}
	}
	for _, s := range rep.Scenarios {
		if s.Skipped != "" {
			fmt.Printf("  %s skipped: %s\n", s.Name, s.Skipped)
		}
	}
	if cfg.UntilProven && !rep.AllProven {
		os.Exit(1)
	}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
