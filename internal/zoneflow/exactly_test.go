package zoneflow

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/conntrack"
)

// Exactly-once accounting whatever the order in which dumps and DESTROY events
// report a flow. Each test drives the processor through one interleaving.

func sumAll(p *Processor) uint64 { return totals(p, func(recordKey) string { return "" })[""] }

func fl(id uint32, b uint64) conntrack.Flow { return flow(id, n1Pod, n2Pod, n2Pod, n1Pod, b, 0) }

func dumpOf(p *Processor, fs ...conntrack.Flow) int {
	p.BeginDump()
	for i := range fs {
		p.Observe(&fs[i])
	}
	return p.EndDump()
}

func destroy(p *Processor, f conntrack.Flow) { p.Destroy(&f) }

// idle is the event reader finding its queue empty now.
func idle(p *Processor) { p.EventsIdle(time.Now()) }

func wantSum(t *testing.T, p *Processor, want uint64, when string) {
	t.Helper()
	if got := sumAll(p); got != want {
		t.Fatalf("%s: counted %d bytes, want %d", when, got, want)
	}
}

// TestDumpThenEvent: the entry ends, the next dump misses it, and only then is
// its DESTROY event read (the reader lags, or the dump itself expired the entry
// and the kernel sent the event after it). The event adds the difference to
// the last dump, not the whole history again.
func TestDumpThenEvent(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100))
	if lost := dumpOf(p); lost != 0 {
		t.Fatalf("a flow missing from one dump was dropped as lost (%d)", lost)
	}
	wantSum(t, p, 100, "after the dump that missed it")
	destroy(p, fl(1, 180))
	wantSum(t, p, 180, "after the late DESTROY")
	idle(p)
	dumpOf(p)
	dumpOf(p)
	wantSum(t, p, 180, "after further dumps")
	if p.stats.lostFlows != 0 || p.stats.lateDestroys != 1 || p.flows.len() != 0 {
		t.Fatalf("lost %d, late %d, tracked %d; want 0, 1, 0", p.stats.lostFlows, p.stats.lateDestroys, p.flows.len())
	}
}

// TestEventThenDump: the DESTROY event is read before the next dump; that dump
// does not have the entry, and a dump that began before the event and still
// carries an older copy adds nothing.
func TestEventThenDump(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100))
	destroy(p, fl(1, 180))
	wantSum(t, p, 180, "after the DESTROY")
	dumpOf(p)
	dumpOf(p)
	wantSum(t, p, 180, "after the dumps")
	if p.flows.len() != 0 || p.stats.lostFlows != 0 {
		t.Fatalf("tracked %d, lost %d after the tombstone's dump", p.flows.len(), p.stats.lostFlows)
	}
}

// TestEventDuringDump: the DESTROY event arrives while a dump runs, after the
// dump passed the entry or before it reaches its (older) copy.
func TestEventDuringDump(t *testing.T) {
	t.Run("after the dump saw it", func(t *testing.T) {
		p := newTestProcessor("n1")
		dumpOf(p, fl(1, 100))
		p.BeginDump()
		f := fl(1, 150)
		p.Observe(&f)
		destroy(p, fl(1, 180))
		p.EndDump()
		dumpOf(p)
		wantSum(t, p, 180, "end")
	})
	t.Run("before the dump reaches its stale copy", func(t *testing.T) {
		p := newTestProcessor("n1")
		dumpOf(p, fl(1, 100))
		p.BeginDump()
		destroy(p, fl(1, 180))
		stale := fl(1, 150)
		p.Observe(&stale)
		p.EndDump()
		wantSum(t, p, 180, "after the dump")
		dumpOf(p)
		wantSum(t, p, 180, "end")
	})
	t.Run("the dump misses it, the event comes before its end", func(t *testing.T) {
		p := newTestProcessor("n1")
		dumpOf(p, fl(1, 100), fl(2, 10))
		p.BeginDump()
		f := fl(2, 20)
		p.Observe(&f)
		destroy(p, fl(1, 180))
		p.EndDump()
		wantSum(t, p, 200, "end")
	})
}

// TestDuplicatedEvents: the same DESTROY twice counts once, for a flow seen by
// a dump, one only the event reports, and one a dump had missed.
func TestDuplicatedEvents(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100), fl(3, 1000))
	destroy(p, fl(1, 180))
	destroy(p, fl(1, 180))
	destroy(p, fl(2, 70)) // short: never in a dump
	destroy(p, fl(2, 70))
	dumpOf(p) // misses 3: vanished
	destroy(p, fl(3, 1200))
	destroy(p, fl(3, 1200))
	wantSum(t, p, 180+70+1200, "after duplicated events")
	if p.stats.staleEvents != 3 {
		t.Fatalf("duplicates %d, want 3", p.stats.staleEvents)
	}
}

// TestENOBUFSResync: the event socket overflowed. A's DESTROY is lost, B's is
// read only after the resync dump, C lives on, D started and ended unseen (its
// event lost too: nothing can count it). A counts up to its last dump and is
// dropped as lost once the reader has been idle after a dump missed it; B
// counts to its end; nothing twice.
func TestENOBUFSResync(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100), fl(2, 100), fl(3, 100))
	// Overflow; resync dump: A and B are gone, C grew.
	dumpOf(p, fl(3, 300))
	destroy(p, fl(2, 250)) // B's event, still queued, read after the resync
	idle(p)
	if lost := dumpOf(p, fl(3, 350)); lost != 1 {
		t.Fatalf("lost %d, want A", lost)
	}
	destroy(p, fl(3, 400))
	idle(p)
	dumpOf(p)
	wantSum(t, p, 100+250+400, "end")
	if p.stats.lostFlows != 1 || p.flows.len() != 0 {
		t.Fatalf("lost %d, tracked %d; want 1, 0", p.stats.lostFlows, p.flows.len())
	}
}

