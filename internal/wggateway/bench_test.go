package wggateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"

	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

func benchConn(b testing.TB) *udpbatch.Conn {
	b.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	udpbatch.SetBuffers(c, 8<<20)
	uc, err := udpbatch.New(c, 64)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return uc
}

func addrOf(c *udpbatch.Conn) netip.AddrPort {
	return c.UDPConn().LocalAddr().(*net.UDPAddr).AddrPort()
}

// runLoad pushes n datagrams from src through a relay listening at to into sink.
func runLoad(b *testing.B, src, sink *udpbatch.Conn, to netip.AddrPort, size, n int, header []byte) udpbatch.LoadResult {
	b.Helper()
	l, err := udpbatch.NewLoad(src, sink, to, udpbatch.LoadConfig{Size: size, Header: header})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Warmup(context.Background()); err != nil {
		b.Fatal(err)
	}
	res, err := l.Run(context.Background(), n)
	if err != nil {
		b.Fatal(err)
	}
	if res.Received == 0 {
		b.Fatalf("nothing arrived: %+v", res)
	}
	return res
}

// BenchmarkRelay measures WireGuard transport packets through the gateway against
// a plain batched UDP forwarder (internal/udpbatch.Forward, no per-packet work)
// measured in the same iteration with the same packet count, so the ratio holds
// even on a noisy shared machine. ns/op and allocs/op are per gateway packet.
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			// Baseline: plain forwarder.
			psrc, psink, pin, pout := benchConn(b), benchConn(b), benchConn(b), benchConn(b)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go udpbatch.Forward(ctx, pin, pout, addrOf(psink), 64)

			// Gateway: one client, one backend, an established session.
			client, backend := benchConn(b), benchConn(b)
			cfg := DefaultConfig()
			cfg.ListenAddress = "127.0.0.1:0"
			cfg.Shards = 1
			gw, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			var pub [32]byte
			pub[0] = 7
			gw.SetBackends([]Backend{{Name: "bench", PublicKey: pub, Endpoint: addrOf(backend)}})
			if err := gw.Listen(ctx); err != nil {
				b.Fatal(err)
			}
			go gw.Serve(ctx)
			gwAddr := gw.LocalAddr().(*net.UDPAddr).AddrPort()
			establish(b, client, backend, gwAddr, pub)
			header := make([]byte, 16)
			header[0] = 4
			binary.LittleEndian.PutUint32(header[4:8], 2) // the backend's index

			var plainPPS, gwPPS, gwMbit float64
			b.ReportAllocs()
			b.ResetTimer()
			b.StopTimer()
			plain := runLoad(b, psrc, psink, addrOf(pin), size, b.N, nil)
			b.StartTimer()
			res := runLoad(b, client, backend, gwAddr, size, b.N, header)
			b.StopTimer()
			plainPPS, gwPPS, gwMbit = plain.PacketsPerSecond(), res.PacketsPerSecond(), res.MbitPerSecond()
			b.ReportMetric(gwPPS, "pkts/s")
			b.ReportMetric(gwMbit, "Mbit/s")
			b.ReportMetric(plainPPS, "plain-pkts/s")
			b.ReportMetric(gwPPS/plainPPS, "ratio")
			b.ReportMetric(100*res.LossRatio(), "loss-%")
		})
	}
}

// establish runs a handshake (initiation, response) between a client socket and a
// backend socket through the gateway, with indexes 1 (client) and 2 (backend).
func establish(b *testing.B, client, backend *udpbatch.Conn, gw netip.AddrPort, pub [32]byte) {
	b.Helper()
	init := initiation(pub, 1)
	if _, err := client.WriteBatch([]udpbatch.Message{{Buf: init, N: len(init), Addr: gw}}); err != nil {
		b.Fatal(err)
	}
	in := udpbatch.NewMessages(1, 2048)
	backend.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := backend.ReadBatch(in); n != 1 || err != nil {
		b.Fatalf("backend got no initiation: %v", err)
	}
	resp := response(2, 1)
	if _, err := backend.WriteBatch([]udpbatch.Message{{Buf: resp, N: len(resp), Addr: in[0].Addr}}); err != nil {
		b.Fatal(err)
	}
	client.UDPConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.ReadBatch(in); n != 1 || err != nil || in[0].Buf[0] != 2 {
		b.Fatalf("client got no response: %v", err)
	}
	backend.UDPConn().SetReadDeadline(time.Time{})
	client.UDPConn().SetReadDeadline(time.Time{})
}

