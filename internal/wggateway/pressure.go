package wggateway

import (
	"crypto/rand"
	"net/netip"
	"sync/atomic"

	"github.com/trellis-garden/trellis/internal/wgproto"
)

// Handshake pressure and the gateway's cookies.
//
// A backend is under pressure while initiations for it pile up: a shard found as
// many unanswered sessions of it as pressurePending, or had to evict one of them to
// make room. The whole gateway is under pressure while a rate-limiter part is full
// or a shard's session table is three quarters full. Pressure lasts pressureHold
// after its last sign (WireGuard's responder keeps its under-load mode for 1 s; the
// gateway holds it longer than a client's 5 s handshake retry so that a flood that
// pauses does not make the mode flap).
//
// Under pressure an initiation for that backend needs a valid mac2 made with a
// cookie of the gateway; without one the gateway answers with its own cookie reply
// (encrypted with the key derived from the backend's public key, bound to the
// initiation's mac1, exactly as the backend would) and forwards nothing. Only a
// client that receives packets at its source address learns the cookie, so
// spoofed sources create no session, no rate-limiter entry and no backend work.

// pressureHold is how long pressure lasts after its last sign.
const pressureHold = int64(10e9)

// cookieSecretLifetime is how often the cookie secret is replaced (WireGuard's
// CookieRefreshTime). The previous secret stays valid for one more lifetime, so a
// cookie a client got just before a rotation still works.
const cookieSecretLifetime = int64(120e9)

// backendCookieLifetime is how long a cookie the backend handed out is used; the
// backend's own secret lives 120 s, a few seconds less leaves margin for clocks
// and queues.
const backendCookieLifetime = int64(110e9)

// CookieMode says when the gateway demands its mac2.
type CookieMode string

const (
	// CookiesAuto demands mac2 under handshake pressure only.
	CookiesAuto CookieMode = "auto"
	// CookiesAlways demands mac2 of every initiation (one extra round trip, about
	// 5 s, for every client whose cookie is older than 2 minutes).
	CookiesAlways CookieMode = "always"
)

type pressure struct {
	always  bool
	hold    int64
	pending int          // unanswered sessions of a backend per shard that start its pressure
	global  atomic.Int64 // unix nanos until which the whole gateway is under pressure
	any     atomic.Int64 // unix nanos until which some backend is
}

func newPressure(mode CookieMode, pending int) *pressure {
	return &pressure{always: mode == CookiesAlways, hold: pressureHold, pending: max(1, pending)}
}

func raise(v *atomic.Int64, until int64) {
	for {
		old := v.Load()
		if old >= until || v.CompareAndSwap(old, until) {
			return
		}
	}
}

// onBackend records a sign of pressure on b.
func (p *pressure) onBackend(b *backendState, now int64) {
	raise(&b.pressureUntil, now+p.hold)
	raise(&p.any, now+p.hold)
}

// onGateway records a sign of pressure on the whole gateway.
func (p *pressure) onGateway(now int64) {
	raise(&p.global, now+p.hold)
	raise(&p.any, now+p.hold)
}

// active reports whether any initiation may need a mac2 check now.
func (p *pressure) active(now int64) bool {
	return p.always || p.any.Load() > now
}

// requires reports whether an initiation for b needs a valid gateway mac2 now.
func (p *pressure) requires(b *backendState, now int64) bool {
	return p.always || p.global.Load() > now || b.pressureUntil.Load() > now
}

// cookieSecrets are the current and the previous cookie secret.
type cookieSecrets struct {
	cur, prev wgproto.CookieSecret
	born      int64
}

// cookieJar issues and checks the gateway's cookies. Readers load the secrets
// without a lock; the janitor rotates them.
type cookieJar struct {
	secrets atomic.Pointer[cookieSecrets]
}

func newCookieJar(now int64) *cookieJar {
	j := &cookieJar{}
	s := &cookieSecrets{cur: newSecret(), prev: newSecret(), born: now}
	j.secrets.Store(s)
	return j
}

func newSecret() wgproto.CookieSecret {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux >= 3.17
	}
	return wgproto.NewCookieSecret(b)
}

// rotate replaces the secret once it is cookieSecretLifetime old.
func (j *cookieJar) rotate(now int64) {
	old := j.secrets.Load()
	if now-old.born < cookieSecretLifetime {
		return
	}
	j.secrets.Store(&cookieSecrets{cur: newSecret(), prev: old.cur, born: now})
}

// cookie returns the current cookie of src.
func (j *cookieJar) cookie(src netip.AddrPort) [wgproto.CookieSize]byte {
	s := j.secrets.Load()
	return s.cur.Cookie(src)
}

// check reports whether initiation msg from src carries the mac2 of a cookie the
// gateway issued to src with the current or the previous secret.
func (j *cookieJar) check(msg []byte, src netip.AddrPort) bool {
	s := j.secrets.Load()
	c := s.cur.Cookie(src)
	if wgproto.CheckMAC2(msg, &c) {
		return true
	}
	c = s.prev.Cookie(src)
	return wgproto.CheckMAC2(msg, &c)
}
