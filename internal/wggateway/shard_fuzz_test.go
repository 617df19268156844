package wggateway

import (
	"fmt"
	"net/netip"
	"testing"
)

// FuzzShard drives the session state machine with arbitrary sequences of packets
// from clients and backends, table changes and sweeps, and checks after every step
// that packets go only where the rules allow and that the indexes stay consistent.
func FuzzShard(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0, 1, 1, 0, 2, 3, 4, 1, 2, 0, 2})
	f.Add([]byte{0, 1, 1, 7, 0, 0, 0, 2, 1, 1, 2, 7, 3, 0, 4, 1, 2, 5, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		fx := newFixture(t, 3, shardConfig{maxUpstreams: 2, maxSessions: 4, pendingTimeout: 10, idleTimeout: 40})
		clients := []netip.AddrPort{ap("192.0.2.1:1"), ap("192.0.2.2:1"), ap("[2001:db8::1]:1")}
		now := int64(0)
		next := func() byte {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return b
		}
		for len(ops) > 0 {
			now++
			op, a, b, idx := next()%6, int(next()), int(next()), uint32(next()%4)
			var pkt []byte
			switch b % 5 {
			case 0:
				pkt = initiation(key(a%4), idx) // a%4 == 3: unknown key
			case 1:
				pkt = response(idx, uint32(a%4))
			case 2:
				pkt = cookieReply(idx)
			case 3:
				pkt = transport(idx, a%3)
			case 4:
				pkt = []byte{byte(a), byte(b)}
			}
			switch op {
			case 0, 1: // from a client
				src := clients[a%len(clients)]
				var route *backendState
				if isInitiation(pkt) {
					route = fx.tb.route(pkt, fx.sh.lastRoute[src])
				}
				up, dst, r := fx.sh.fromClient(src, pkt, route, now)
				if r == forwarded {
					ss := up.sessions[dst]
					if ss == nil || ss.client != src || ss.backend.Endpoint != dst {
						t.Fatalf("client packet from %v forwarded to %v outside its session", src, dst)
					}
					if isInitiation(pkt) && ss.backend != route {
						t.Fatalf("initiation for %v sent to %s", route, ss.backend.Name)
					}
				}
			case 2, 3: // from a backend, on some upstream socket
				if len(fx.sh.ups) == 0 {
					continue
				}
				up := fx.sh.ups[a%len(fx.sh.ups)]
				src := fx.tb.backends[b%len(fx.tb.backends)].Endpoint
				dst, r := fx.sh.fromBackend(up, src, pkt, now)
				if r == forwarded {
					ss := up.sessions[src]
					if ss == nil || ss.client != dst {
						t.Fatalf("backend packet forwarded to %v, not its session's client", dst)
					}
				}
			case 4:
				fx.sh.sweep(now)
			case 5: // drop or re-add backend b%3
				var keep []Backend
				for i := 0; i < 3; i++ {
					if i != b%3 || a%2 == 0 {
						keep = append(keep, Backend{Name: fmt.Sprintf("b%d", i), PublicKey: key(i), Endpoint: ap(fmt.Sprintf("10.0.0.%d:51820", i+1))})
					}
				}
				fx.tb = newTable(keep, fx.tb)
			}
			checkShard(t, fx.sh)
		}
	})
}

func checkShard(t *testing.T, sh *shard) {
	t.Helper()
	if sh.nSessions != len(sh.byPair) {
		t.Fatalf("nSessions %d != %d sessions", sh.nSessions, len(sh.byPair))
	}
	if sh.nSessions > sh.cfg.maxSessions || len(sh.ups) > sh.cfg.maxUpstreams {
		t.Fatalf("limits exceeded: %d sessions, %d upstreams", sh.nSessions, len(sh.ups))
	}
	onUps := 0
	for _, up := range sh.ups {
		for ep, ss := range up.sessions {
			onUps++
			if ss.up != up || ss.backend.Endpoint != ep || sh.byPair[sessionKey{ss.client, ss.backend}] != ss {
				t.Fatalf("upstream %d holds a stray session", up.id)
			}
		}
	}
	if onUps != len(sh.byPair) {
		t.Fatalf("%d sessions on upstreams, %d in total", onUps, len(sh.byPair))
	}
	for k, ss := range sh.byClient {
		if ss.client != k.client || sh.byPair[sessionKey{ss.client, ss.backend}] != ss {
			t.Fatalf("index %d of %v points to a stray session", k.index, k.client)
		}
	}
}
