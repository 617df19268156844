//go:build linux

package udpbatch

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkForwarder measures the plain batched forwarder, the baseline of
// relay benchmarks: a sender blasts b.N datagrams through Forward on
// loopback and the sink counts what arrives. Rates are computed from what
// arrived (loopback drops under overload); ns/op is per delivered datagram.
func BenchmarkForwarder(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			p := newPipeline(b, DefaultBatch)
			l, err := NewLoad(p.src, p.sink, p.to, LoadConfig{Size: size})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Warmup(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := l.Run(context.Background(), b.N)
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			if res.Received == 0 {
				b.Fatalf("nothing arrived: %+v", res)
			}
			res.Report(b)
		})
	}
}

// BenchmarkReadWriteBatch measures one WriteBatch of 32 datagrams and the
// ReadBatch calls receiving them, on one loopback socket pair.
func BenchmarkReadWriteBatch(b *testing.B) {
	const batch = 32
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("batch=%d/%dB", batch, size), func(b *testing.B) {
			src := listenConn(b, "udp4", "127.0.0.1:0", batch)
			dst := listenConn(b, "udp4", "127.0.0.1:0", batch)
			if err := SetBuffers(dst.UDPConn(), 4<<20); err != nil {
				b.Fatal(err)
			}
			out := make([]Message, batch)
			for i := range out {
				out[i] = Message{Buf: make([]byte, size), N: size, Addr: local(dst, "")}
			}
			in := NewMessages(batch, 2048)
			b.ReportAllocs()
			b.SetBytes(batch * int64(size))
			b.ResetTimer()
			for i := range b.N {
				if i%1024 == 0 {
					// A lost datagram fails the benchmark instead of hanging it.
					if err := dst.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
						b.Fatal(err)
					}
				}
				if n, err := src.WriteBatch(out); n != batch || err != nil {
					b.Fatalf("WriteBatch = %d, %v", n, err)
				}
				for got := 0; got < batch; {
					n, err := dst.ReadBatch(in[:batch-got])
					if err != nil {
						b.Fatalf("ReadBatch after %d: %v", got, err)
					}
					got += n
				}
			}
			b.ReportMetric(float64(b.N)*batch/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}
