// Package otlptest provides real OTLP metrics receivers for tests: an OTLP/gRPC
// server and an OTLP/HTTP (binary protobuf) server on 127.0.0.1 that record every
// request, and can fail requests, stop, restart on the same port and answer with a
// partial success.
//
// Requests are decoded as metricspb.MetricsData, whose wire format is the same as
// ExportMetricsServiceRequest's (a repeated resource_metrics field 1): the generated
// collector/metrics/v1 package also links grpc-gateway, which this module does not
// carry.
package otlptest

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// Request is one export request a Receiver got.
type Request struct {
	// Metrics is the decoded ExportMetricsServiceRequest; nil if it did not decode.
	Metrics *metricspb.MetricsData
	// Headers holds the request headers (gRPC metadata) with lower-case names, first
	// value only.
	Headers map[string]string
	// Compression is the request's content coding: "gzip", "zstd" or "" (identity).
	Compression string
	// Received is when the request arrived.
	Received time.Time
	// Accepted is false when the request was failed (FailNext or a bad body).
	Accepted bool
	// Code is the answer: a gRPC code or an HTTP status.
	Code int
	// DataPoints is the number of data points of a request decoded by a
	// receiver started WithoutMetrics.
	DataPoints int
}

// Option configures a Receiver.
type Option func(*Receiver)

// WithTLS serves TLS with cfg (see CA.ServerConfig).
func WithTLS(cfg *tls.Config) Option { return func(r *Receiver) { r.tls = cfg } }

// WithoutMetrics decodes every request but keeps only its counts: Request.Metrics
// is nil and DataPoints is empty, while Request.DataPoints counts. For benchmarks
// that send many large requests.
func WithoutMetrics() Option { return func(r *Receiver) { r.discard = true } }

// fault is an injected failure.
type fault struct {
	code       int
	retryAfter time.Duration
}

// server is a protocol's server: started on a listener, stopped abruptly.
type server interface {
	serve(ln net.Listener)
	stop()
}

// Receiver is an OTLP receiver on loopback. All methods are safe for concurrent use.
type Receiver struct {
	t        testing.TB
	http     bool
	tls      *tls.Config
	newSrv   func(*Receiver) server
	addr     string
	mu       sync.Mutex
	srv      server // nil while stopped
	requests []Request
	faults   []fault
	rejected int64
	discard  bool
}

func start(t testing.TB, isHTTP bool, newSrv func(*Receiver) server, opts []Option) *Receiver {
	t.Helper()
	r := &Receiver{t: t, http: isHTTP, newSrv: newSrv}
	for _, o := range opts {
		o(r)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listening: %v", err)
	}
	r.addr = ln.Addr().String()
	r.serveOn(ln)
	t.Cleanup(r.Stop)
	return r
}

func (r *Receiver) serveOn(ln net.Listener) {
	srv := r.newSrv(r)
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	srv.serve(ln)
}

// Addr is the receiver's host:port, the endpoint of an OTLP/gRPC exporter.
func (r *Receiver) Addr() string { return r.addr }

// URL is the exporter endpoint: the full metrics URL (http[s]://host:port/v1/metrics)
// of an HTTP receiver, Addr for a gRPC receiver.
func (r *Receiver) URL() string {
	if !r.http {
		return r.addr
	}
	scheme := "http"
	if r.tls != nil {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s/v1/metrics", scheme, r.addr)
}

// Stop closes the listener and every connection at once, like a crashed receiver.
// Requests meanwhile fail with connection errors.
func (r *Receiver) Stop() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.stop()
	}
}

// Restart serves again on the same port after Stop.
func (r *Receiver) Restart() {
	r.t.Helper()
	r.mu.Lock()
	running := r.srv != nil
	r.mu.Unlock()
	if running {
		r.t.Fatalf("otlptest: Restart without Stop")
	}
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		r.t.Fatalf("otlptest: listening again on %s: %v", r.addr, err)
	}
	r.serveOn(ln)
}

// FailNext fails the next n requests with code: a gRPC status code
// (google.golang.org/grpc/codes) for a gRPC receiver, an HTTP status for an HTTP one.
func (r *Receiver) FailNext(n int, code int) { r.FailNextRetryAfter(n, code, 0) }

// FailNextRetryAfter is FailNext with a retry delay: an HTTP Retry-After header
// (whole seconds, rounded up) or a gRPC RetryInfo detail.
func (r *Receiver) FailNextRetryAfter(n int, code int, after time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for range n {
		r.faults = append(r.faults, fault{code: code, retryAfter: after})
	}
}

// SetPartialSuccess makes the following successful responses report rejected data
// points in partial_success; 0 turns it off.
func (r *Receiver) SetPartialSuccess(rejected int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rejected = rejected
}

// Requests returns every request received so far, failed ones included, in order.
func (r *Receiver) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

// DataPoints returns the data points of the accepted requests, in order.
func (r *Receiver) DataPoints() []DataPoint {
	var out []DataPoint
	for _, req := range r.Requests() {
		if req.Accepted && req.Metrics != nil {
			out = append(out, Flatten(req.Metrics.ResourceMetrics)...)
		}
	}
	return out
}

// WaitDataPoints polls until at least n data points were accepted or timeout passes
// (then the test fails), and returns them.
func (r *Receiver) WaitDataPoints(t testing.TB, n int, timeout time.Duration) []DataPoint {
	t.Helper()
	var dps []DataPoint
	if !testkit.Until(timeout, func() bool { dps = r.DataPoints(); return len(dps) >= n }) {
		t.Fatalf("otlptest: %d data points after %s, want %d", len(dps), timeout, n)
	}
	return dps
}

// WaitRequests polls until at least n requests (accepted or not) arrived or timeout
// passes (then the test fails), and returns them.
func (r *Receiver) WaitRequests(t testing.TB, n int, timeout time.Duration) []Request {
	t.Helper()
	var reqs []Request
	if !testkit.Until(timeout, func() bool { reqs = r.Requests(); return len(reqs) >= n }) {
		t.Fatalf("otlptest: %d requests after %s, want %d", len(reqs), timeout, n)
	}
	return reqs
}

// admit records a request and decides its answer: okCode with the current partial
// success, badCode when the body did not decode, or the next injected fault.
func (r *Receiver) admit(req Request, decodeErr error, okCode, badCode int) (code int, retryAfter time.Duration, rejected int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case decodeErr != nil:
		code = badCode
	case len(r.faults) > 0:
		code, retryAfter = r.faults[0].code, r.faults[0].retryAfter
		r.faults = r.faults[1:]
	default:
		code, rejected = okCode, r.rejected
		req.Accepted = true
	}
	req.Code = code
	if r.discard && req.Metrics != nil {
		req.DataPoints = len(Flatten(req.Metrics.GetResourceMetrics()))
		req.Metrics = nil
	}
	r.requests = append(r.requests, req)
	return code, retryAfter, rejected
}
