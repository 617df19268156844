// Command cluster starts and stops the local single-node cluster
// (internal/cluster): `make cluster` runs `cluster up`, `make cluster-down` runs
// `cluster down`. docs/development.md shows how to use it.
//
//	cluster up   [--state DIR] [--bins DIR] [--images DIR]   start; print the kubeconfig
//	cluster down [--state DIR]                               stop and restore the host
//	cluster load [--state DIR] TARBALL...                    import image tarballs
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/trellis-garden/trellis/internal/cluster"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down|load [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	state := fs.String("state", cluster.DefaultStateDir(), "State folder of the cluster.")
	bins := fs.String("bins", os.Getenv("TRELLIS_TESTENV_ASSETS"), "Folder with the Kubernetes binaries (scripts/testenv.sh --path).")
	images := fs.String("images", "", "Folder of image tarballs to import after start (e.g. bin/images).")
	_ = fs.Parse(os.Args[2:])
	wd, _ := os.Getwd()
	cfg := cluster.Config{StateDir: *state, BinDir: *bins, RepoDir: wd, Log: os.Stderr}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "up":
		var cl *cluster.Cluster
		cl, err = cluster.Up(ctx, cfg)
		if err == nil && *images != "" {
			tars, _ := filepath.Glob(filepath.Join(*images, "*.tar"))
			err = cluster.ImportImages(ctx, cfg, tars...)
		}
		if err == nil {
			fmt.Printf("export KUBECONFIG=%s\n", cl.Kubeconfig)
		}
	case "down":
		err = cluster.Down(cfg)
	case "load":
		err = cluster.ImportImages(ctx, cfg, fs.Args()...)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}
