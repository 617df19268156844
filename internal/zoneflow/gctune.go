package zoneflow

import (
	"os"
	"runtime/debug"
	rtmetrics "runtime/metrics"
)

// gcTuner sets the GC's growth allowance (GOGC) so that the pointer-free flow
// table does not count towards it. On a busy node the table is most of the
// heap (a million flows: 56 MB), it is never garbage while its flows live,
// and the GC scans none of it; with the default GOGC=100 the heap would still
// grow to twice the table before a collection, for the few megabytes of
// garbage the rest of the daemon makes between two (scrapes, informer
// updates). The tuner keeps the heap goal at the table plus 100 % of the rest
// of the live heap, i.e. GOGC=100 for everything but the table: a million
// flows cost their table plus some tens of megabytes, not twice the table.
// Collections stay cheap (there is little to mark) and rare (the dump path
// allocates nothing per entry). A GOGC set in the environment wins: the tuner
// then does nothing.
type gcTuner struct {
	percent  int
	disabled bool
	sample   []rtmetrics.Sample
}

const (
	// minGCPercent bounds the tuned GOGC from below, so that a table that is
	// nearly the whole heap still leaves a GC cycle room to run.
	minGCPercent = 10
	// gcRestFloor is the least "rest of the heap" assumed: right after the
	// table grew, the last GC's live heap may not hold it all yet.
	gcRestFloor = 4 << 20
)

func newGCTuner() *gcTuner {
	_, set := os.LookupEnv("GOGC")
	return &gcTuner{percent: 100, disabled: set, sample: []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

// tune adjusts GOGC to a flow table of table bytes; called after each dump.
func (g *gcTuner) tune(table uint64) {
	if g.disabled {
		return
	}
	rtmetrics.Read(g.sample)
	if g.sample[0].Value.Kind() != rtmetrics.KindUint64 {
		return
	}
	p := gcPercentFor(g.sample[0].Value.Uint64(), table)
	if p != g.percent {
		debug.SetGCPercent(p)
		g.percent = p
	}
}

// gcPercentFor is the GOGC that puts the heap goal at table + 2 x rest, where
// rest is the live heap besides the table, in steps of 5 % (so that it does
// not change after every dump).
func gcPercentFor(live, table uint64) int {
	rest := uint64(gcRestFloor)
	if live > table+rest {
		rest = live - table
	}
	p := int(100*rest/(table+rest)) / 5 * 5
	return max(minGCPercent, min(100, p))
}
