package otlpexport

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/trellis-garden/trellis/internal/grpcraw"
)

// grpcSender exports over an OTLP/gRPC connection.
type grpcSender struct {
	cfg  *Config
	conn *grpc.ClientConn
	opts []grpc.CallOption
}

func newGRPCSender(cfg *Config) (*grpcSender, error) {
	creds := insecure.NewCredentials()
	if !cfg.Insecure {
		tc := cfg.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = credentials.NewTLS(tc)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// Reconnect as fast as the export retries do: gRPC's own default backs off
		// to 2 minutes, which would outlast a short receiver outage.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay: cfg.RetryInitial, Multiplier: 1.6, Jitter: 0.2, MaxDelay: cfg.RetryMax,
			},
			MinConnectTimeout: cfg.Timeout,
		}),
	}
	if cfg.Compression != CompressionNone {
		// The queue holds the requests compressed already: gRPC frames them as
		// they are, with grpc-encoding set to the compression. Only the legacy
		// per-connection Compressor can do that; a registered one (UseCompressor)
		// is process-wide by name and would pass every gzip message through.
		//lint:ignore SA1019 supported throughout grpc-go 1.x; see above
		opts = append(opts, grpc.WithCompressor(precompressed(cfg.Compression)))
	}
	conn, err := grpc.NewClient(cfg.Endpoint, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating grpc client: %w", err)
	}
	return &grpcSender{cfg: cfg, conn: conn, opts: []grpc.CallOption{grpc.ForceCodecV2(grpcraw.Codec{})}}, nil
}

// precompressed is gRPC's legacy Compressor for messages that are compressed
// already: it writes them as they are and names their compression.
type precompressed string

func (p precompressed) Do(w io.Writer, b []byte) error {
	_, err := w.Write(b)
	return err
}

func (p precompressed) Type() string { return string(p) }

func (s *grpcSender) send(ctx context.Context, payload []byte) (partialSuccess, error) {
	h, err := requestHeaders(s.cfg)
	if err != nil {
		return partialSuccess{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, metadata.New(h))
	var resp grpcraw.Message
	if err := s.conn.Invoke(ctx, exportMethod, grpcraw.Message(payload), &resp, s.opts...); err != nil {
		return partialSuccess{}, classifyGRPC(err)
	}
	ps, err := decodeExportResponse(resp)
	if err != nil {
		// The receiver acknowledged the request; only its partial success is lost.
		return partialSuccess{message: err.Error()}, nil
	}
	return ps, nil
}

// reusesPayload tells whether send is done with its payload when it returns:
// compressed, gRPC copies it (the legacy Compressor API); uncompressed, its
// transport may still hold the payload's buffer.
func (s *grpcSender) reusesPayload() bool { return s.cfg.Compression != CompressionNone }

func (s *grpcSender) close() error { return s.conn.Close() }

// classifyGRPC applies the OTLP/gRPC retry rules: Canceled, DeadlineExceeded,
// Aborted, OutOfRange, Unavailable and DataLoss are retryable; ResourceExhausted only
// with RetryInfo (without it, e.g. a message over the receiver's size limit, a retry
// would fail forever and block the queue). Unauthenticated and PermissionDenied are
// retried too, unlike the specification: an expired or not yet rotated credential is
// an outage the operator fixes, and the bounded queue keeps the newest data meanwhile.
func classifyGRPC(err error) error {
	st := status.Convert(err)
	var delay time.Duration
	var hasRetryInfo bool
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			hasRetryInfo = true
			delay = ri.GetRetryDelay().AsDuration()
		}
	}
	err = fmt.Errorf("grpc export: %w", err)
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange,
		codes.Unavailable, codes.DataLoss, codes.Unauthenticated, codes.PermissionDenied:
		return retryable(err, delay)
	case codes.ResourceExhausted:
		if hasRetryInfo {
			return retryable(err, delay)
		}
	}
	return permanent(err)
}

// exportMethod is MetricsService/Export of OTLP.
const exportMethod = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
