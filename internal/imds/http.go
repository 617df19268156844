package imds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxBody bounds every response body read from a metadata service. Real
// documents are a few KiB; anything larger is treated as malformed.
const maxBody = 1 << 20

var (
	errBodyTooLarge = errors.New("response body exceeds 1 MiB")
	errBadEndpoint  = errors.New("endpoint must be an absolute http(s) URL without query")
	errRedirect     = errors.New("metadata services do not redirect")
)

// requester sends requests to one metadata service and reads bounded answers.
type requester struct {
	provider string
	base     string // endpoint without trailing slash
	client   *http.Client
}

// response is a completed exchange; the body is read in full (bounded).
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request. path is the path plus optional query; errPath is the
// path reported in errors (without query). Transport failures and oversized
// bodies are errors; the status is for the caller to judge.
func (r *requester) do(ctx context.Context, method, path, errPath string, header http.Header, body []byte) (response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return response{}, &RequestError{Provider: r.provider, Path: errPath, Err: err}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return response{}, &RequestError{Provider: r.provider, Path: errPath, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return response{}, &RequestError{Provider: r.provider, Path: errPath, Err: fmt.Errorf("reading body: %w", err)}
	}
	if len(data) > maxBody {
		return response{}, &ParseError{Provider: r.provider, Path: errPath, Err: errBodyTooLarge}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// statusError is the *RequestError for a non-2xx answer, with a short excerpt
// of the body (metadata services explain 400s there).
func (r *requester) statusError(errPath string, resp response) error {
	e := &RequestError{Provider: r.provider, Path: errPath, Status: resp.status}
	if excerpt := strings.TrimSpace(string(resp.body)); excerpt != "" {
		if len(excerpt) > 200 {
			excerpt = excerpt[:200]
		}
		e.Err = fmt.Errorf("server said %q", excerpt)
	}
	return e
}

func (r *requester) parseError(errPath string, err error) error {
	return &ParseError{Provider: r.provider, Path: errPath, Err: err}
}

func ok(status int) bool { return status >= 200 && status <= 299 }

// normaliseEndpoint checks an endpoint URL and strips its trailing slash.
func normaliseEndpoint(endpoint, def string) (string, error) {
	if endpoint == "" {
		endpoint = def
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errBadEndpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("%w: %q", errBadEndpoint, endpoint)
	}
	return strings.TrimRight(endpoint, "/"), nil
}

// defaultHTTPClient talks to the metadata service directly: never through a
// proxy from HTTP_PROXY (a proxy would add X-Forwarded-For, which Azure
// rejects, and the link-local address is not reachable from a proxy anyway),
// and never following redirects.
func defaultHTTPClient(timeout time.Duration) *http.Client {
	var t *http.Transport
	if dt, isTransport := http.DefaultTransport.(*http.Transport); isTransport {
		t = dt.Clone()
	} else {
		t = &http.Transport{}
	}
	t.Proxy = nil
	return &http.Client{
		Transport:     t,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
}

// gate serialises requests and keeps at least interval between the end of
// one request and the start of the next. Measuring from the end (not the
// start) means the server sees its requests at least interval apart whatever
// the network delay, so a per-second limit on the server side is never hit.
type gate struct {
	sem      chan struct{}
	interval time.Duration
	last     time.Time // end of the previous request; guarded by sem
}

func newGate(interval time.Duration) *gate {
	return &gate{sem: make(chan struct{}, 1), interval: interval}
}

// acquire waits for the turn to send a request; release must follow.
func (g *gate) acquire(ctx context.Context) error {
	select {
	case g.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	if g.last.IsZero() {
		return nil
	}
	wait := g.interval - time.Since(g.last)
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		<-g.sem
		return ctx.Err()
	}
}

// release marks the end of a request.
func (g *gate) release() {
	g.last = time.Now()
	<-g.sem
}

// releaseUnused ends a turn in which no request was sent.
func (g *gate) releaseUnused() { <-g.sem }
