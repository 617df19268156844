package egressreporter

import (
	"net/netip"
	"time"
)

// Tracker decides which observed prefixes are published, with hysteresis: a
// prefix only some sources declare (infrastructure, static) is published at
// once; an observed one (probe) after it has been seen for Add, where gaps
// shorter than Add do not reset it (a probe alternating between the addresses of
// a NAT gateway with several IPs still gets all of them published). A published
// prefix is removed only after it has been missing for Remove. The caller passes
// the time, so tests control the clock.
type Tracker struct {
	Add, Remove time.Duration
	entries     map[netip.Prefix]*trackEntry
}

type trackEntry struct {
	firstSeen, lastSeen time.Time
	published           bool
}

// Observation is what the sources report at one moment: each prefix and
// whether a declaring source (not a probe) named it.
type Observation map[netip.Prefix]bool

// Add records p; declared wins over observed.
func (o Observation) Add(p netip.Prefix, declared bool) { o[p] = o[p] || declared }

// NewTracker returns an empty tracker.
func NewTracker(add, remove time.Duration) *Tracker {
	return &Tracker{Add: add, Remove: remove, entries: map[netip.Prefix]*trackEntry{}}
}

// Adopt marks prefixes as published and seen now, e.g. those found in shoot-info
// at start, so a restart neither delays nor drops them.
func (t *Tracker) Adopt(now time.Time, ps []netip.Prefix) {
	for _, p := range ps {
		t.entries[p] = &trackEntry{firstSeen: now, lastSeen: now, published: true}
	}
}

// Update records the observation made at now and returns the published prefixes,
// sorted, and how many prefixes wait to be published.
func (t *Tracker) Update(now time.Time, obs Observation) (published []netip.Prefix, pending int) {
	for p, declared := range obs {
		e := t.entries[p]
		if e == nil {
			e = &trackEntry{firstSeen: now}
			t.entries[p] = e
		}
		e.lastSeen = now
		if declared || now.Sub(e.firstSeen) >= t.Add {
			e.published = true
		}
	}
	for p, e := range t.entries {
		if _, seen := obs[p]; seen {
			continue
		}
		missing := now.Sub(e.lastSeen)
		if (e.published && missing >= t.Remove) || (!e.published && missing >= t.Add) {
			delete(t.entries, p)
		}
	}
	for p, e := range t.entries {
		if e.published {
			published = append(published, p)
		} else {
			pending++
		}
	}
	return SortPrefixes(published), pending
}
