package otlptest

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// maxBody bounds a request body, compressed or not.
const maxBody = 64 << 20

// NewHTTP starts an OTLP/HTTP metrics receiver (POST /v1/metrics,
// application/x-protobuf, optionally gzip-encoded) on 127.0.0.1:0; the test's
// cleanup stops it.
func NewHTTP(t testing.TB, opts ...Option) *Receiver {
	t.Helper()
	return start(t, true, newHTTPServer, opts)
}

type httpServer struct {
	srv    *http.Server
	useTLS bool
}

func newHTTPServer(r *Receiver) server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/metrics", r.exportHTTP)
	return &httpServer{
		srv:    &http.Server{Handler: mux, TLSConfig: r.tls, ReadHeaderTimeout: 10 * time.Second},
		useTLS: r.tls != nil,
	}
}

func (s *httpServer) serve(ln net.Listener) {
	go func() {
		if s.useTLS {
			_ = s.srv.ServeTLS(ln, "", "")
			return
		}
		_ = s.srv.Serve(ln)
	}()
}

func (s *httpServer) stop() { _ = s.srv.Close() }

func (r *Receiver) exportHTTP(w http.ResponseWriter, hr *http.Request) {
	req := Request{Headers: map[string]string{}, Received: time.Now(), Compression: hr.Header.Get("Content-Encoding")}
	for k, v := range hr.Header {
		if len(v) > 0 {
			req.Headers[strings.ToLower(k)] = v[0]
		}
	}
	m, decodeErr := decodeHTTPBody(hr)
	req.Metrics = m
	code, after, rejected := r.admit(req, decodeErr, http.StatusOK, http.StatusBadRequest)
	w.Header().Set("Content-Type", "application/x-protobuf")
	switch {
	case decodeErr != nil:
		writeStatus(w, http.StatusBadRequest, decodeErr.Error())
	case code != http.StatusOK:
		if after > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(after.Seconds()))))
		}
		writeStatus(w, code, "otlptest: injected failure")
	default:
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(exportResponse(rejected))
	}
}

func decodeHTTPBody(hr *http.Request) (*metricspb.MetricsData, error) {
	if ct := hr.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, fmt.Errorf("content type %q, want application/x-protobuf", ct)
	}
	var body io.Reader = http.MaxBytesReader(nil, hr.Body, maxBody)
	zr, release, err := otlpcompress.NewReader(hr.Header.Get("Content-Encoding"), body)
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	defer release()
	body = io.LimitReader(zr, maxBody+1)
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if len(b) > maxBody {
		return nil, errors.New("body too large")
	}
	var m metricspb.MetricsData
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding body: %w", err)
	}
	return &m, nil
}

// writeStatus answers with a google.rpc.Status body, as OTLP/HTTP receivers do.
func writeStatus(w http.ResponseWriter, code int, msg string) {
	b, _ := proto.Marshal(&spb.Status{Message: msg})
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
