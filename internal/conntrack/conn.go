package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ErrOverflow means the kernel dropped events because the socket's receive
// buffer was full (ENOBUFS): some DESTROY events are lost and the caller should
// resync by dump.
var ErrOverflow = errors.New("conntrack event socket overflowed (ENOBUFS): events lost")

// ErrDumpInterrupted: the kernel flagged the dump as inconsistent
// (NLM_F_DUMP_INTR); its entries must not be taken as the whole table.
var ErrDumpInterrupted = errors.New("conntrack dump interrupted by a table change")

// Options configure a Conn.
type Options struct {
	// NetNS is a network namespace file descriptor; 0 means the caller's.
	NetNS int
	// ReadBuffer is the event socket's receive buffer in bytes; 0 keeps the
	// system default (net.core.rmem_default). Larger buffers make ENOBUFS
	// rarer. It is set with SO_RCVBUFFORCE (CAP_NET_ADMIN) where allowed, so it
	// may exceed net.core.rmem_max.
	ReadBuffer int
}

// Conn dumps the conntrack table and listens for DESTROY events of one network
// namespace over raw netlink sockets, reading each into one fixed buffer: a
// dump is streamed entry by entry, whatever the size of the table. Dump and
// Listen may run concurrently; each uses its own socket.
type Conn struct {
	opts Options

	mu     sync.Mutex
	dump   *nlSocket // nil after a failed dump: reopened by the next one
	closed bool
}

// Dial opens the dump socket; event sockets are opened by Listen.
func Dial(opts Options) (*Conn, error) {
	s, err := openSocket(opts.NetNS, 0)
	if err != nil {
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	return &Conn{opts: opts, dump: s}, nil
}

// Close closes the dump socket. Listen ends with its context.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.dump == nil {
		return nil
	}
	err := c.dump.Close()
	c.dump = nil
	return err
}

// socket returns the dump socket, reopening it after a failure. c.mu is held.
func (c *Conn) socket() (*nlSocket, error) {
	if c.closed {
		return nil, net.ErrClosed
	}
	if c.dump == nil {
		s, err := openSocket(c.opts.NetNS, 0)
		if err != nil {
			return nil, fmt.Errorf("dial ctnetlink: %w", err)
		}
		c.dump = s
	}
	return c.dump, nil
}

