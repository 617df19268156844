package wggateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector reads the data path's counters at scrape time, so forwarding a packet
// costs no metric update beyond plain increments under the shard lock it holds
// anyway.
type collector struct {
	g *Gateway

	handshakes, sessions, pending, packets, bytes *prometheus.Desc
	drops, rateLimited, rateLimitedSources        *prometheus.Desc
	backends, totalSessions, upstreams            *prometheus.Desc
	cookiesSent, cookiesTaken, refused, pressure  *prometheus.Desc
	gatewayPressure                               *prometheus.Desc
	groDatagrams, gsoDatagrams, offloadFallbacks  *prometheus.Desc
	offloadActive, upstreamErrors                 *prometheus.Desc
}

// Collector returns the gateway's metrics under namespace (e.g. trellis_wg_gateway).
func (g *Gateway) Collector(namespace string) prometheus.Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &collector{
		g:                  g,
		handshakes:         d("backend_handshakes_total", "Handshake initiations forwarded to the backend.", "backend"),
		sessions:           d("backend_sessions", "Client sessions of the backend that it has answered.", "backend"),
		pending:            d("backend_pending_sessions", "Client sessions of the backend still waiting for its first answer.", "backend"),
		packets:            d("backend_packets_total", "Packets relayed, by direction (to_backend, to_client).", "backend", "direction"),
		bytes:              d("backend_bytes_total", "UDP payload bytes relayed, by direction (to_backend, to_client).", "backend", "direction"),
		drops:              d("dropped_packets_total", "Packets not relayed, by reason.", "reason"),
		rateLimited:        d("rate_limited_initiations_total", "Handshake initiations refused by the per-source-IP rate limit."),
		rateLimitedSources: d("rate_limited_sources", "Source IPs currently out of handshake tokens."),
		backends:           d("backends", "Backends in the routing table."),
		totalSessions:      d("sessions", "Client sessions over all backends (answered and pending)."),
		upstreams:          d("upstream_sockets", "Sockets open towards backends."),
		cookiesSent:        d("backend_cookie_replies_sent_total", "Cookie replies the gateway sent on the backend's behalf instead of forwarding an initiation (handshake pressure).", "backend"),
		cookiesTaken:       d("backend_cookie_replies_taken_total", "Cookie replies of the backend (under load) the gateway used to set the mac2 of the session's next initiations.", "backend"),
		refused:            d("backend_refused_clients_total", "Initiations of new clients refused because every upstream slot of the backend in the shard holds a client that cannot be evicted (see --sessions.max-clients-per-backend).", "backend"),
		pressure:           d("backend_under_pressure", "1 while initiations for the backend need a valid gateway mac2.", "backend"),
		gatewayPressure:    d("under_pressure", "1 while initiations for every backend need a valid gateway mac2 (rate limiter or session table full)."),
		groDatagrams:       d("udp_coalesced_received_datagrams_total", "Datagrams that arrived in buffers the kernel coalesced (UDP GRO), from clients and backends."),
		gsoDatagrams:       d("udp_gso_sent_datagrams_total", "Datagrams sent in segmented messages (UDP GSO, one system call per run), to clients and backends."),
		offloadFallbacks:   d("udp_offload_fallbacks_total", "Fallbacks from UDP offload: gro_unsupported and gso_unsupported (the kernel refused the option; counted once), gso_disabled (a socket turned GSO off after a send failed with EIO), gso_resent (segmented messages sent again one datagram at a time).", "reason"),
		offloadActive:      d("udp_offload_active", "1 while UDP offload is in use in the direction: receive (UDP_GRO) or send (UDP_SEGMENT).", "direction"),
		upstreamErrors:     d("upstream_socket_errors_total", "Upstream sockets that could not be opened (the initiation that needed one is dropped as upstream_error)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.handshakes, c.sessions, c.pending, c.packets, c.bytes, c.drops, c.rateLimited, c.rateLimitedSources, c.backends, c.totalSessions, c.upstreams, c.cookiesSent, c.cookiesTaken, c.refused, c.pressure, c.gatewayPressure, c.groDatagrams, c.gsoDatagrams, c.offloadFallbacks, c.offloadActive, c.upstreamErrors} {
		ch <- d
	}
}

type backendTotals struct {
	sessions, pending int
	counts            [2]struct{ packets, bytes uint64 }
}

