package zoneflow

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestDumpFailureAndRecovery: a failed dump makes the daemon unready and is
// counted; the next dump accounts what was missed (deltas), and readiness
// returns. No API server needed.
func TestDumpFailureAndRecovery(t *testing.T) {
	fake := conntrack.NewFake()
	f := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 100, 0)
	fake.Set(f)
	fake.DumpErr = errors.New("netlink: boom")
	tr := newTestTracer("n1", fake, testIndex("n1"))
	tr.interval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.dumpLoop(ctx, func() {}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dumpLoop: %v", err)
		}
	}()
	testkit.Eventually(t, "a successful dump after the failure", func() bool { return fake.Dumps() >= 1 })
	testkit.Eventually(t, "readiness", func() bool { return tr.gate.Check(ctx) == nil })
	fake.Set(flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 350, 0))
	testkit.Eventually(t, "the delta", func() bool { return totals(tr.p, zdKey)["a>b egress cross-zone shop/deployment/web"] == 350 })

	// /flows lists it with its cost.
	tr.prices = Prices{ClassCrossZone: 0.02}
	rec := httptest.NewRecorder()
	tr.ServeHTTP(rec, httptest.NewRequest("GET", "/flows", nil))
	var s FlowSummary
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if len(s.Top) != 1 || s.Top[0].Bytes != 350 || s.Top[0].CostDollars != 350.0/gib*0.02 || s.TrackedFlows != 1 {
		t.Fatalf("/flows: %s", rec.Body)
	}
}

// TestEventOverflowResync: an overflow from the event source triggers an
// immediate dump (well before the next tick).
func TestEventOverflowResync(t *testing.T) {
	fake := conntrack.NewFake()
	tr := newTestTracer("n1", fake, testIndex("n1"))
	tr.interval = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = tr.dumpLoop(ctx, func() {}); done <- struct{}{} }()
	go func() { _ = tr.eventLoop(ctx); done <- struct{}{} }()
	defer func() { cancel(); <-done; <-done }()
	testkit.Eventually(t, "the first dump", func() bool { return fake.Dumps() == 1 })
	fake.Overflow()
	testkit.Eventually(t, "the resync dump", func() bool { return fake.Dumps() == 2 })
}
