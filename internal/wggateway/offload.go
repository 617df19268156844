package wggateway

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/trellis-garden/trellis/internal/udpbatch"
)

// offload turns UDP GRO and GSO on for the gateway's sockets and keeps what the
// kernel said: a refusal is detected on the first socket, logged once and
// counted, and later sockets do not ask again.
type offload struct {
	want bool // --gateway.udp-offload
	log  *slog.Logger

	groRefused, gsoRefused atomic.Bool
	groLog, gsoLog, eioLog sync.Once
	// fallbacks by reason: the kernel refused GRO, refused GSO, or turned a
	// socket's GSO off after a send failed with EIO.
	groUnsupported, gsoUnsupported, gsoDisabled atomic.Uint64

	mu    sync.Mutex
	conns []offloadConn // every wrapper of the gateway, for metrics
}

type offloadConn struct {
	c        *udpbatch.Conn
	gso      bool // GSO was turned on
	disabled bool // and seen off since (EIO)
}

// enable turns on the offloads asked for on c, unless offload is off or the
// kernel refused them before, and registers c for the metrics.
func (o *offload) enable(c *udpbatch.Conn, gro, gso bool) {
	gro = gro && o.want && !o.groRefused.Load()
	gso = gso && o.want && !o.gsoRefused.Load()
	var on udpbatch.Offload
	if gro || gso {
		var err error
		on, err = c.EnableOffload(gro, gso)
		if gro && !on.GRO && o.groRefused.CompareAndSwap(false, true) {
			o.groUnsupported.Add(1)
			o.groLog.Do(func() {
				o.log.Warn("udp receive offload (UDP_GRO) unavailable; reading one datagram at a time", "err", offloadErr(err))
			})
		}
		if gso && !on.GSO && o.gsoRefused.CompareAndSwap(false, true) {
			o.gsoUnsupported.Add(1)
			o.gsoLog.Do(func() {
				o.log.Warn("udp segmentation offload (UDP_SEGMENT) unavailable; sending one datagram at a time", "err", offloadErr(err))
			})
		}
	}
	o.mu.Lock()
	o.conns = append(o.conns, offloadConn{c: c, gso: on.GSO})
	o.mu.Unlock()
}

func offloadErr(err error) error {
	if err == nil {
		return errors.New("not supported")
	}
	return err
}

// check notices sockets whose GSO the kernel turned off (a send failed with
// EIO: the route's device cannot checksum segments); the first is logged, and
// later sockets no longer ask for GSO.
func (o *offload) check() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i := range o.conns {
		oc := &o.conns[i]
		if oc.gso && !oc.disabled && !oc.c.Offload().GSO {
			oc.disabled = true
			o.gsoDisabled.Add(1)
			o.gsoRefused.Store(true)
			o.eioLog.Do(func() {
				o.log.Warn("udp segmentation offload turned off after a send failed with EIO (no checksum offload on the route's device); the batch was resent one datagram at a time")
			})
		}
	}
}

// offloadStats are the sums over the gateway's sockets.
type offloadStats struct {
	groDatagrams, gsoDatagrams, gsoResent uint64
}

func (o *offload) stats() offloadStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	var s offloadStats
	for _, oc := range o.conns {
		st := oc.c.Stats()
		s.groDatagrams += st.GRODatagrams
		s.gsoDatagrams += st.GSODatagrams
		s.gsoResent += st.GSOResent
	}
	return s
}

// active reports whether receive and send offload are in use.
func (o *offload) active() (gro, gso bool) {
	return o.want && !o.groRefused.Load(), o.want && !o.gsoRefused.Load()
}
