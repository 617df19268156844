package wggateway

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
)

// limiterShards splits the rate limiter so that no lock is shared by every
// listener shard: a source's bucket lives in the part its key hashes to.
const limiterShards = 64

// rateLimiter is a token bucket per source for handshake initiations. Backends see
// only the gateway's address, so their own per-IP limits cannot tell clients apart;
// the gateway limits per real source instead. A source is an IPv4 address or an
// IPv6 /64 (as the kernel's WireGuard buckets them: one host usually owns a whole
// /64, so per-address buckets would let it pick a new source per packet).
//
// Memory is bounded: each of the limiterShards parts tracks at most
// maxEntries/limiterShards sources. A new source that finds its part full is
// refused (fail closed under a flood of spoofed sources) without any scan; the
// janitor forgets sources whose bucket has refilled once a second, so a refusal
// lasts at most burst/rate + 1 s after the flood's last initiation. While any part
// is full the gateway is under handshake pressure (see pressure.go): initiations
// then need a valid gateway mac2 before they reach the limiter, so spoofed sources
// cannot fill it again.
type rateLimiter struct {
	rate     float64 // tokens per second
	burst    float64
	perShard int
	seed     maphash.Seed
	parts    [limiterShards]limiterPart
	limited  atomic.Uint64 // initiations refused so far
	fullAt   atomic.Int64  // unix nanos when a part was last found full
}

type limiterPart struct {
	mu      sync.Mutex
	buckets map[sourceKey]bucket
	_       [40]byte // keep parts' locks on separate cache lines
}

// sourceKey is an IPv4 address (in its IPv4-mapped form) or an IPv6 /64 prefix.
type sourceKey [16]byte

func sourceOf(a netip.Addr) sourceKey {
	a = a.Unmap()
	if a.Is4() {
		return sourceKey(netip.AddrFrom16(a.As16()).As16())
	}
	k := sourceKey(a.As16())
	clear(k[8:])
	return k
}

type bucket struct {
	tokens float64
	last   int64 // unix nanos of the last refill
}

func newRateLimiter(rate float64, burst, maxEntries int) *rateLimiter {
	r := &rateLimiter{rate: rate, burst: float64(burst), perShard: max(1, maxEntries/limiterShards), seed: maphash.MakeSeed()}
	for i := range r.parts {
		r.parts[i].buckets = map[sourceKey]bucket{}
	}
	return r
}

func (r *rateLimiter) part(k *sourceKey) *limiterPart {
	return &r.parts[maphash.Bytes(r.seed, k[:])%limiterShards]
}

// allow takes one token for the source of ip at time now (unix nanos).
func (r *rateLimiter) allow(ip netip.Addr, now int64) bool {
	if r.rate <= 0 {
		return true
	}
	k := sourceOf(ip)
	p := r.part(&k)
	p.mu.Lock()
	b, ok := p.buckets[k]
	if !ok {
		if len(p.buckets) >= r.perShard {
			p.mu.Unlock()
			r.fullAt.Store(now)
			r.limited.Add(1)
			return false
		}
		b = bucket{tokens: r.burst, last: now}
	}
	b.tokens = min(r.burst, b.tokens+float64(now-b.last)/1e9*r.rate)
	b.last = now
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	}
	p.buckets[k] = b
	p.mu.Unlock()
	if !allowed {
		r.limited.Add(1)
	}
	return allowed
}

// full reports whether a part was found full within the last window nanos.
func (r *rateLimiter) full(now, window int64) bool {
	t := r.fullAt.Load()
	return t != 0 && now-t < window
}

// stats returns the number of refused initiations and of sources currently out of
// tokens.
func (r *rateLimiter) stats(now int64) (limited uint64, limitedSources int) {
	for i := range r.parts {
		p := &r.parts[i]
		p.mu.Lock()
		for _, b := range p.buckets {
			if b.tokens+float64(now-b.last)/1e9*r.rate < 1 {
				limitedSources++
			}
		}
		p.mu.Unlock()
	}
	return r.limited.Load(), limitedSources
}

// sweep forgets sources whose bucket is full again; called once a second. Each
// part's lock is held for that part only.
func (r *rateLimiter) sweep(now int64) {
	for i := range r.parts {
		p := &r.parts[i]
		p.mu.Lock()
		for k, b := range p.buckets {
			if b.tokens+float64(now-b.last)/1e9*r.rate >= r.burst {
				delete(p.buckets, k)
			}
		}
		p.mu.Unlock()
	}
}

// sources returns the number of tracked sources (tests).
func (r *rateLimiter) sources() int {
	n := 0
	for i := range r.parts {
		p := &r.parts[i]
		p.mu.Lock()
		n += len(p.buckets)
		p.mu.Unlock()
	}
	return n
}
