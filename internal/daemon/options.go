package daemon

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/spf13/pflag"
)

// Options is one set of flags of a daemon. A daemon usually has its own set and
// borrows others from shared packages (e.g. kube.ClientOptions).
type Options interface {
	// AddFlags registers the flags with their defaults and help texts.
	AddFlags(fs *pflag.FlagSet)
	// Complete fills derived values after parsing (env fallbacks, file reads).
	Complete() error
	// Validate reports every invalid value, not just the first.
	Validate() error
}

// CommonOptions are the flags every daemon has.
type CommonOptions struct {
	LogLevel        string
	LogFormat       string
	ListenAddress   string
	ShutdownTimeout time.Duration
	EnablePprof     bool
}

func (o *CommonOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.LogLevel, "log.level", "info", "Only log messages with this severity or above: debug, info, warn, error.")
	fs.StringVar(&o.LogFormat, "log.format", "json", "Log format: json or text.")
	fs.StringVar(&o.ListenAddress, "web.listen-address", o.ListenAddress, "Address (host:port) for /metrics, /healthz and /readyz; empty disables the endpoint.")
	fs.DurationVar(&o.ShutdownTimeout, "shutdown.timeout", 25*time.Second, "How long to wait for graceful shutdown after SIGTERM before giving up; keep it below the Pod's terminationGracePeriodSeconds.")
	fs.BoolVar(&o.EnablePprof, "web.pprof", false, "Serve Go profiling endpoints under /debug/pprof/ on the web listen address.")
}

func (o *CommonOptions) Complete() error { return nil }

func (o *CommonOptions) Validate() error {
	var errs []error
	if _, err := ParseLevel(o.LogLevel); err != nil {
		errs = append(errs, err)
	}
	if o.LogFormat != "json" && o.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log.format: %q is not one of json, text", o.LogFormat))
	}
	if o.ListenAddress != "" {
		if _, _, err := net.SplitHostPort(o.ListenAddress); err != nil {
			errs = append(errs, fmt.Errorf("--web.listen-address: %w", err))
		}
	}
	if o.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown.timeout: must be positive, got %s", o.ShutdownTimeout))
	}
	return errors.Join(errs...)
}
