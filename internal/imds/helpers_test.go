package imds_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

// clock is a settable test clock shared by a client and a fake.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 4, 11, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustPoll(t *testing.T, c imds.Client) imds.Snapshot {
	t.Helper()
	s, err := c.Poll(ctxT(t))
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	return s
}

// wantRequestError checks err is a *RequestError with the given status.
func wantRequestError(t *testing.T, err error, status int) *imds.RequestError {
	t.Helper()
	var re *imds.RequestError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T), want *RequestError", err, err)
	}
	if re.Status != status {
		t.Fatalf("RequestError status %d, want %d (%v)", re.Status, status, err)
	}
	return re
}

func wantParseError(t *testing.T, err error) {
	t.Helper()
	var pe *imds.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *ParseError", err, err)
	}
}

func startFake(t *testing.T, h interface{ Start() *imdsfake.Server }) *imdsfake.Server {
	srv := h.Start()
	t.Cleanup(srv.Close)
	return srv
}

// countRequests counts logged requests with the given method and path.
func countRequests(reqs []imdsfake.Request, method, path string) int {
	n := 0
	for _, r := range reqs {
		if r.Method == method && r.Path == path {
			n++
		}
	}
	return n
}