// BenchmarkRouteInitiation measures routing one initiation among n backends (the
// match is the last one, no hint: the worst case), against checking mac1 with
// golang.org/x/crypto/blake2s per backend, measured in the same run.
func BenchmarkRouteInitiation(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		var bs []Backend
		for i := 0; i < n; i++ {
			var k [32]byte
			binary.LittleEndian.PutUint32(k[:], uint32(i+1))
			bs = append(bs, Backend{Name: fmt.Sprintf("b%04d", i), PublicKey: k, Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 51820)})
		}
		tb := newTable(bs, nil)
		msg := initiation(bs[n-1].PublicKey, 1)
		b.Run(fmt.Sprintf("backends=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if tb.route(msg, nil) != tb.backends[n-1] {
					b.Fatal("wrong route")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "us/route")
		})
		keys := make([][32]byte, n)
		for i, bk := range bs {
			keys[i] = blake2s.Sum256(append([]byte("mac1----"), bk.PublicKey[:]...))
		}
		b.Run(fmt.Sprintf("baseline-xcrypto/backends=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			var mac [16]byte
			for b.Loop() {
				found := -1
				for i := range keys {
					h, _ := blake2s.New128(keys[i][:])
					h.Write(msg[:116])
					h.Sum(mac[:0])
					if mac == [16]byte(msg[116:132]) {
						found = i
					}
				}
				if found != n-1 {
					b.Fatal("wrong route")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "us/route")
		})
	}
}

// BenchmarkInitiationFlood measures what a flood of valid-mac1 initiations from
// spoofed sources costs the gateway per initiation, on one core: under pressure
// (route by mac1, check mac2, write a cookie reply) and, without pressure, for a
// source out of tokens (refused before any mac1 check). inits/s is per core.
func BenchmarkInitiationFlood(b *testing.B) {
	for _, n := range []int{1, 100, 1000} {
		var bs []Backend
		for i := 0; i < n; i++ {
			var k [32]byte
			binary.LittleEndian.PutUint32(k[:], uint32(i+1))
			bs = append(bs, Backend{Name: fmt.Sprintf("b%04d", i), PublicKey: k, Endpoint: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 51820)})
		}
		const batch = 64
		in := make([]udpbatch.Message, batch)
		for i := range in {
			in[i].Buf = initiation(bs[n-1].PublicKey, uint32(i))
			in[i].N = len(in[i].Buf)
			in[i].Addr = spoofedSource(i)
		}
		run := func(b *testing.B, mode CookieMode, rate float64, want dropReason) {
			cfg := DefaultConfig()
			cfg.Cookies = mode
			cfg.HandshakeRate, cfg.HandshakeBurst = rate, 1
			gw, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err != nil {
				b.Fatal(err)
			}
			gw.SetBackends(bs)
			s := &shardIO{g: gw}
			routes := make([]*backendState, batch)
			hints := make([]*backendState, batch)
			verdicts := make([]dropReason, batch)
			proven := make([]bool, batch)
			replies := make([][wgproto.CookieReplySize]byte, batch)
			nonces := mrand.NewChaCha8([32]byte{1})
			now := time.Now().UnixNano()
			s.admitInitiations(in, routes, hints, verdicts, proven, now) // takes the burst
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += batch {
				for j := range verdicts {
					routes[j], verdicts[j], proven[j] = nil, forwarded, false
				}
				s.admitInitiations(in, routes, hints, verdicts, proven, now)
				for j := range in {
					if verdicts[j] != want {
						b.Fatalf("verdict %s, want %s", dropReasonNames[verdicts[j]], dropReasonNames[want])
					}
					if verdicts[j] == answeredWithCookie {
						gw.cookieReply(&replies[j], in[j].Buf[:in[j].N], in[j].Addr, routes[j], nonces)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inits/s")
		}
		b.Run(fmt.Sprintf("cookie-reply/backends=%d", n), func(b *testing.B) { run(b, CookiesAlways, 10, answeredWithCookie) })
		b.Run(fmt.Sprintf("rate-limited/backends=%d", n), func(b *testing.B) { run(b, CookiesAuto, 1e-9, dropRateLimited) })
	}
}
