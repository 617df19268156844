package wggateway

import (
	"net/netip"
	"sync"
)

// rateLimiter is a token bucket per source IP for handshake initiations. Backends
// see only the gateway's address, so their own per-IP limits cannot tell clients
// apart; the gateway limits per real source instead. Memory is bounded: at most
// maxEntries sources are tracked; when full, sources whose bucket has refilled are
// dropped (they hold no state worth keeping), and if none has, new sources are
// limited until one has (fail closed under a flood of spoofed sources).
type rateLimiter struct {
	mu         sync.Mutex
	rate       float64 // tokens per second
	burst      float64
	maxEntries int
	buckets    map[netip.Addr]*bucket
	limited    uint64 // initiations refused so far
}

type bucket struct {
	tokens float64
	last   int64 // unix nanos of the last refill
}

func newRateLimiter(rate float64, burst, maxEntries int) *rateLimiter {
	return &rateLimiter{rate: rate, burst: float64(burst), maxEntries: maxEntries, buckets: map[netip.Addr]*bucket{}}
}

// allow takes one token for ip at time now (unix nanos).
func (r *rateLimiter) allow(ip netip.Addr, now int64) bool {
	if r.rate <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.buckets[ip]
	if b == nil {
		if len(r.buckets) >= r.maxEntries {
			r.gcLocked(now)
			if len(r.buckets) >= r.maxEntries {
				r.limited++
				return false
			}
		}
		b = &bucket{tokens: r.burst, last: now}
		r.buckets[ip] = b
	}
	b.tokens += float64(now-b.last) / 1e9 * r.rate
	if b.tokens > r.burst {
		b.tokens = r.burst
	}
	b.last = now
	if b.tokens < 1 {
		r.limited++
		return false
	}
	b.tokens--
	return true
}

// gcLocked forgets sources whose bucket is full again.
func (r *rateLimiter) gcLocked(now int64) {
	for ip, b := range r.buckets {
		if b.tokens+float64(now-b.last)/1e9*r.rate >= r.burst {
			delete(r.buckets, ip)
		}
	}
}

// stats returns the number of refused initiations and of sources currently out of
// tokens.
func (r *rateLimiter) stats(now int64) (limited uint64, limitedSources int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.buckets {
		if b.tokens+float64(now-b.last)/1e9*r.rate < 1 {
			limitedSources++
		}
	}
	return r.limited, limitedSources
}

// sweep forgets idle sources; called periodically.
func (r *rateLimiter) sweep(now int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gcLocked(now)
}
