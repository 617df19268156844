package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/trellis-garden/trellis/internal/version"
)

// Daemon is what a daemon's Run function gets from the lifecycle.
type Daemon struct {
	// Name is the binary name.
	Name string
	// Logger is the daemon's structured logger (klog is routed into it).
	Logger *slog.Logger
	// Registry is the daemon's own Prometheus registry, served on /metrics.
	Registry *prometheus.Registry
	// Namespace is the daemon's metric namespace, trellis_<name>.
	Namespace string
	// Ready are the readiness checks behind /readyz; Live those behind /healthz.
	Ready *Checks
	Live  *Checks
	// Mux serves the web listen address; a daemon may add its own endpoints.
	Mux *http.ServeMux

	group    *errgroup.Group
	groupCtx context.Context
	webAddr  net.Addr
}

// Go runs fn in the daemon's group. The first error cancels every other
// goroutine's context and ends the daemon; context.Canceled counts as success.
func (d *Daemon) Go(name string, fn func(ctx context.Context) error) {
	d.group.Go(func() error {
		err := fn(d.groupCtx)
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("%s: %w", name, err)
		}
		return err
	})
}

// WebAddr is the address the web server listens on (nil when disabled). With
// --web.listen-address=127.0.0.1:0 it tells the chosen port.
func (d *Daemon) WebAddr() net.Addr { return d.webAddr }

// ErrShutdownTimeout is returned when goroutines did not end within --shutdown.timeout.
var ErrShutdownTimeout = errors.New("graceful shutdown timed out")

func run(ctx context.Context, spec Spec, common *CommonOptions, cmd *cobra.Command, stderr io.Writer) error {
	level, _ := ParseLevel(common.LogLevel) // validated before
	logger := NewLogger(stderr, level, common.LogFormat).With("daemon", spec.Name)
	RouteKlog(logger, level)
	info := version.Get()
	logger.Info("starting", "version", info.Version, "revision", info.Revision, "goVersion", info.GoVersion)
	LogFlags(logger, cmd.Flags())

	// The daemon ends when ctx is cancelled (a signal), when any goroutine fails,
	// or when spec.Run returns.
	runCtx, stopAll := context.WithCancelCause(ctx)
	defer stopAll(nil)
	group, groupCtx := errgroup.WithContext(runCtx)
	d := &Daemon{
		Name:      spec.Name,
		Logger:    logger,
		Registry:  NewRegistry(spec.Name),
		Namespace: MetricNamespace(spec.Name),
		Ready:     &Checks{},
		Live:      &Checks{},
		Mux:       http.NewServeMux(),
		group:     group,
		groupCtx:  groupCtx,
	}
	// Not ready once shutdown has begun, so a load balancer drains us first.
	d.Ready.Add("shutdown", func(context.Context) error {
		if groupCtx.Err() != nil {
			return errors.New("shutting down")
		}
		return nil
	})
	// Not ready before Run has registered a readiness check of its own: the web
	// server starts first, and until then an empty set would answer "ok" for a
	// daemon that has synced and checked nothing.
	builtins := 2 // shutdown, started
	d.Ready.Add("started", func(context.Context) error {
		if d.Ready.len() <= builtins {
			return errors.New("the daemon has not registered its readiness checks yet")
		}
		return nil
	})
	d.Mux.Handle("/metrics", promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{Registry: d.Registry, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError)}))
	d.Mux.Handle("/healthz", d.Live)
	d.Mux.Handle("/livez", d.Live)
	d.Mux.Handle("/readyz", d.Ready)
	if common.EnablePprof {
		d.Mux.HandleFunc("/debug/pprof/", pprof.Index)
		d.Mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		d.Mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		d.Mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		d.Mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	if common.ListenAddress != "" {
		ln, err := net.Listen("tcp", common.ListenAddress)
		if err != nil {
			return fmt.Errorf("listen on --web.listen-address: %w", err)
		}
		d.webAddr = ln.Addr()
		srv := &http.Server{Handler: d.Mux, ReadHeaderTimeout: 10 * time.Second}
		logger.Info("serving web endpoints", "address", ln.Addr().String())
		group.Go(func() error {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("web server: %w", err)
		})
		group.Go(func() error {
			<-groupCtx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(groupCtx), common.ShutdownTimeout)
			defer cancel()
			return srv.Shutdown(sctx)
		})
	}

	d.Go("run", func(ctx context.Context) error {
		err := spec.Run(ctx, d)
		stopAll(errors.New("run returned"))
		return err
	})

	done := make(chan error, 1)
	go func() { done <- group.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-groupCtx.Done():
		logger.Info("shutting down", "cause", context.Cause(groupCtx).Error(), "timeout", common.ShutdownTimeout.String())
		select {
		case err = <-done:
		case <-time.After(common.ShutdownTimeout):
			err = ErrShutdownTimeout
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	if err != nil {
		return err // Execute reports it; no log-and-return
	}
	logger.Info("stopped")
	return nil
}
