package egressreporter

import (
	"net/netip"
	"testing"
	"time"
)

// The hysteresis on a controllable clock: every step says what is observed at
// which minute and what must be published afterwards.
func TestTrackerHysteresis(t *testing.T) {
	a, b, infra := netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("203.0.113.2/32"), netip.MustParsePrefix("198.51.100.0/24")
	tr := NewTracker(2*time.Minute, 10*time.Minute)
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	type obs struct {
		p        netip.Prefix
		declared bool
	}
	steps := []struct {
		min         float64
		seen        []obs
		want        string
		wantPending int
	}{
		{0, []obs{{a, false}, {infra, true}}, "198.51.100.0/24", 1},                  // declared at once, probed waits
		{1, []obs{{a, false}, {infra, true}}, "198.51.100.0/24", 1},                  // 1 min < add
		{2, []obs{{a, false}, {infra, true}}, "198.51.100.0/24,203.0.113.1/32", 0},   // seen for add
		{3, []obs{{infra, true}, {b, false}}, "198.51.100.0/24,203.0.113.1/32", 1},   // a missing: kept; b new
		{4, []obs{{infra, true}}, "198.51.100.0/24,203.0.113.1/32", 1},               // b missing 1 min: still pending
		{5, []obs{{infra, true}}, "198.51.100.0/24,203.0.113.1/32", 0},               // b missing for add: forgotten
		{5.5, []obs{{infra, true}, {b, false}}, "198.51.100.0/24,203.0.113.1/32", 1}, // b again: starts over
		{11.9, []obs{{infra, true}}, "198.51.100.0/24,203.0.113.1/32", 0},            // a (last seen at minute 2) missing 9.9 min
		{12, []obs{{infra, true}}, "198.51.100.0/24", 0},                             // a missing 10 min: removed
		{14, nil, "198.51.100.0/24", 0},                                              // infra gone: waits too
		{21.9, nil, "198.51.100.0/24", 0},                                            // infra last seen at minute 12
		{22, nil, "", 0},
	}
	for _, s := range steps {
		o := Observation{}
		for _, x := range s.seen {
			o.Add(x.p, x.declared)
		}
		got, pending := tr.Update(t0.Add(time.Duration(s.min*float64(time.Minute))), o)
		if FormatCIDRs(got) != s.want || pending != s.wantPending {
			t.Fatalf("minute %v: published %q pending %d, want %q pending %d", s.min, FormatCIDRs(got), pending, s.want, s.wantPending)
		}
	}
}

// A probe that alternates between the addresses of a NAT gateway with two IPs
// (one per round) gets both published; a single stray answer never is.
func TestTrackerFlappingProbe(t *testing.T) {
	a, b, stray := netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("203.0.113.2/32"), netip.MustParsePrefix("192.0.2.66/32")
	tr := NewTracker(2*time.Minute, 30*time.Minute)
	t0 := time.Unix(0, 0)
	var got []netip.Prefix
	for i := 0; i < 10; i++ {
		o := Observation{}
		if i%2 == 0 {
			o.Add(a, false)
		} else {
			o.Add(b, false)
		}
		if i == 4 {
			o.Add(stray, false)
		}
		got, _ = tr.Update(t0.Add(time.Duration(i)*time.Minute), o)
	}
	if FormatCIDRs(got) != "203.0.113.1/32,203.0.113.2/32" {
		t.Fatalf("published %q", FormatCIDRs(got))
	}
}

func TestTrackerAdoptAndZeroDelays(t *testing.T) {
	p := netip.MustParsePrefix("203.0.113.1/32")
	tr := NewTracker(0, 0)
	now := time.Unix(100, 0)
	tr.Adopt(now, []netip.Prefix{p})
	if got, _ := tr.Update(now, Observation{}); len(got) != 0 {
		t.Fatalf("remove=0 kept %v", got)
	}
	if got, _ := tr.Update(now, Observation{p: false}); len(got) != 1 {
		t.Fatalf("add=0 did not publish at once: %v", got)
	}
	tr = NewTracker(time.Minute, time.Hour)
	tr.Adopt(now, []netip.Prefix{p})
	if got, _ := tr.Update(now.Add(59*time.Minute), Observation{}); len(got) != 1 {
		t.Fatalf("adopted prefix dropped before remove: %v", got)
	}
}
