package udpbatch

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Forward is the plain batched UDP forwarder used as the baseline of relay
// benchmarks: it reads batches from in and writes every datagram, unchanged,
// to to via out, with no other per-packet work, until ctx ends or a hard error
// occurs. batch <= 0 selects DefaultBatch; in and out cap it at their own
// batch sizes.
//
// It returns ctx.Err() once ctx has ended, otherwise the error that stopped
// it (errors.Is(err, net.ErrClosed) after in or out was closed). Datagrams
// that out's kernel rejects are dropped and counted in out.Stats.
//
// Buffers of MaxDatagram bytes are allocated once, so nothing is truncated
// and the loop allocates nothing. Forward owns in's read deadline while it
// runs: it sets a past deadline to stop when ctx ends and clears it before
// returning.
func Forward(ctx context.Context, in, out *Conn, to netip.AddrPort, batch int) error {
	if in.UDPConn() == nil || out.UDPConn() == nil {
		return errors.New("udpbatch: Forward needs two Conns made by New")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if batch <= 0 {
		batch = DefaultBatch
	}
	ms := NewMessages(min(batch, MaxBatch), MaxDatagram)

	stopped := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = in.UDPConn().SetReadDeadline(time.Unix(1, 0))
		close(stopped)
	})
	defer func() {
		if !stop() {
			<-stopped
			_ = in.UDPConn().SetReadDeadline(time.Time{})
		}
	}()

	for {
		n, err := in.ReadBatch(ms)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			return err
		}
		for i := range ms[:n] {
			ms[i].Addr = to
		}
		if _, err := out.WriteBatch(ms[:n]); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			return err
		}
	}
}

// NewMessages returns n messages whose buffers of size bytes each share one
// allocation. Values < 1 are raised to 1.
func NewMessages(n, size int) []Message {
	n, size = max(n, 1), max(size, 1)
	buf := make([]byte, n*size)
	ms := make([]Message, n)
	for i := range ms {
		ms[i].Buf = buf[i*size : (i+1)*size : (i+1)*size]
	}
	return ms
}