// Dump reads every entry of the table (IPv4 and IPv6) with its counters and
// calls fn for each, as the kernel sends them: one datagram (up to 32 KiB, a
// hundred-odd entries) at a time, so memory does not grow with the table. fn
// must not keep the pointer. Counters are never zeroed: zero-on-dump would
// reset them for every other reader on the node. Entries are decoded by
// parseFlow, which reads only what Flow holds and allocates nothing per entry.
// An error means the dump is incomplete: the entries seen so far were passed
// to fn, the rest were not.
func (c *Conn) Dump(ctx context.Context, fn func(*Flow)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.socket()
	if err != nil {
		return err
	}
	if err := c.dumpOn(ctx, s, fn); err != nil {
		// The kernel may still hold the rest of this dump for the socket, and a
		// second dump on it would fail with EBUSY: start afresh next time.
		_ = s.Close()
		c.dump = nil
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	return nil
}

func (c *Conn) dumpOn(ctx context.Context, s *nlSocket, fn func(*Flow)) error {
	s.seq++
	seq := s.seq
	req := appendHeader(nil, msgCTGet, nlmFRequest|nlmFDump, seq, unix.AF_UNSPEC)
	req = finishMsg(req, 0)
	if err := s.f.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = s.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := s.send(req); err != nil {
		return err
	}
	var f Flow
	entries := 0
	for {
		b, err := s.recv(nil)
		if err != nil {
			return err
		}
		for len(b) > 0 {
			var m nlMsg
			if m, b, err = nextMsg(b); err != nil {
				return err
			}
			if m.seq != seq {
				continue // the rest of an earlier, abandoned request
			}
			if m.flags&nlmFDumpIntr != 0 {
				return ErrDumpInterrupted
			}
			switch {
			case m.typ == nlmsgDone:
				if len(m.data) >= 4 {
					return errnoOf(m.data)
				}
				return nil
			case m.typ == nlmsgError:
				if err := errnoOf(m.data); err != nil {
					return err
				}
			case m.typ>>8 == subsysCTNetlink:
				if err := parseFlow(m.data, &f); err != nil {
					return fmt.Errorf("entry %d: %w", entries, err)
				}
				entries++
				fn(&f)
			}
		}
	}
}

// Handlers receive what an event listener sees. Only Event is required.
type Handlers struct {
	// Ready is called once the multicast group is joined: events of entries
	// destroyed from then on are seen.
	Ready func()
	// Event is called for every event, with the entry's final counters for a
	// DESTROY (when accounting is on). It must not keep the pointer.
	Event func(EventType, *Flow)
	// Idle, if set, is called whenever the socket's queue is found empty, with
	// the time the read was attempted: every event the kernel queued before
	// that time has been passed to Event (or lost and reported by Overflow).
	Idle func(since time.Time)
	// Overflow, if set, is called on ENOBUFS (the kernel dropped events because
	// the receive buffer was full) and listening goes on with the events still
	// queued; without it, Listen returns an error wrapping ErrOverflow.
	Overflow func()
}

// groupDestroy is NF_NETLINK_CONNTRACK_DESTROY as a bind() group mask.
const groupDestroy = 1 << 2

// Listen joins the DESTROY multicast group and passes events to h until ctx
// ends (it returns ctx.Err()) or the socket fails.
func (c *Conn) Listen(ctx context.Context, h Handlers) error {
	s, err := openSocket(c.opts.NetNS, groupDestroy)
	if err != nil {
		return fmt.Errorf("dial ctnetlink events: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer func() {
		if stop() {
			_ = s.Close()
		}
	}()
	if c.opts.ReadBuffer > 0 {
		if err := s.setReadBuffer(c.opts.ReadBuffer); err != nil {
			return fmt.Errorf("set event socket read buffer: %w", err)
		}
	}
	if h.Ready != nil {
		h.Ready()
	}
	var f Flow
	for {
		b, err := s.recv(h.Idle)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, unix.ENOBUFS) {
				if h.Overflow != nil {
					h.Overflow()
					continue
				}
				return fmt.Errorf("%w: %w", ErrOverflow, err)
			}
			return fmt.Errorf("receive conntrack events: %w", err)
		}
		for len(b) > 0 {
			var m nlMsg
			if m, b, err = nextMsg(b); err != nil {
				break // a datagram we cannot split: skip the rest of it
			}
			typ, ok := eventType(m)
			if !ok || parseFlow(m.data, &f) != nil {
				// One message we do not understand (a newer kernel's attribute)
				// must not stop accounting: skip it.
				continue
			}
			h.Event(typ, &f)
		}
	}
}

func eventType(m nlMsg) (EventType, bool) {
	if m.typ>>8 != subsysCTNetlink {
		return EventOther, false
	}
	switch m.typ & 0xff {
	case msgCTNew:
		if m.flags&(nlmFCreate|nlmFExcl) != 0 {
			return EventNew, true
		}
		return EventUpdate, true
	case msgCTDelete:
		return EventDestroy, true
	}
	return EventOther, true
}

// ListenDestroy is Listen without the idle and overflow handlers: on ENOBUFS
// it returns an error wrapping ErrOverflow; the caller resyncs by dump and
// listens again. ready, if not nil, is called once the group is joined.
func (c *Conn) ListenDestroy(ctx context.Context, ready func(), fn func(EventType, *Flow)) error {
	return c.Listen(ctx, Handlers{Ready: ready, Event: fn})
}

