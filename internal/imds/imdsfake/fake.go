// Package imdsfake provides in-process fakes of the Azure, AWS and GCP
// instance metadata services, for tests and demos. Each fake is an
// http.Handler that behaves as described in design/reference/imds.md,
// including the quirks (required headers, Azure's 5 requests/s limit, AWS
// IMDSv2 tokens, GCP long polls), plus fault injection and a request log.
//
// All methods are safe for concurrent use.
package imdsfake

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// maxRequestBody bounds the request bodies the fakes read.
const maxRequestBody = 1 << 20

// Request is one request a fake received, in arrival order.
type Request struct {
	Method string
	// Path is the URL path; RawQuery the query without '?'.
	Path     string
	RawQuery string
	Header   http.Header
	Body     string
	// Time is when the fake received the request (wall clock).
	Time time.Time
	// Status is the HTTP status the fake answered (0 while a long poll waits).
	Status int
}

// base holds what all fakes share: the request log and fault injection.
type base struct {
	mu         sync.Mutex
	requests   []Request
	epoch      int // incremented by ClearRequests
	failN      int
	failStatus int
	malformedN int
}

// FailNext makes the next n requests, of any kind, fail with status (e.g.
// 500, 503, 401, 429) before anything else is checked.
func (b *base) FailNext(n, status int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failN, b.failStatus = max(n, 0), status
}

// MalformedNext makes the next n successful answers that carry a document
// (JSON or a text value) return broken content instead (truncated JSON,
// garbage text), with status 200.
func (b *base) MalformedNext(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.malformedN = max(n, 0)
}

// Requests returns a copy of the request log.
func (b *base) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]Request, len(b.requests))
	for i, r := range b.requests {
		r.Header = r.Header.Clone()
		out[i] = r
	}
	return out
}

// ClearRequests empties the request log.
func (b *base) ClearRequests() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = nil
	b.epoch++
}

// received is what record returns about a request.
type received struct {
	idx   int // index in the log of epoch
	epoch int
	body  []byte    // request body (bounded)
	fail  int       // injected failure status, 0 for none
	at    time.Time // arrival time, as logged
}

// record logs r (reading its body, bounded) and takes an injected failure.
func (b *base) record(r *http.Request) received {
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBody))
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     string(body),
		Time:     now,
	})
	rec := received{idx: len(b.requests) - 1, epoch: b.epoch, body: body, at: now}
	if b.failN > 0 {
		b.failN--
		rec.fail = b.failStatus
	}
	return rec
}

// takeMalformed reports whether this answer must be malformed.
func (b *base) takeMalformed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.malformedN > 0 {
		b.malformedN--
		return true
	}
	return false
}

// reply writes the status and body and stores the status in the log.
func (b *base) reply(w http.ResponseWriter, rec received, status int, contentType, body string) {
	b.mu.Lock()
	if rec.epoch == b.epoch && rec.idx < len(b.requests) {
		b.requests[rec.idx].Status = status
	}
	b.mu.Unlock()
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// Server is a running fake on 127.0.0.1. Close also ends requests that are
// still waiting (GCP long polls), so it never blocks for their timeout.
type Server struct {
	*httptest.Server
	cancel context.CancelFunc
}

// Close ends waiting requests and shuts the server down.
func (s *Server) Close() {
	s.cancel()
	s.Server.Close()
}

// serve starts h on a loopback port; every request context ends on Close.
func serve(h http.Handler) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	srv := httptest.NewUnstartedServer(h)
	srv.Config.BaseContext = func(net.Listener) context.Context { return ctx }
	srv.Start()
	return &Server{Server: srv, cancel: cancel}
}
