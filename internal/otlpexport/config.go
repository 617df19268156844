package otlpexport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// Protocol is the OTLP transport.
type Protocol string

// The OTLP transports.
const (
	ProtocolGRPC         Protocol = "grpc"
	ProtocolHTTPProtobuf Protocol = "http/protobuf"
)

// Compression values of Config.Compression.
const (
	CompressionGzip = otlpcompress.Gzip // level 1
	CompressionZstd = otlpcompress.Zstd // fastest level; the Collector accepts it on both transports
	CompressionNone = otlpcompress.None
)

// Defaults applied by New to zero Config fields.
const (
	// DefaultTimeout bounds one export request; a 3 MiB request over a slow link to a
	// busy collector takes well under it.
	DefaultTimeout = 10 * time.Second
	// DefaultDiskQueueMaxBytes holds about 40 minutes of a 30k-series scraper
	// (roughly 1.5 MB per 15 s batch): long enough for a collector rollout or a seed
	// network outage.
	DefaultDiskQueueMaxBytes = 256 << 20
	// DefaultMemoryQueueMaxBytes is smaller: the queue is heap.
	DefaultMemoryQueueMaxBytes = 32 << 20
	// DefaultRetryInitial and DefaultRetryMax: first retry soon, then at most twice a
	// minute, like the OpenTelemetry exporters (max 30 s).
	DefaultRetryInitial = time.Second
	DefaultRetryMax     = 30 * time.Second
	// DefaultMaxBatchBytes stays below the 4 MiB default max_recv_msg_size_mib of the
	// Collector's OTLP gRPC receiver, which applies to the uncompressed message.
	DefaultMaxBatchBytes = 3 << 20
)

// minMaxBatchBytes keeps a request able to carry at least a few data points.
const minMaxBatchBytes = 4 << 10

// Config configures an Exporter. Zero durations and sizes get the defaults above.
type Config struct {
	// Endpoint is host:port for gRPC and the full URL of the metrics path for
	// http/protobuf, e.g. http://collector:4318/v1/metrics.
	Endpoint string
	// Protocol is "grpc" (default) or "http/protobuf".
	Protocol Protocol
	// Insecure sends gRPC without TLS and allows an http:// endpoint.
	Insecure bool
	// TLS is the client TLS configuration; nil means system roots. See TLSConfig.
	TLS *tls.Config
	// Headers are sent with every request (gRPC metadata or HTTP headers).
	Headers map[string]string
	// BearerTokenFile is read before each send (projected tokens rotate) and sent as
	// "Authorization: Bearer <token>".
	BearerTokenFile string
	// Compression is "gzip" (default, level 1), "zstd" or "none".
	Compression string
	// Timeout bounds one export request.
	Timeout time.Duration
	// QueueDir holds the on-disk queue; empty means an in-memory queue (still bounded).
	QueueDir string
	// QueueMaxBytes bounds the queue; beyond it the oldest records are dropped.
	QueueMaxBytes int64
	// RetryInitial and RetryMax bound the exponential backoff (with jitter) between
	// failed sends; RetryMax also caps a receiver's Retry-After / RetryInfo delay.
	RetryInitial, RetryMax time.Duration
	// MaxBatchBytes bounds the payload of one export request: larger batches are
	// split at Enqueue, smaller queued records are merged when sending.
	MaxBatchBytes int
}

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Protocol == "" {
		cfg.Protocol = ProtocolGRPC
	}
	if cfg.Compression == "" {
		cfg.Compression = CompressionGzip
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.QueueMaxBytes <= 0 {
		cfg.QueueMaxBytes = DefaultMemoryQueueMaxBytes
		if cfg.QueueDir != "" {
			cfg.QueueMaxBytes = DefaultDiskQueueMaxBytes
		}
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = DefaultRetryInitial
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryInitial)
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	return cfg
}

// validate checks a Config that already has its defaults.
func (cfg Config) validate() error {
	var errs []error
	switch cfg.Protocol {
	case ProtocolGRPC:
		if _, _, err := net.SplitHostPort(cfg.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("grpc endpoint %q is not host:port: %w", cfg.Endpoint, err))
		}
		if cfg.Insecure && cfg.TLS != nil {
			errs = append(errs, errors.New("insecure and a TLS configuration are exclusive for grpc"))
		}
	case ProtocolHTTPProtobuf:
		u, err := url.Parse(cfg.Endpoint)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("http endpoint: %w", err))
		case u.Host == "":
			errs = append(errs, fmt.Errorf("http endpoint %q has no host", cfg.Endpoint))
		case u.Scheme == "http" && !cfg.Insecure:
			errs = append(errs, fmt.Errorf("http endpoint %q is plain http: set insecure to allow it", cfg.Endpoint))
		case u.Scheme != "http" && u.Scheme != "https":
			errs = append(errs, fmt.Errorf("http endpoint %q: scheme must be http or https", cfg.Endpoint))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol %q: want %q or %q", cfg.Protocol, ProtocolGRPC, ProtocolHTTPProtobuf))
	}
	if !otlpcompress.Valid(cfg.Compression) {
		errs = append(errs, fmt.Errorf("compression %q: want %q, %q or %q", cfg.Compression, CompressionGzip, CompressionZstd, CompressionNone))
	}
	if cfg.RetryMax < cfg.RetryInitial {
		errs = append(errs, fmt.Errorf("retry max %s is below retry initial %s", cfg.RetryMax, cfg.RetryInitial))
	}
	if cfg.MaxBatchBytes < minMaxBatchBytes || cfg.MaxBatchBytes > maxPayload {
		errs = append(errs, fmt.Errorf("max batch bytes %d: want %d to %d", cfg.MaxBatchBytes, minMaxBatchBytes, maxPayload))
	}
	if cfg.QueueMaxBytes < int64(cfg.MaxBatchBytes)+recordHeaderSize {
		errs = append(errs, fmt.Errorf("queue max bytes %d is below one batch (%d bytes)", cfg.QueueMaxBytes, cfg.MaxBatchBytes+recordHeaderSize))
	}
	return errors.Join(errs...)
}
