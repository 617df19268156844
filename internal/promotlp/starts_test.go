package promotlp

import (
	"testing"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// TestRestoreStarts: a converter given the saved start state of an earlier
// one keeps the start time of a counter and a histogram that did not go
// down, gives a counter that went down a new one, ignores series it does not
// know, and drops the state after the first complete scrape.
func TestRestoreStarts(t *testing.T) {
	scrape := func(c *Converter, i int, rising, resetting, hcount float64) map[string]uint64 {
		c.Begin(at(i))
		c.Add(smp("rising_total", promtext.TypeCounter, promtext.SuffixNone, rising), nil)
		c.Add(smp("resetting_total", promtext.TypeCounter, promtext.SuffixNone, resetting), nil)
		c.Add(smp("h", promtext.TypeHistogram, promtext.SuffixBucket, hcount, "le", "+Inf"), nil)
		c.Add(smp("h", promtext.TypeHistogram, promtext.SuffixCount, hcount), nil)
		c.Add(smp("g", promtext.TypeGauge, promtext.SuffixNone, 1), nil)
		ms, _ := c.Finish()
		out := map[string]uint64{}
		for _, m := range ms {
			for _, dp := range m.GetSum().GetDataPoints() {
				out[m.Name] = dp.StartTimeUnixNano
			}
			for _, dp := range m.GetHistogram().GetDataPoints() {
				out[m.Name] = dp.StartTimeUnixNano
			}
		}
		return out
	}
	a := New(Options{})
	scrape(a, 0, 10, 100, 5)
	first := scrape(a, 1, 11, 101, 6)
	saved := a.Starts(nil)
	if len(saved) != 3 {
		t.Fatalf("%d saved series, want 3 (no gauge)", len(saved))
	}

	b := New(Options{})
	b.Restore(saved)
	got := scrape(b, 5, 20, 3, 9)
	if got["rising_total"] != first["rising_total"] || got["h"] != first["h"] {
		t.Errorf("kept: start times %v, want those of before the restart %v", got, first)
	}
	if got["resetting_total"] != ns(5) {
		t.Errorf("reset while down: start time %d, want the first observation %d", got["resetting_total"], ns(5))
	}
	if b.stats.Restored != 2 || b.stats.RestoreResets != 1 {
		t.Errorf("stats: restored %d, resets %d; want 2, 1", b.stats.Restored, b.stats.RestoreResets)
	}
	if b.restored != nil {
		t.Error("restored state kept after a complete scrape")
	}
}
