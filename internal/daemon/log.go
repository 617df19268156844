package daemon

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// ParseLevel parses a --log.level value.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("--log.level: %q is not one of debug, info, warn, error", s)
}

// NewLogger builds the daemon's logger. format is "json" or "text".
func NewLogger(w io.Writer, level slog.Level, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h)
}

// RouteKlog sends client-go's klog output into logger. At debug level client-go's
// verbose messages (up to -v=4: requests, watches, leader election) come along.
func RouteKlog(logger *slog.Logger, level slog.Level) {
	klog.SetSlogLogger(logger.With("logger", "klog"))
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	v := "0"
	if level <= slog.LevelDebug {
		v = "4"
	}
	_ = fs.Set("v", v)
}

// sensitiveAnnotation marks a flag whose value is not logged at start.
const sensitiveAnnotation = "trellis.dev/sensitive"

// MarkSensitive keeps a flag's value (a token, a password) out of the start-up log.
func MarkSensitive(fs *pflag.FlagSet, name string) {
	_ = fs.SetAnnotation(name, sensitiveAnnotation, []string{"true"})
}

// LogFlags logs every flag once, as gardener's components do, so a log alone tells
// how a daemon was configured.
func LogFlags(logger *slog.Logger, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			return
		}
		value := f.Value.String()
		if _, ok := f.Annotations[sensitiveAnnotation]; ok && value != "" {
			value = "<redacted>"
		}
		logger.Info("flag", "name", f.Name, "value", value)
	})
}
