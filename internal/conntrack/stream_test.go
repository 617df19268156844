package conntrack_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func entries(n int, base uint16) []conntrack.Flow {
	fs := make([]conntrack.Flow, n)
	for i := range fs {
		fs[i] = conntrack.Flow{Proto: 17, OrigSrc: netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%200)}),
			OrigDst: netip.MustParseAddr("203.0.113.1"), OrigSrcPort: base + uint16(i/200), OrigDstPort: 53}
	}
	return fs
}

// TestStreamedDump inserts 30k entries through ctnetlink create messages and
// reads them back by a streamed dump: every entry once, with its tuple. A dump
// cancelled half way leaves the connection usable for the next one (the
// kernel's unfinished dump does not block it).
func TestStreamedDump(t *testing.T) {
	ns := netnstest.New(t, "ct-stream")
	ns.EnableConntrack(t, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	const n = 30_000
	if err := conn.Create(entries(n, 1000), time.Hour); err != nil {
		t.Fatal(err)
	}
	// The same entries again: the kernel refuses duplicates, and says so.
	if err := conn.Create(entries(1, 1000), time.Hour); err == nil {
		t.Fatal("creating an existing entry succeeded")
	}
	seen := map[[2]uint16]int{}
	err = conn.Dump(context.Background(), func(f *conntrack.Flow) {
		if f.Proto != 17 || f.OrigDstPort != 53 || f.Responder() != netip.MustParseAddr("203.0.113.1") || f.ID == 0 {
			t.Errorf("unexpected entry %s", f)
		}
		seen[[2]uint16{uint16(f.OrigSrc.As4()[3]), f.OrigSrcPort}]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("dump returned %d distinct entries, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("entry %v seen %d times", k, c)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	count := 0
	err = conn.Dump(ctx, func(*conntrack.Flow) {
		if count++; count == 1000 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled dump: %v", err)
	}
	count = 0
	if err := conn.Dump(context.Background(), func(*conntrack.Flow) { count++ }); err != nil || count != n {
		t.Fatalf("dump after a cancelled one: %d entries, %v", count, err)
	}
}

// TestListenGoesOnAfterOverflow: with an Overflow handler the listener reports
// ENOBUFS and keeps reading the same socket (the events still queued are not
// thrown away), and reports idle once the queue is empty.
func TestListenGoesOnAfterOverflow(t *testing.T) {
	ns := netnstest.New(t, "ct-overflow2")
	ns.EnableConntrack(t, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD(), ReadBuffer: 4096})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	var overflows, events atomic.Int64
	var mu sync.Mutex
	var lastIdle time.Time
	stall := make(chan struct{})
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		first := true
		done <- conn.Listen(ctx, conntrack.Handlers{
			Ready: func() { close(ready) },
			Event: func(typ conntrack.EventType, f *conntrack.Flow) {
				if first {
					first = false
					<-stall
				}
				if typ == conntrack.EventDestroy {
					events.Add(1)
				}
			},
			Idle: func(since time.Time) {
				mu.Lock()
				lastIdle = since
				mu.Unlock()
			},
			Overflow: func() { overflows.Add(1) },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("listen ended with %v", err)
		}
	})
	<-ready
	for round := range 4 {
		if err := conn.Create(entries(500, uint16(2000+round*10)), time.Hour); err != nil {
			t.Fatal(err)
		}
		flush(t, ns)
	}
	close(stall)
	testkit.Eventually(t, "an overflow report", func() bool { return overflows.Load() > 0 })
	// Still listening: once the backlog is read (an idle report), new entries'
	// DESTROY events arrive (few enough for the tiny buffer), and the reader
	// goes idle again.
	drained := time.Now()
	testkit.Eventually(t, "the backlog to be read", func() bool { mu.Lock(); defer mu.Unlock(); return lastIdle.After(drained) })
	before := events.Load()
	if err := conn.Create(entries(3, 9000), time.Hour); err != nil {
		t.Fatal(err)
	}
	mark := time.Now()
	flush(t, ns)
	testkit.Eventually(t, "events after the overflow", func() bool { return events.Load() >= before+3 })
	testkit.Eventually(t, "an idle report", func() bool { mu.Lock(); defer mu.Unlock(); return lastIdle.After(mark) })
}