// Create inserts entries into the table through ctnetlink (as `conntrack -I`
// does), many per request, for tests and benchmarks that need a large table
// without making connections. Each entry gets its orig tuple from f (OrigSrc,
// OrigDst, ports, Proto, Zone), the reply tuple from ReplySrc/ReplyDst (the
// orig tuple reversed when unset), TCP entries the ESTABLISHED state, and
// expires after timeout. Counters start at zero.
func (c *Conn) Create(fs []Flow, timeout time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, err := c.socket()
	if err != nil {
		return err
	}
	if err := s.f.SetReadDeadline(time.Time{}); err != nil {
		return err
	}
	const batch = 256
	var b []byte
	for len(fs) > 0 {
		n := min(batch, len(fs))
		b = b[:0]
		first := s.seq + 1
		for i := range fs[:n] {
			s.seq++
			flags := uint16(nlmFRequest | nlmFCreate | nlmFExcl)
			if i == n-1 {
				flags |= nlmFAck
			}
			b = appendCreate(b, &fs[i], flags, s.seq, uint32(timeout/time.Second))
		}
		if err := s.send(b); err != nil {
			return fmt.Errorf("create conntrack entries: %w", err)
		}
		if err := awaitAck(s, first, s.seq); err != nil {
			return fmt.Errorf("create conntrack entries: %w", err)
		}
		fs = fs[n:]
	}
	return nil
}

// awaitAck reads replies until the acknowledgement of seq last, returning the
// first error reported for any request from first to last.
func awaitAck(s *nlSocket, first, last uint32) error {
	var firstErr error
	for {
		b, err := s.recv(nil)
		if err != nil {
			return err
		}
		for len(b) > 0 {
			var m nlMsg
			if m, b, err = nextMsg(b); err != nil {
				return err
			}
			if m.typ != nlmsgError || m.seq < first || m.seq > last {
				continue
			}
			if err := errnoOf(m.data); err != nil && firstErr == nil {
				firstErr = fmt.Errorf("entry %d: %w", m.seq-first, err)
			}
			if m.seq == last {
				return firstErr
			}
		}
	}
}

func appendCreate(b []byte, f *Flow, flags uint16, seq, timeout uint32) []byte {
	family := uint8(unix.AF_INET)
	if f.OrigSrc.Is6() && !f.OrigSrc.Is4In6() {
		family = unix.AF_INET6
	}
	start := len(b)
	b = appendHeader(b, msgCTNew, flags, seq, family)
	rs, rd := f.ReplySrc, f.ReplyDst
	if !rs.IsValid() {
		rs, rd = f.OrigDst, f.OrigSrc
	}
	b = appendTuple(b, ctaTupleOrig, f.OrigSrc, f.OrigDst, f.Proto, f.OrigSrcPort, f.OrigDstPort)
	b = appendTuple(b, ctaTupleReply, rs, rd, f.Proto, f.OrigDstPort, f.OrigSrcPort)
	b = appendAttr(b, 3, binary.BigEndian.AppendUint32(nil, 1<<2|1<<3)) // CTA_STATUS: ASSURED, CONFIRMED
	b = appendAttr(b, 7, binary.BigEndian.AppendUint32(nil, timeout))   // CTA_TIMEOUT
	if f.Proto == unix.IPPROTO_TCP {
		// CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE: ESTABLISHED } }
		tcp := appendAttr(nil, 1, []byte{3})
		b = appendNested(b, 4, appendNested(nil, 1, tcp))
	}
	if f.Zone != 0 {
		b = appendAttr(b, ctaZone, binary.BigEndian.AppendUint16(nil, f.Zone))
	}
	return finishMsg(b, start)
}

func appendTuple(b []byte, typ uint16, src, dst netip.Addr, proto uint8, sport, dport uint16) []byte {
	var ip []byte
	if src.Is4() || src.Is4In6() {
		s, d := src.Unmap().As4(), dst.Unmap().As4()
		ip = appendAttr(appendAttr(nil, 1, s[:]), 2, d[:])
	} else {
		s, d := src.As16(), dst.As16()
		ip = appendAttr(appendAttr(nil, 3, s[:]), 4, d[:])
	}
	p := appendAttr(nil, ctaProtoNum, []byte{proto})
	p = appendAttr(p, ctaProtoSrcPort, binary.BigEndian.AppendUint16(nil, sport))
	p = appendAttr(p, ctaProtoDstPort, binary.BigEndian.AppendUint16(nil, dport))
	return appendNested(b, typ, appendNested(appendNested(nil, ctaTupleIP, ip), ctaTupleProto, p))
}

const nlaFNested = 0x8000

func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(4+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func appendNested(b []byte, typ uint16, children []byte) []byte {
	return appendAttr(b, typ|nlaFNested, children)
}
