package wggateway

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/trellis-garden/trellis/internal/wgproto"
)

// FuzzShard drives the session state machine with arbitrary sequences of packets
// from clients (with and without a valid gateway mac2) and backends, table changes
// and sweeps, and checks after every step that packets go only where the rules
// allow, that only the backend's real answer establishes a session, that sessions
// which carried data are never evicted, and that the indexes stay consistent.
func FuzzShard(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 0, 0, 1, 1, 0, 2, 3, 4, 1, 2, 0, 2})
	f.Add([]byte{0, 1, 1, 7, 0, 0, 0, 2, 1, 1, 2, 7, 3, 0, 4, 1, 2, 5, 0})
	// Handshake, data both ways, then a flood of initiations from other clients.
	f.Add([]byte{0, 0, 0, 1, 2, 0, 1, 1, 0, 0, 3, 2, 2, 0, 3, 1, 0, 1, 0, 2, 0, 2, 0, 3, 0, 1, 0, 3, 1, 1, 0, 2})
	// A real cookie reply from the backend, then a retry.
	f.Add([]byte{0, 0, 0, 1, 2, 0, 5, 1, 0, 0, 0, 2, 2, 0, 1, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		// The first byte picks when pressure begins: at one unanswered session of
		// a backend, at two, or never.
		threshold := 1 << 30
		if len(ops) > 0 {
			if ops[0]%3 != 2 {
				threshold = int(ops[0]%3) + 1
			}
			ops = ops[1:]
		}
		press := newPressure(CookiesAuto, threshold)
		press.hold = 5
		fx := newFixture(t, 3, shardConfig{maxUpstreams: 2, maxSessions: 4, pendingTimeout: 10, idleTimeout: 40, press: press})
		clients := []netip.AddrPort{ap("192.0.2.1:1"), ap("192.0.2.2:1"), ap("[2001:db8::1]:1")}
		type pair struct {
			client netip.AddrPort
			b      *backendState
		}
		sent := map[pair]map[uint32]bool{}     // indexes each client sent each backend
		answeredBy := map[*session]bool{}      // sessions a matching response reached
		lastInit := map[*backendState][]byte{} // last initiation forwarded to a backend
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
			switch b % 6 {
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
			case 5: // a real cookie reply of backend a%3 to its last initiation
				bk := fx.tb.backends[a%len(fx.tb.backends)]
				if init := lastInit[bk]; init != nil {
					var r [wgproto.CookieReplySize]byte
					bk.sealer.Reply(&r, init, &[16]byte{byte(idx)}, &[24]byte{byte(now)})
					pkt = r[:]
				} else {
					pkt = cookieReply(idx)
				}
			}
			var transportedBefore []*session
			for _, ss := range fx.sh.byPair {
				if ss.state == transported {
					transportedBefore = append(transportedBefore, ss)
				}
			}
			switch op {
			case 0, 1: // from a client; op 1: with a valid gateway mac2
				src := clients[a%len(clients)]
				var route *backendState
				if isInitiation(pkt) {
					route = fx.tb.route(pkt, fx.sh.lastRoute[src])
				}
				typ, _ := wgproto.Type(pkt)
				up, dst, r := fx.sh.fromClient(src, pkt, route, op == 1, now)
				if r == answeredWithCookie && (op == 1 || !isInitiation(pkt)) {
					t.Fatal("cookie reply for a proven initiation or another message")
				}
				if r == forwarded {
					ss := up.sessions[dst]
					if ss == nil || ss.client != src || ss.backend.Endpoint != dst {
						t.Fatalf("client packet from %v forwarded to %v outside its session", src, dst)
					}
					if isInitiation(pkt) && ss.backend != route {
						t.Fatalf("initiation for %v sent to %s", route, ss.backend.Name)
					}
					if typ == wgproto.MessageInitiation || typ == wgproto.MessageResponse {
						k := pair{src, ss.backend}
						if sent[k] == nil {
							sent[k] = map[uint32]bool{}
						}
						sent[k][wgproto.Sender(pkt)] = true
					}
					if typ == wgproto.MessageInitiation {
						lastInit[ss.backend] = append([]byte(nil), pkt...)
					}
				}
			case 2, 3: // from a backend, on some upstream socket
				if len(fx.sh.ups) == 0 {
					continue
				}
				up := fx.sh.ups[a%len(fx.sh.ups)]
				src := fx.tb.backends[b%len(fx.tb.backends)].Endpoint
				before := up.sessions[src]
				var stateBefore sessionState
				if before != nil {
					stateBefore = before.state
				}
				typ, _ := wgproto.Type(pkt)
				dst, r := fx.sh.fromBackend(up, src, pkt, now)
				if r == forwarded {
					ss := up.sessions[src]
					if ss == nil || ss.client != dst || ss != before {
						t.Fatalf("backend packet forwarded to %v, not its session's client", dst)
					}
					switch typ {
					case wgproto.MessageCookieReply:
						t.Fatal("a backend cookie reply was relayed")
					case wgproto.MessageResponse, wgproto.MessageTransport:
						if !sent[pair{dst, ss.backend}][wgproto.Receiver(pkt)] {
							t.Fatalf("%v for index %d delivered to %v, which never sent it", typ, wgproto.Receiver(pkt), dst)
						}
						if typ == wgproto.MessageResponse {
							answeredBy[ss] = true
						}
					case wgproto.MessageInitiation:
						if stateBefore == pending {
							t.Fatal("a backend initiation reached a session the backend never answered")
						}
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
			for _, ss := range fx.sh.byPair {
				if ss.state != pending && !answeredBy[ss] {
					t.Fatalf("session of %v established without a matching response", ss.client)
				}
			}
			if op != 4 {
				for _, ss := range transportedBefore {
					if fx.sh.byPair[sessionKey{ss.client, ss.backend}] != ss && !ss.backend.removed.Load() {
						t.Fatalf("session of %v that carried data was evicted", ss.client)
					}
				}
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
	perBack := map[*backendState][2]int{}
	for _, ss := range sh.byPair {
		c := perBack[ss.backend]
		c[0]++
		if ss.state == pending {
			c[1]++
		}
		perBack[ss.backend] = c
	}
	for b, bs := range sh.perBack {
		if c := perBack[b]; bs.sessions != c[0] || bs.pending != c[1] {
			t.Fatalf("backend %s: counted %d sessions, %d pending; have %d, %d", b.Name, bs.sessions, bs.pending, c[0], c[1])
		}
	}
}
