package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// CheckFunc reports nil when healthy. It must return quickly; it gets a context
// with a short deadline.
type CheckFunc func(ctx context.Context) error

// Checks is a named set of health or readiness checks.
type Checks struct {
	mu     sync.RWMutex
	checks map[string]CheckFunc
}

// Add registers a check; a second Add with the same name replaces the first.
func (c *Checks) Add(name string, fn CheckFunc) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checks == nil {
		c.checks = map[string]CheckFunc{}
	}
	c.checks[name] = fn
}

// len is the number of registered checks.
func (c *Checks) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.checks)
}

type result struct {
	name string
	err  error
}

// Run evaluates every check and returns the results sorted by name.
func (c *Checks) Run(ctx context.Context) []result {
	c.mu.RLock()
	names := make([]string, 0, len(c.checks))
	for n := range c.checks {
		names = append(names, n)
	}
	fns := make(map[string]CheckFunc, len(c.checks))
	for n, f := range c.checks {
		fns[n] = f
	}
	c.mu.RUnlock()
	sort.Strings(names)
	out := make([]result, 0, len(names))
	for _, n := range names {
		out = append(out, result{name: n, err: fns[n](ctx)})
	}
	return out
}

// ServeHTTP answers 200 "ok" when every check passes and 503 listing the failing
// ones otherwise; with ?verbose every check is listed.
func (c *Checks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	results := c.Run(ctx)
	_, verbose := r.URL.Query()["verbose"]
	var b strings.Builder
	failed := false
	for _, res := range results {
		if res.err != nil {
			failed = true
			fmt.Fprintf(&b, "[-]%s failed: %v\n", res.name, res.err)
		} else if verbose {
			fmt.Fprintf(&b, "[+]%s ok\n", res.name)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
		b.WriteString("check failed\n")
	} else {
		b.WriteString("ok\n")
	}
	_, _ = w.Write([]byte(b.String()))
}

// Gate is a check whose state a daemon sets from its data path: not ready until
// the first Set(nil), then whatever the last Set said.
type Gate struct {
	state atomic.Pointer[error]
}

var errNotYet = errors.New("not ready yet")

// NewGate returns a gate that fails until Set(nil) is called.
func NewGate() *Gate {
	g := &Gate{}
	g.Set(errNotYet)
	return g
}

// Set records the current state; nil means ready.
func (g *Gate) Set(err error) { g.state.Store(&err) }

// Check is the gate's CheckFunc.
func (g *Gate) Check(context.Context) error {
	if p := g.state.Load(); p != nil {
		return *p
	}
	return errNotYet
}
