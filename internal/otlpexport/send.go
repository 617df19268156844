package otlpexport

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"
)

// sender exports one marshalled ExportMetricsServiceRequest. It is the boundary to
// the receiver; grpcSender and httpSender implement it.
type sender interface {
	// send returns the receiver's partial success (zero if none) or an error; a
	// *sendError says whether to retry.
	send(ctx context.Context, payload []byte) (partialSuccess, error)
	close() error
}

// sendError is a failed export.
type sendError struct {
	err        error
	retryable  bool
	retryAfter time.Duration // the receiver's Retry-After or RetryInfo delay, 0 if none
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

func retryable(err error, after time.Duration) error {
	return &sendError{err: err, retryable: true, retryAfter: after}
}

func permanent(err error) error { return &sendError{err: err} }

// isRetryable reports whether a send error may succeed later; errors that are not
// a *sendError (local failures) are.
func isRetryable(err error) (bool, time.Duration) {
	var se *sendError
	if errors.As(err, &se) {
		return se.retryable, se.retryAfter
	}
	return true, 0
}

// requestHeaders returns the configured headers plus the bearer token, read from
// its file now (projected service account tokens are rotated in place). Keys are
// lower case.
func requestHeaders(cfg *Config) (map[string]string, error) {
	h := make(map[string]string, len(cfg.Headers)+1)
	for k, v := range maps.All(cfg.Headers) {
		h[strings.ToLower(k)] = v
	}
	if cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil, retryable(fmt.Errorf("reading bearer token: %w", err), 0)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, retryable(fmt.Errorf("bearer token file %s is empty", cfg.BearerTokenFile), 0)
		}
		h["authorization"] = "Bearer " + tok
	}
	return h, nil
}