var directionNames = [2]string{toBackend: "to_backend", toClient: "to_client"}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	t := c.g.table.Load()
	now := time.Now().UnixNano()
	totals := make(map[*backendState]*backendTotals, len(t.backends))
	for _, b := range t.backends {
		totals[b] = &backendTotals{}
	}
	var drops [numDropReasons]uint64
	sessions, upstreams := 0, 0
	var shards []*shard
	if p := c.g.shards.Load(); p != nil {
		shards = *p
	}
	for _, sh := range shards {
		sh.mu.Lock()
		for i, n := range sh.drops {
			drops[i] += n
		}
		sessions += sh.nSessions
		upstreams += len(sh.ups)
		// Ended sessions' totals and live sessions are read under the same lock
		// that moves a session from one to the other: counters never dip.
		for b, bs := range sh.perBack {
			if bt := totals[b]; bt != nil {
				for dir := range bt.counts {
					bt.counts[dir].packets += bs.retired[dir].packets
					bt.counts[dir].bytes += bs.retired[dir].bytes
				}
			}
		}
		for _, ss := range sh.byPair {
			bt := totals[ss.backend]
			if bt == nil {
				continue // removed backend, session ends at the next sweep
			}
			if ss.state != pending {
				bt.sessions++
			} else {
				bt.pending++
			}
			for dir := range bt.counts {
				bt.counts[dir].packets += ss.counts[dir].packets
				bt.counts[dir].bytes += ss.counts[dir].bytes
			}
		}
		sh.mu.Unlock()
	}
	for _, b := range t.backends {
		bt := totals[b]
		ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(b.handshakes.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(bt.sessions), b.Name)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(bt.pending), b.Name)
		ch <- prometheus.MustNewConstMetric(c.cookiesSent, prometheus.CounterValue, float64(b.cookiesSent.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(c.cookiesTaken, prometheus.CounterValue, float64(b.cookiesTaken.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(b.refused.Load()), b.Name)
		ch <- prometheus.MustNewConstMetric(c.pressure, prometheus.GaugeValue, boolGauge(c.g.press.requires(b, now)), b.Name)
		for dir, name := range directionNames {
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(bt.counts[dir].packets), b.Name, name)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(bt.counts[dir].bytes), b.Name, name)
		}
	}
	for r := dropReason(1); r < numDropReasons; r++ {
		if !r.isDrop() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(drops[r]), dropReasonNames[r])
	}
	limited, limitedSources := c.g.limiter.stats(now)
	ch <- prometheus.MustNewConstMetric(c.gatewayPressure, prometheus.GaugeValue, boolGauge(c.g.press.always || c.g.press.global.Load() > now))
	ch <- prometheus.MustNewConstMetric(c.rateLimited, prometheus.CounterValue, float64(limited))
	ch <- prometheus.MustNewConstMetric(c.rateLimitedSources, prometheus.GaugeValue, float64(limitedSources))
	ch <- prometheus.MustNewConstMetric(c.backends, prometheus.GaugeValue, float64(len(t.backends)))
	ch <- prometheus.MustNewConstMetric(c.totalSessions, prometheus.GaugeValue, float64(sessions))
	ch <- prometheus.MustNewConstMetric(c.upstreams, prometheus.GaugeValue, float64(upstreams))
	ch <- prometheus.MustNewConstMetric(c.upstreamErrors, prometheus.CounterValue, float64(c.g.upstreamErrors.Load()))
	off := &c.g.off
	st := off.stats()
	ch <- prometheus.MustNewConstMetric(c.groDatagrams, prometheus.CounterValue, float64(st.groDatagrams))
	ch <- prometheus.MustNewConstMetric(c.gsoDatagrams, prometheus.CounterValue, float64(st.gsoDatagrams))
	for _, f := range []struct {
		reason string
		n      uint64
	}{
		{"gro_unsupported", off.groUnsupported.Load()},
		{"gso_unsupported", off.gsoUnsupported.Load()},
		{"gso_disabled", off.gsoDisabled.Load()},
		{"gso_resent", st.gsoResent},
	} {
		ch <- prometheus.MustNewConstMetric(c.offloadFallbacks, prometheus.CounterValue, float64(f.n), f.reason)
	}
	gro, gso := off.active()
	ch <- prometheus.MustNewConstMetric(c.offloadActive, prometheus.GaugeValue, boolGauge(gro), "receive")
	ch <- prometheus.MustNewConstMetric(c.offloadActive, prometheus.GaugeValue, boolGauge(gso), "send")
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
