package egressprobe

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// DefaultRTO is the first STUN retransmission timeout: RFC 8489 recommends at
// least 500 ms on the Internet, but a probe has its own short overall timeout and
// the path to a nearby server is fast; retransmissions double it.
const DefaultRTO = 250 * time.Millisecond

// stunAttempts is how many times a request is sent (RFC 8489 §6.2.1: Rc = 7).
const stunAttempts = 7

// STUN sends a Binding request (with FINGERPRINT) to server (host:port) over the
// family's UDP, retransmitting it with a doubling RTO, and returns the reflexive
// transport address the server saw. ctx bounds the whole transaction. Answers to
// other transactions are ignored; datagrams that are no STUN message at all are
// counted, so that a server answering only garbage fails as invalid, not as
// silent.
func STUN(ctx context.Context, family Family, server string, rto time.Duration) (netip.Addr, error) {
	if rto <= 0 {
		rto = DefaultRTO
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, family.udp(), server)
	if err != nil {
		return netip.Addr{}, err
	}
	defer conn.Close()
	// Cancelling ctx unblocks a pending Read.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var tx [TransactionIDSize]byte
	_, _ = rand.Read(tx[:]) // never fails (crypto/rand)
	req := appendBindingRequest(make([]byte, 0, 28), tx)
	buf := make([]byte, 1500)
	garbage := 0
	wait := rto
	for range stunAttempts {
		if ctx.Err() != nil {
			break
		}
		if _, err := conn.Write(req); err != nil {
			return netip.Addr{}, err
		}
		deadline := time.Now().Add(wait)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		if err := conn.SetReadDeadline(deadline); err != nil {
			return netip.Addr{}, err
		}
		if ctx.Err() != nil { // the AfterFunc's deadline may have been replaced just now
			break
		}
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break // retransmit, or ctx is done
			}
			if err != nil {
				return netip.Addr{}, err // e.g. ECONNREFUSED from an ICMP port unreachable
			}
			msg := buf[:n]
			if !isSTUN(msg) {
				garbage++
				continue
			}
			if [TransactionIDSize]byte(msg[8:20]) != tx {
				continue // a late answer to someone else
			}
			return ParseBindingResponse(msg, tx)
		}
		wait *= 2
	}
	cause := ctx.Err()
	if cause == nil {
		cause = context.DeadlineExceeded
	}
	if garbage > 0 {
		return netip.Addr{}, fmt.Errorf("%w: %d datagrams that are not STUN messages, no valid answer (%v)", errInvalid, garbage, cause)
	}
	return netip.Addr{}, fmt.Errorf("stun: no answer: %w", cause)
}
