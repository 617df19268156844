package wggateway

import (
	"io"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
)

// TestCountersNeverDecreaseDuringSweep scrapes the collector while sessions carry
// traffic and the sweep retires them, over and over: no *_total series may ever
// show less than the scrape before it, and nothing may be lost at the end.
func TestCountersNeverDecreaseDuringSweep(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ListenAddress = "127.0.0.1:0"
	cfg.Shards = 1
	gw, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ep := ap("10.0.0.1:51820")
	gw.SetBackends([]Backend{{Name: "b0", PublicKey: key(0), Endpoint: ep}})
	tb := gw.table.Load()
	sh := newShard(shardConfig{maxSessions: 1000, maxUpstreams: 64, pendingTimeout: 10, idleTimeout: 5, press: newPressure(CookiesAuto, 1<<30)})
	gw.shards.Store(&[]*shard{sh})
	reg := newTestRegistry(gw)

	const rounds, clients = 300, 8
	inits := make([][]byte, clients)
	for c := range inits {
		inits[c] = initiation(key(0), uint32(c+1))
	}
	done := make(chan struct{})
	var scrapes atomic.Int64
	go func() {
		defer close(done)
		for round := 0; round < rounds; round++ {
			// Let a scrape start before each round, so that scrapes and
			// sweeps overlap all along.
			for s := scrapes.Load(); scrapes.Load() == s; {
				runtime.Gosched()
			}
			now := int64(round * 10)
			sh.mu.Lock()
			for c := 0; c < clients; c++ {
				src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(c)}), uint16(1000+round))
				up, _, r := sh.fromClient(src, inits[c], tb.route(inits[c], nil), true, now)
				if r != forwarded {
					continue
				}
				sh.fromBackend(up, ep, response(uint32(100+c), uint32(c+1)), now)
				sh.fromClient(src, transport(uint32(100+c), 10), nil, false, now)
			}
			sh.mu.Unlock()
			// The janitor's sweep: the previous round's sessions are idle.
			sh.mu.Lock()
			sh.sweep(now)
			sh.mu.Unlock()
		}
	}()
	prev := map[string]float64{}
	scrape := func() {
		scrapes.Add(1)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if !strings.HasSuffix(mf.GetName(), "_total") {
				continue
			}
			for _, m := range mf.GetMetric() {
				id := mf.GetName()
				for _, lp := range m.GetLabel() {
					id += "," + lp.GetName() + "=" + lp.GetValue()
				}
				v := m.GetCounter().GetValue()
				if v < prev[id] {
					t.Fatalf("%s went down from %v to %v (scrape %d)", id, prev[id], v, scrapes.Load())
				}
				prev[id] = v
			}
		}
	}
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		scrape()
	}
	scrape()
	want := float64(rounds * clients * 2) // initiation + data per client and round
	if got := (&runningGateway{reg: reg}).metric(t, "trellis_wg_gateway_backend_packets_total", "backend", "b0", "direction", "to_backend"); got != want {
		t.Fatalf("to_backend packets = %v, want %v", got, want)
	}
	t.Logf("%d scrapes during %d sweeps", scrapes.Load(), rounds)
}
