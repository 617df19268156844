package eventwatcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func TestErrorKind(t *testing.T) {
	timeout := &net.OpError{Op: "dial", Err: timeoutErr{}}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&imds.RequestError{Provider: imds.AWS, Status: 503}, "http_5xx"},
		{&imds.RequestError{Provider: imds.AWS, Status: 401}, "http_4xx"},
		{&imds.RequestError{Provider: imds.Azure, Status: 429}, "http_4xx"},
		{&imds.RequestError{Provider: imds.GCP, Err: context.DeadlineExceeded}, "timeout"},
		{&imds.RequestError{Provider: imds.GCP, Err: timeout}, "timeout"},
		{&imds.RequestError{Provider: imds.GCP, Err: errors.New("connection refused")}, "transport"},
		{fmt.Errorf("wrapped: %w", &imds.ParseError{Provider: imds.Azure, Err: errors.New("bad json")}), "parse"},
		{fmt.Errorf("%w: x", errInvalidSnapshot), "invalid"},
		{errors.New("what"), "other"},
	} {
		if got := errorKind(tc.err); got != tc.want {
			t.Errorf("errorKind(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// A failing metadata service keeps the last known events, counts every error by
// kind and is retried with growing delays; success resets the delay.
func TestPollLoopKeepsStateOnErrors(t *testing.T) {
	src := newFakeSource(imds.AWS)
	cfg := Config{PollInterval: 10 * time.Millisecond, MaxRetryInterval: 80 * time.Millisecond}
	c := unitController(t, src, cfg)
	nb := time.Now().Add(time.Hour)
	src.set(imds.Event{ID: "e1", Provider: imds.AWS, Type: imds.TypeReboot, Status: imds.StatusScheduled, NotBefore: nb})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.pollLoop(ctx) })
	defer func() { cancel(); wg.Wait() }()

	current := func() []tracked {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.tracker.list()
	}
	testkit.EventuallyWithin(t, 5*time.Second, "first poll", func() bool { return c.polled.Load() })
	if got := current(); len(got) != 1 || got[0].ID != "e1" {
		t.Fatalf("events after first poll: %+v", got)
	}
	if testutil.ToFloat64(c.m.lastPoll) < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatal("last successful poll time not set")
	}
	if n := testutil.ToFloat64(c.m.events.WithLabelValues(imds.AWS, "Reboot", "scheduled")); n != 1 {
		t.Fatalf("events gauge = %v", n)
	}

	// Successful polls are paced by PollInterval.
	start, polls0 := time.Now(), src.pollCount()
	testkit.EventuallyWithin(t, 5*time.Second, "more polls", func() bool { return src.pollCount() >= polls0+5 })
	if elapsed, n := time.Since(start), src.pollCount()-polls0; time.Duration(n-1)*cfg.PollInterval > elapsed+cfg.PollInterval {
		t.Fatalf("%d polls in %s with a %s interval", n, elapsed, cfg.PollInterval)
	}

	for _, tc := range []struct {
		err  error
		kind string
	}{
		{&imds.RequestError{Provider: imds.AWS, Path: "/latest/api/token", Status: 401}, "http_4xx"},
		{&imds.RequestError{Provider: imds.AWS, Status: 503}, "http_5xx"},
		{&imds.ParseError{Provider: imds.AWS, Err: errors.New("truncated")}, "parse"},
		{&imds.RequestError{Provider: imds.AWS, Err: context.DeadlineExceeded}, "timeout"},
	} {
		before := testutil.ToFloat64(c.m.metadataErrors.WithLabelValues(tc.kind))
		start := time.Now()
		src.fail(tc.err)
		// Five failures in a row wait 10+20+40+80 ms between them at least.
		testkit.EventuallyWithin(t, 5*time.Second, tc.kind+" errors", func() bool {
			return testutil.ToFloat64(c.m.metadataErrors.WithLabelValues(tc.kind)) >= before+5
		})
		if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
			t.Fatalf("%s: 5 failed polls within %s: no backoff", tc.kind, elapsed)
		}
		if got := current(); len(got) != 1 || got[0].ID != "e1" {
			t.Fatalf("%s: events dropped on error: %+v", tc.kind, got)
		}
		src.set(imds.Event{ID: "e1", Provider: imds.AWS, Type: imds.TypeReboot, Status: imds.StatusScheduled, NotBefore: nb})
	}
	// A snapshot the controller cannot act on counts as invalid, keeps the state.
	src.set(imds.Event{Provider: imds.AWS, Type: imds.TypeReboot, Status: imds.StatusScheduled})
	testkit.EventuallyWithin(t, 5*time.Second, "invalid snapshot", func() bool { return testutil.ToFloat64(c.m.metadataErrors.WithLabelValues("invalid")) >= 1 })
	if got := current(); len(got) != 1 {
		t.Fatalf("events dropped on an invalid snapshot: %+v", got)
	}
	// An unknown type is counted once, not once per poll.
	src.set(imds.Event{ID: "u1", Provider: imds.AWS, Type: "Hibernate", RawType: "instance-hibernate", Status: imds.StatusScheduled})
	testkit.EventuallyWithin(t, 5*time.Second, "unknown type", func() bool { return len(current()) == 1 && current()[0].ID == "u1" })
	polls := src.pollCount()
	testkit.EventuallyWithin(t, 5*time.Second, "more polls", func() bool { return src.pollCount() >= polls+3 })
	if n := testutil.ToFloat64(c.m.unknownTypes.WithLabelValues(imds.AWS, "Hibernate")); n != 1 {
		t.Fatalf("unknown types counted %v times", n)
	}
	// e1 vanished before its NotBefore: canceled.
	if n := testutil.ToFloat64(c.m.eventTransitions.WithLabelValues(imds.AWS, "Reboot", statusCanceled)); n != 1 {
		t.Fatalf("canceled transitions = %v", n)
	}
}

// A long-polling client (GCP waits for a change) is polled again as soon as it
// returns: no PollInterval on top of a poll that took longer than that.
func TestPollLoopLongPoll(t *testing.T) {
	src := &blockingSource{fakeSource: newFakeSource(imds.GCP), block: 120 * time.Millisecond}
	interval := 100 * time.Millisecond
	c := unitController(t, src, Config{PollInterval: interval})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.pollLoop(ctx) })
	testkit.EventuallyWithin(t, 10*time.Second, "polls", func() bool { return src.pollCount() >= 4 })
	cancel()
	wg.Wait()
	src.mu.Lock()
	defer src.mu.Unlock()
	// Waiting PollInterval after each poll would make every gap at least 100 ms.
	minGap := time.Hour
	for i := 1; i < len(src.starts); i++ {
		minGap = min(minGap, src.starts[i].Sub(src.ends[i-1]))
	}
	if minGap >= interval {
		t.Fatalf("smallest gap between a long poll and the next is %s", minGap)
	}
}

// blockingSource's Poll blocks like a long poll and records when each poll
// started and ended.
type blockingSource struct {
	*fakeSource
	block        time.Duration
	starts, ends []time.Time
}

func (b *blockingSource) Poll(ctx context.Context) (imds.Snapshot, error) {
	b.mu.Lock()
	b.starts = append(b.starts, time.Now())
	b.mu.Unlock()
	t := time.NewTimer(b.block)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return imds.Snapshot{}, ctx.Err()
	case <-t.C:
	}
	b.mu.Lock()
	b.ends = append(b.ends, time.Now())
	b.mu.Unlock()
	return b.fakeSource.Poll(ctx)
}
