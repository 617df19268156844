//go:build linux

package udpbatch

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// pipeline is src -> in -[Forward]-> out -> sink on IPv4 loopback.
type pipeline struct {
	src, in, out, sink *Conn
	to                 netip.AddrPort // in's address, where src sends
}

// newPipeline starts Forward between in and out; cleanup stops it and checks
// that it returned context.Canceled.
func newPipeline(tb testing.TB, batch int) *pipeline {
	tb.Helper()
	p := &pipeline{
		src:  listenConn(tb, "udp4", "127.0.0.1:0", batch),
		in:   listenConn(tb, "udp4", "127.0.0.1:0", batch),
		out:  listenConn(tb, "udp4", "127.0.0.1:0", batch),
		sink: listenConn(tb, "udp4", "127.0.0.1:0", batch),
	}
	for _, c := range []*Conn{p.src, p.in, p.out, p.sink} {
		if err := SetBuffers(c.UDPConn(), 4<<20); err != nil {
			tb.Fatal(err)
		}
	}
	p.to = local(p.in, "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Forward(ctx, p.in, p.out, local(p.sink, ""), batch) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				tb.Errorf("Forward returned %v, want context.Canceled", err)
			}
		case <-time.After(waitTimeout):
			tb.Error("Forward did not stop after cancel")
		}
	})
	return p
}

func TestForward(t *testing.T) {
	p := newPipeline(t, 16)
	var want []string
	var ms []Message
	for i := range 50 {
		body := payload("fwd", i, 1+(i*1237)%9000)
		want = append(want, body)
		ms = append(ms, Message{Buf: []byte(body), N: len(body), Addr: p.to})
	}
	big := strings.Repeat("B", 60000) // far beyond any MTU but loopback's
	want = append(want, big)
	ms = append(ms, Message{Buf: []byte(big), N: len(big), Addr: p.to})
	if n, err := p.src.WriteBatch(ms); n != len(ms) || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	got := readN(t, p.sink, len(want), 16, MaxDatagram)
	for i, g := range got {
		if g.data != want[i] || g.truncated || g.addr != local(p.out, "") {
			t.Fatalf("datagram %d: %d bytes from %v (truncated %v), want %d bytes from %v",
				i, len(g.data), g.addr, g.truncated, len(want[i]), local(p.out, ""))
		}
	}
}

func TestForwardClearsDeadlineOnCancel(t *testing.T) {
	in := listenConn(t, "udp4", "127.0.0.1:0", 8)
	out := listenConn(t, "udp4", "127.0.0.1:0", 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Forward(ctx, in, out, netip.MustParseAddrPort("127.0.0.1:9"), 8) }()
	waitBlockedIn(t, "ReadBatch")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Forward = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Forward did not stop")
	}
	// in is usable again: no deadline in the past is left behind.
	src := listenConn(t, "udp4", "127.0.0.1:0", 1)
	if n, err := src.WriteBatch([]Message{{Buf: []byte("x"), N: 1, Addr: local(in, "")}}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := in.ReadBatch(NewMessages(1, 8)); n != 1 || err != nil {
		t.Fatalf("ReadBatch after Forward = %d, %v", n, err)
	}
}

func TestForwardErrors(t *testing.T) {
	in := listenConn(t, "udp4", "127.0.0.1:0", 8)
	out := listenConn(t, "udp4", "127.0.0.1:0", 8)
	to := netip.MustParseAddrPort("127.0.0.1:9")
	if err := Forward(context.Background(), nil, out, to, 8); err == nil {
		t.Error("nil in accepted")
	}
	if err := Forward(context.Background(), in, &Conn{}, to, 8); err == nil {
		t.Error("zero out accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Forward(ctx, in, out, to, 8); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- Forward(context.Background(), in, out, to, 0) }()
	waitBlockedIn(t, "ReadBatch")
	_ = in.UDPConn().Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Forward after Close = %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Forward did not stop after Close")
	}
}

// reporter collects benchmark metrics.
type reporter map[string]float64

func (r reporter) ReportMetric(n float64, unit string) { r[unit] = n }

func TestLoad(t *testing.T) {
	p := newPipeline(t, 32)
	ctx := context.Background()
	l, err := NewLoad(p.src, p.sink, p.to, LoadConfig{Size: 200, Batch: 32})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Warmup(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.Run(ctx, 2000)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sent != 2000 || res.Received <= 0 || res.Received > 2000 ||
		res.Bytes != int64(res.Received)*200 || res.Elapsed <= 0 {
		t.Fatalf("result %+v", res)
	}
	r := reporter{}
	res.Report(r)
	for _, unit := range []string{"pkts/s", "Mbit/s", "loss-%", "ns/op"} {
		if _, ok := r[unit]; !ok {
			t.Errorf("metric %s missing: %v", unit, r)
		}
	}
	if r["pkts/s"] <= 0 || r["Mbit/s"] <= 0 {
		t.Errorf("metrics %v", r)
	}
	if res, err := l.Run(ctx, 0); err != nil || res != (LoadResult{}) {
		t.Errorf("Run(0) = %+v, %v", res, err)
	}
}

func TestLoadErrors(t *testing.T) {
	c := listenConn(t, "udp4", "127.0.0.1:0", 8)
	if _, err := NewLoad(nil, c, local(c, ""), LoadConfig{}); err == nil {
		t.Error("nil source accepted")
	}
	if _, err := NewLoad(c, c, netip.AddrPort{}, LoadConfig{}); err == nil {
		t.Error("zero destination accepted")
	}
	// Nothing forwards to the sink: the warm-up gives up.
	sink := listenConn(t, "udp4", "127.0.0.1:0", 8)
	l, err := NewLoad(c, sink, netip.MustParseAddrPort("127.0.0.1:9"), LoadConfig{WarmupTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Warmup(context.Background()); err == nil {
		t.Error("warm-up without a relay succeeded")
	}
	// And a run ends after the quiet period, with nothing received.
	l.cfg.Quiet = 20 * time.Millisecond
	res, err := l.Run(context.Background(), 100)
	if err != nil || res.Sent != 100 || res.Received != 0 || res.PacketsPerSecond() != 0 || res.LossRatio() != 1 {
		t.Errorf("Run = %+v, %v", res, err)
	}
}
