package promotlp

import (
	"hash/fnv"
	"math"
)

// SeriesStart is what a restart needs to keep a cumulative series' start
// time: the series' stable identity (its family name and attributes, hashed
// the same way in every process), its start time and its last cumulative
// value (counter value, histogram or summary count).
type SeriesStart struct {
	ID      uint64
	StartNs uint64
	Last    float64
}

// Starts appends the start state of every cumulative series (sums,
// histograms, summaries) that has one to dst.
func (c *Converter) Starts(dst []SeriesStart) []SeriesStart {
	for _, head := range c.series {
		for st := head; st != nil; st = st.next {
			if st.kind == kindGauge || !st.started || !st.hasLast {
				continue
			}
			dst = append(dst, SeriesStart{ID: st.stableID(), StartNs: st.startNs, Last: st.last})
		}
	}
	return dst
}

// Restore gives the converter the start state saved by an earlier process.
// At its first observation a series found there keeps the saved start time
// if its cumulative value did not go down (the counter kept rising while
// nothing scraped it); otherwise it starts anew, as any new series. The
// state is dropped after the first complete scrape.
func (c *Converter) Restore(starts []SeriesStart) {
	if len(starts) == 0 {
		return
	}
	c.restored = make(map[uint64]SeriesStart, len(starts))
	for _, s := range starts {
		c.restored[s.ID] = s
	}
}

// restoredStart applies the restored state to a series seen for the first
// time whose cumulative value is cur at time t.
func (c *Converter) restoredStart(st *series, cur float64, t uint64) {
	r, ok := c.restored[st.stableID()]
	if !ok {
		return
	}
	delete(c.restored, r.ID)
	if math.IsNaN(cur) || cur < r.Last || r.StartNs > t || r.StartNs == 0 {
		c.stats.RestoreResets++
		return
	}
	st.startNs, st.started = r.StartNs, true
	c.stats.Restored++
}

// stableID hashes the series' family name and encoded attributes (FNV-1a):
// the same in every process, unlike the identity hash of the series map.
func (st *series) stableID() uint64 {
	h := fnv.New64a()
	h.Write([]byte(st.fam.key))
	h.Write([]byte{0xff}) // never part of a UTF-8 name
	h.Write(unsafeBytes(st.enc))
	return h.Sum64()
}
