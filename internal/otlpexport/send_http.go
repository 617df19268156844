package otlpexport

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// maxResponseBytes bounds what is read of a receiver's response body.
const maxResponseBytes = 1 << 20

// httpSender exports with OTLP/HTTP (binary protobuf).
type httpSender struct {
	cfg    *Config
	client *http.Client
}

func newHTTPSender(cfg *Config) *httpSender {
	tc := cfg.TLS
	if tc == nil {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tc.Clone(),
		TLSHandshakeTimeout: cfg.Timeout,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 2, // one request at a time; a spare for a reconnect
		IdleConnTimeout:     90 * time.Second,
	}
	return &httpSender{cfg: cfg, client: &http.Client{Transport: tr}}
}

func (s *httpSender) send(ctx context.Context, payload []byte) (partialSuccess, error) {
	h, err := requestHeaders(s.cfg)
	if err != nil {
		return partialSuccess{}, err
	}
	// payload is compressed as configured already (the queue holds it so).
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.Endpoint, bytes.NewReader(payload))
	if err != nil {
		return partialSuccess{}, permanent(fmt.Errorf("building http export request: %w", err))
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	if s.cfg.Compression != CompressionNone {
		req.Header.Set("Content-Encoding", s.cfg.Compression)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return partialSuccess{}, retryable(fmt.Errorf("http export: %w", err), 0)
	}
	defer resp.Body.Close()
	respBody, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil {
			return partialSuccess{message: readErr.Error()}, nil // acknowledged all the same
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/x-protobuf") {
			return partialSuccess{}, nil // not an OTLP response body; the status is what counts
		}
		ps, err := decodeExportResponse(respBody)
		if err != nil {
			return partialSuccess{message: err.Error()}, nil
		}
		return ps, nil
	}
	return partialSuccess{}, classifyHTTP(resp, respBody, time.Now())
}

// reusesPayload tells whether send is done with its payload when it returns:
// never, the transport may still read a request body after the response.
func (s *httpSender) reusesPayload() bool { return false }

func (s *httpSender) close() error {
	s.client.CloseIdleConnections()
	return nil
}

// classifyHTTP applies the OTLP/HTTP retry rules: 429, 502, 503 and 504 are
// retryable (honouring Retry-After), like 408 and, as for gRPC, 401 and 403 (a
// credential problem is an outage the operator fixes); every other status drops the
// batch.
func classifyHTTP(resp *http.Response, body []byte, now time.Time) error {
	err := fmt.Errorf("http export: %s: %s", resp.Status, errorSummary(resp.Header.Get("Content-Type"), body))
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		http.StatusRequestTimeout, http.StatusUnauthorized, http.StatusForbidden:
		return retryable(err, parseRetryAfter(resp.Header.Get("Retry-After"), now))
	}
	return permanent(err)
}

// parseRetryAfter reads a Retry-After header: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}

// errorSummary is a short, printable excerpt of an error response body. OTLP
// receivers answer errors with a google.rpc.Status message, binary or JSON.
func errorSummary(contentType string, body []byte) string {
	const maxLen = 256
	if strings.HasPrefix(contentType, "application/x-protobuf") {
		var st spb.Status
		if err := proto.Unmarshal(body, &st); err == nil && st.GetMessage() != "" {
			body = []byte(st.GetMessage())
		}
	}
	var b strings.Builder
	for _, r := range string(body) {
		if b.Len() >= maxLen {
			b.WriteString("...")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "no message"
	}
	return b.String()
}
