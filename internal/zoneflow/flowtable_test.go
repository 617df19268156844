package zoneflow

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
)

// TestFlowStateSize keeps the per-flow state at 48 bytes (the memory figures
// of docs/zone-flow-tracer.md rest on it).
func TestFlowStateSize(t *testing.T) {
	if n := unsafe.Sizeof(flowState{}); n != 48 {
		t.Fatalf("flowState is %d bytes, want 48", n)
	}
}

// TestFlowTableMatchesMap drives the table with random inserts, finds (with
// right, wrong and out-of-range guesses) and removes, against a Go map as the
// model, through growth and with keys crowded into few index slots (equal
// IDs, as the kernel's 32-bit IDs sometimes are) so that probe runs wrap
// around the index and removals shift entries back.
func TestFlowTableMatchesMap(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tab := newFlowTable()
		model := map[flowKey]uint64{} // key -> origBytes written at insert
		var keys []flowKey
		randKey := func() flowKey {
			if len(keys) > 0 && rng.IntN(3) == 0 {
				return keys[rng.IntN(len(keys))]
			}
			// Few distinct values: many keys share their ID and collide.
			return flowKey{id: rng.Uint32N(64), sport: uint16(rng.UintN(300)), dport: 443, zone: uint16(rng.UintN(2)), proto: 6}
		}
		check := func(k flowKey, guess uint32) {
			i, ok := tab.find(k, guess)
			want, in := model[k]
			if ok != in {
				t.Fatalf("seed %d: find %+v: found %v, model %v", seed, k, ok, in)
			}
			if ok && (tab.at(i).key() != k || tab.at(i).origBytes != want) {
				t.Fatalf("seed %d: find %+v: position %d holds %+v", seed, k, i, *tab.at(i))
			}
		}
		n := 2000 + rng.IntN(6000)
		for op := range n {
			k := randKey()
			switch r := rng.IntN(10); {
			case r < 5:
				if _, in := model[k]; in {
					continue
				}
				i := tab.insert(k)
				tab.at(i).origBytes = uint64(op)
				model[k] = uint64(op)
				keys = append(keys, k)
			case r < 8:
				if i, ok := tab.find(k, ^uint32(0)); ok {
					tab.remove(i)
					delete(model, k)
				}
			default:
				guess := rng.Uint32N(tab.n + 10)
				if i, ok := tab.find(k, ^uint32(0)); ok && rng.IntN(2) == 0 {
					guess = i
				}
				check(k, guess)
			}
			if tab.len() != len(model) {
				t.Fatalf("seed %d: len %d, model %d", seed, tab.len(), len(model))
			}
		}
		for _, k := range keys {
			check(k, ^uint32(0))
		}
		seen := 0
		tab.all(func(_ uint32, st *flowState) {
			if _, in := model[st.key()]; !in {
				t.Fatalf("seed %d: all yields %+v, not in the model", seed, st.key())
			}
			seen++
		})
		if seen != len(model) {
			t.Fatalf("seed %d: all yields %d flows, model %d", seed, seen, len(model))
		}
		// Remove everything while walking: the table ends empty.
		tab.all(func(i uint32, _ *flowState) { tab.remove(i) })
		for i, v := range tab.index {
			if v != 0 {
				t.Fatalf("seed %d: index slot %d still %d after removing all", seed, i, v)
			}
		}
		if tab.len() != 0 {
			t.Fatalf("seed %d: len %d after removing all", seed, tab.len())
		}
	}
}

func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live, table uint64
		want        int
	}{
		{live: 8 << 20, table: 0, want: 100},          // no flows: Go's default
		{live: 8 << 20, table: 64 << 10, want: 95},    // a few flows: about the default
		{live: 66 << 20, table: 56 << 20, want: 15},   // a million flows: goal 76 MB, not 132
		{live: 10 << 20, table: 56 << 20, want: 10},   // the table grew after the last GC
		{live: 600 << 20, table: 590 << 20, want: 10}, // never below the floor
	} {
		if got := gcPercentFor(c.live, c.table); got != c.want {
			t.Errorf("gcPercentFor(%d MiB live, %d MiB table) = %d, want %d", c.live>>20, c.table>>20, got, c.want)
		}
	}
}

// TestRealTableTracked is BenchmarkRealDump1M's path at 20,000 entries, cheap
// enough for every test run: entries inserted through ctnetlink into a
// namespace's table, dumped by the tracer (the first dump finds every flow
// new and gives it the next slab position), dumped again (each flow found at
// its guessed position), then 5,000 more entries (new flows between known
// ones, found through the index); every dump tracks exactly the table and
// reports its entries and CPU time.
func TestRealTableTracked(t *testing.T) {
	netnstest.Require(t)
	ns := netnstest.New(t, "zf-table")
	ns.EnableConntrack(t, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	fs := benchEntries(25_000)
	if err := conn.Create(fs[:20_000], time.Hour); err != nil {
		t.Fatal(err)
	}
	tr := newTestTracer("n1", conn, testIndex("n1"))
	ctx := context.Background()
	check := func(when string, want int) {
		t.Helper()
		if _, err := tr.dump(ctx); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		_, st, tracked := tr.p.snapshot()
		if tracked != want || testutil.ToFloat64(tr.m.dumpEntries) != float64(want) {
			t.Fatalf("%s: tracked %d, dump_entries %v; want %d", when, tracked, testutil.ToFloat64(tr.m.dumpEntries), want)
		}
		if st.lostFlows != 0 || st.resumedFlows != 0 || st.resets != 0 {
			t.Fatalf("%s: lost %d, resumed %d, resets %d; want none", when, st.lostFlows, st.resumedFlows, st.resets)
		}
		if st.tableBytes < uint64(want)*48 {
			t.Fatalf("%s: table of %d bytes for %d flows", when, st.tableBytes, want)
		}
	}
	check("first dump", 20_000)
	check("second dump", 20_000)
	if err := conn.Create(fs[20_000:], time.Hour); err != nil {
		t.Fatal(err)
	}
	check("after 5,000 new entries", 25_000)
	if testutil.ToFloat64(tr.m.dumpCPU) <= 0 {
		t.Fatal("dump_cpu_seconds_total did not grow")
	}
	// Every flow is in the index as well as in the slab.
	tr.p.flows.all(func(i uint32, st *flowState) {
		if j, ok := tr.p.flows.find(st.key(), ^uint32(0)); !ok || j != i {
			t.Fatalf("flow at %d: index finds %d, %v", i, j, ok)
		}
	})
}