// TestVanishedThenSeenAgain: a dump can miss a live entry; the next dump that
// has it counts on from its last counters.
func TestVanishedThenSeenAgain(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100))
	dumpOf(p)
	idle(p)
	dumpOf(p, fl(1, 300))
	wantSum(t, p, 300, "resumed")
	if p.stats.resumedFlows != 1 || p.stats.lostFlows != 0 {
		t.Fatalf("resumed %d, lost %d", p.stats.resumedFlows, p.stats.lostFlows)
	}
}

// TestVanishedWaitsForTheReader: a tombstone stays while the event reader has
// not been idle since the flow vanished (its event may be queued), and is
// dropped after vanishedDumps dumps even without the reader.
func TestVanishedWaitsForTheReader(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 100))
	p.EventsIdle(time.Now()) // before the flow vanished: does not count
	dumpOf(p)
	dumpOf(p)
	if p.flows.len() != 1 {
		t.Fatal("tombstone dropped before the reader was idle after the flow vanished")
	}
	destroy(p, fl(1, 130)) // queued behind a burst, read two dumps later
	wantSum(t, p, 130, "late event")
	q := newTestProcessor("n1")
	dumpOf(q, fl(1, 100))
	for range vanishedDumps + 1 {
		dumpOf(q)
	}
	if q.flows.len() != 0 || q.stats.lostFlows != 1 {
		t.Fatalf("without a reader: tracked %d, lost %d", q.flows.len(), q.stats.lostFlows)
	}
}

// TestRandomInterleavings models a kernel table and its event queue and lets a
// seeded random schedule interleave traffic, entries ending, dumps (which see
// an entry only if it still exists when they pass it), delayed and duplicated
// event delivery and idle reports. With no event lost, the processor must
// count exactly the final counters of every entry.
func TestRandomInterleavings(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := newTestProcessor("n1")
		type entry struct {
			f    conntrack.Flow
			dead bool
		}
		var table []*entry
		var queue []conntrack.Flow
		var want uint64
		nextID := uint32(1)
		deliver := func() {
			if len(queue) == 0 {
				return
			}
			f := queue[0]
			queue = queue[1:]
			p.Destroy(&f)
			if rng.IntN(10) == 0 {
				p.Destroy(&f) // duplicated
			}
			if len(queue) == 0 {
				idle(p)
			}
		}
		step := func() {
			switch rng.IntN(6) {
			case 0: // a new entry
				table = append(table, &entry{f: fl(nextID, uint64(rng.IntN(100)))})
				nextID++
			case 1, 2: // traffic
				if len(table) > 0 {
					e := table[rng.IntN(len(table))]
					if !e.dead {
						e.f.OrigBytes += uint64(rng.IntN(1000))
					}
				}
			case 3: // an entry ends: its event is queued
				if len(table) > 0 {
					e := table[rng.IntN(len(table))]
					if !e.dead {
						e.dead = true
						want += e.f.OrigBytes
						queue = append(queue, e.f)
					}
				}
			default:
				deliver()
			}
		}
		for range 60 {
			for range rng.IntN(20) {
				step()
			}
			// A dump walks the table while everything else goes on.
			p.BeginDump()
			for i := 0; i < len(table); i++ {
				if e := table[i]; !e.dead {
					f := e.f
					p.Observe(&f)
				}
				if rng.IntN(3) == 0 {
					step()
				}
			}
			p.EndDump()
			// Drop dead entries from the model's table.
			live := table[:0]
			for _, e := range table {
				if !e.dead {
					live = append(live, e)
				}
			}
			table = live
		}
		// Everything ends; every event is read; the dumps settle.
		for _, e := range table {
			want += e.f.OrigBytes
			queue = append(queue, e.f)
		}
		for len(queue) > 0 {
			deliver()
		}
		idle(p)
		dumpOf(p)
		dumpOf(p)
		if got := sumAll(p); got != want {
			t.Fatalf("seed %d: counted %d bytes, the entries' final counters sum to %d (%+v)", seed, got, want, p.stats)
		}
		if p.stats.lostFlows != 0 || p.flows.len() != 0 {
			t.Fatalf("seed %d: lost %d, tracked %d at the end", seed, p.stats.lostFlows, p.flows.len())
		}
	}
}

// TestSameKeyNewEntry: the kernel's conntrack ID is a hash of the entry's
// memory and tuple, so a new connection with the same addresses and ports in
// the old entry's memory has the old entry's key. The dump sees the new entry
// before the old one's DESTROY is read; that DESTROY counts against the old
// entry's counters, the new entry against its own. And a new entry with the
// same key that lives and ends between two dumps counts whole even though its
// predecessor's tombstone is still there.
func TestSameKeyNewEntry(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 1000))
	dumpOf(p, fl(1, 100)) // a new entry, same key; the old one ended at 1200
	destroy(p, fl(1, 1200))
	dumpOf(p, fl(1, 300))
	destroy(p, fl(1, 350))
	wantSum(t, p, 1200+350, "after both entries")
	destroy(p, fl(1, 90)) // a third one, seen only by its DESTROY
	wantSum(t, p, 1200+350+90, "after the third entry")
	destroy(p, fl(1, 90)) // duplicated
	wantSum(t, p, 1200+350+90, "after a duplicate")
}
