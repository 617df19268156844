package otlptest

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/grpcraw"
	_ "github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress" // accept gzip- and zstd-compressed requests
)

// NewGRPC starts an OTLP/gRPC metrics receiver (MetricsService/Export) on
// 127.0.0.1:0; the test's cleanup stops it.
func NewGRPC(t testing.TB, opts ...Option) *Receiver {
	t.Helper()
	return start(t, false, newGRPCServer, opts)
}

// serviceDesc is opentelemetry.proto.collector.metrics.v1.MetricsService, written
// out so that the request can be decoded as MetricsData.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: "opentelemetry.proto.collector.metrics.v1.MetricsService",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Export", Handler: exportHandler}},
	Metadata:    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
}

type grpcServer struct{ srv *grpc.Server }

func newGRPCServer(r *Receiver) server {
	opts := []grpc.ServerOption{grpc.ForceServerCodecV2(grpcraw.Codec{}), grpc.StatsHandler(compressionRecorder{})}
	if r.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(r.tls)))
	}
	s := grpc.NewServer(opts...)
	s.RegisterService(&serviceDesc, r)
	return &grpcServer{srv: s}
}

func (s *grpcServer) serve(ln net.Listener) { go func() { _ = s.srv.Serve(ln) }() }
func (s *grpcServer) stop()                 { s.srv.Stop() }

func exportHandler(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	var body grpcraw.Message
	if err := dec(&body); err != nil {
		return nil, err
	}
	return srv.(*Receiver).exportGRPC(ctx, body)
}

func (r *Receiver) exportGRPC(ctx context.Context, body []byte) (any, error) {
	req := Request{Headers: map[string]string{}, Received: time.Now(), Compression: compressionOf(ctx)}
	md, _ := metadata.FromIncomingContext(ctx)
	for k, v := range md {
		if len(v) > 0 {
			req.Headers[strings.ToLower(k)] = v[0]
		}
	}
	var m metricspb.MetricsData
	decodeErr := proto.Unmarshal(body, &m)
	if decodeErr == nil {
		req.Metrics = &m
	}
	code, after, rejected := r.admit(req, decodeErr, int(codes.OK), int(codes.InvalidArgument))
	switch {
	case decodeErr != nil:
		return nil, status.Errorf(codes.InvalidArgument, "otlptest: decoding request: %v", decodeErr)
	case code != int(codes.OK):
		st := status.New(codes.Code(code), "otlptest: injected failure")
		if after > 0 {
			if withInfo, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)}); err == nil {
				st = withInfo
			}
		}
		return nil, st.Err()
	}
	return grpcraw.Message(exportResponse(rejected)), nil
}

// compressionRecorder notes the request's grpc-encoding, which gRPC keeps out of
// the metadata.
type compressionRecorder struct{}

type compressionKey struct{}

type compressionBox struct {
	mu   sync.Mutex
	name string
}

func (compressionRecorder) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, compressionKey{}, &compressionBox{})
}

func (compressionRecorder) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if h, ok := s.(*stats.InHeader); ok {
		if b, ok := ctx.Value(compressionKey{}).(*compressionBox); ok {
			b.mu.Lock()
			b.name = h.Compression
			b.mu.Unlock()
		}
	}
}

func (compressionRecorder) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (compressionRecorder) HandleConn(context.Context, stats.ConnStats) {}

func compressionOf(ctx context.Context) string {
	b, ok := ctx.Value(compressionKey{}).(*compressionBox)
	if !ok {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.name == "identity" {
		return ""
	}
	return b.name
}
