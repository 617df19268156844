package egressprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v3"
)

// DefaultRTO is the first STUN retransmission timeout: RFC 8489 recommends at
// least 500 ms on the Internet, but a probe has its own short overall timeout and
// the path to a nearby server is fast; retransmissions double it.
const DefaultRTO = 250 * time.Millisecond

// STUN sends a Binding request (with FINGERPRINT) to server (host:port) over the
// family's UDP with pion/stun's client, which retransmits with doubling RTO, and
// returns the reflexive transport address the server saw. ctx bounds the whole
// transaction.
func STUN(ctx context.Context, family Family, server string, rto time.Duration) (netip.Addr, error) {
	if rto <= 0 {
		rto = DefaultRTO
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, family.udp(), server)
	if err != nil {
		return netip.Addr{}, err
	}
	// The client owns conn from here and closes it.
	watched := &garbageCounter{Conn: conn}
	client, err := stun.NewClient(watched, stun.WithRTO(rto))
	if err != nil {
		conn.Close()
		return netip.Addr{}, err
	}
	defer client.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return netip.Addr{}, err
	}
	type reply struct {
		addr netip.Addr
		err  error
	}
	done := make(chan reply, 1)
	err = client.Start(req, func(e stun.Event) {
		if e.Error != nil {
			done <- reply{err: e.Error}
			return
		}
		// e.Message is reused by the client after the handler returns.
		addr, err := ParseBindingResponse(e.Message.Raw, req.TransactionID)
		done <- reply{addr: addr, err: err}
	})
	if err != nil {
		return netip.Addr{}, err
	}
	select {
	case r := <-done:
		if errors.Is(r.err, stun.ErrTransactionTimeOut) {
			return netip.Addr{}, watched.timeout(context.DeadlineExceeded)
		}
		return r.addr, r.err
	case <-ctx.Done():
		return netip.Addr{}, watched.timeout(ctx.Err())
	}
}

// garbageCounter counts datagrams that are no STUN message at all: pion's client
// drops them silently, so without this a server answering garbage would look
// like one that does not answer.
type garbageCounter struct {
	net.Conn
	garbage atomic.Int64
}

func (g *garbageCounter) Read(b []byte) (int, error) {
	n, err := g.Conn.Read(b)
	if err == nil && !stun.IsMessage(b[:n]) {
		g.garbage.Add(1)
	}
	return n, err
}

// timeout is the error when no usable answer came in time.
func (g *garbageCounter) timeout(cause error) error {
	if n := g.garbage.Load(); n > 0 {
		return fmt.Errorf("%w: %d datagrams that are not STUN messages, no valid answer (%v)", errInvalid, n, cause)
	}
	return fmt.Errorf("stun: no answer: %w", cause)
}
