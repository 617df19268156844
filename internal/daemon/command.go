// Package daemon is the lifecycle every trellis daemon shares: a cobra command built
// from option sets, common flags, slog logging with klog routed into it, one
// Prometheus registry, /metrics /healthz /readyz, signal handling and bounded
// graceful shutdown. It knows nothing about any daemon.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellis-garden/trellis/internal/version"
)

// Spec describes a daemon to NewCommand.
type Spec struct {
	// Name is the binary name, e.g. "wg-gateway"; it names the metric namespace too.
	Name  string
	Short string
	Long  string
	// ListenAddress is the default of --web.listen-address.
	ListenAddress string
	// Options are the daemon's own flag sets, added after the common ones.
	Options []Options
	// Run is the daemon's main function. It returns when ctx is cancelled (return
	// nil or ctx.Err()) or on a fatal error. Background work goes through d.Go.
	Run func(ctx context.Context, d *Daemon) error
	// Commands are extra subcommands (e.g. a CLI mode); "version" is always added.
	Commands []*cobra.Command
	// Stderr receives logs; nil means os.Stderr. Tests set it.
	Stderr io.Writer
}

// UsageError is a bad flag or flag value; Execute exits 2 on it.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// NewCommand builds the daemon's root command. Running it parses and validates the
// flags, then runs spec.Run under the shared lifecycle.
func NewCommand(spec Spec) *cobra.Command {
	common := &CommonOptions{ListenAddress: spec.ListenAddress}
	cmd := &cobra.Command{
		Use:           spec.Name,
		Short:         spec.Short,
		Long:          spec.Long,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		// A daemon runs in a container; shell completion is for interactive tools.
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		RunE: func(cmd *cobra.Command, _ []string) error {
			all := append([]Options{common}, spec.Options...)
			var errs []error
			for _, o := range all {
				if err := o.Complete(); err != nil {
					errs = append(errs, err)
				}
			}
			if len(errs) == 0 {
				for _, o := range all {
					if err := o.Validate(); err != nil {
						errs = append(errs, err)
					}
				}
			}
			if len(errs) > 0 {
				return &UsageError{Err: errors.Join(errs...)}
			}
			stderr := spec.Stderr
			if stderr == nil {
				stderr = cmd.ErrOrStderr()
			}
			return run(cmd.Context(), spec, common, cmd, stderr)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Err: err} })
	fs := cmd.Flags()
	fs.SortFlags = true
	common.AddFlags(fs)
	for _, o := range spec.Options {
		o.AddFlags(fs)
	}
	cmd.AddCommand(versionCommand(spec.Name))
	cmd.AddCommand(spec.Commands...)
	return cmd
}

func versionCommand(name string) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of " + name,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := version.Get()
			switch output {
			case "json":
				enc := json.NewEncoder(cmd.OutOrStdout())
				return enc.Encode(info)
			case "", "text":
				_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", name, info)
				return err
			}
			return &UsageError{Err: fmt.Errorf("--output: %q is not one of text, json", output)}
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text or json.")
	return cmd
}

// Execute runs cmd and returns the process exit code: 0 on success (also when a
// signal ended the daemon), 2 on a usage error, 1 on any other error. Errors are
// printed to cmd's stderr.
func Execute(ctx context.Context, cmd *cobra.Command) int {
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Error: %v\n", err)
	var ue *UsageError
	// cobra reports a stray argument to a command with subcommands as an untyped
	// "unknown command" error.
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(cmd.ErrOrStderr(), "Run '%s --help' for usage.\n", cmd.CommandPath())
		return 2
	}
	return 1
}

// Main is the whole body of a daemon's main: signals, command, exit code.
func Main(cmd *cobra.Command) {
	ctx, stop := SignalContext(context.Background())
	code := Execute(ctx, cmd)
	stop()
	os.Exit(code)
}
