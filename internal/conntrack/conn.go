package conntrack

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ErrOverflow means the kernel dropped events because the socket's receive
// buffer was full (ENOBUFS): some DESTROY events are lost and the caller should
// resync by dump.
var ErrOverflow = errors.New("conntrack event socket overflowed (ENOBUFS): events lost")

// Options configure a Conn.
type Options struct {
	// NetNS is a network namespace file descriptor; 0 means the caller's.
	NetNS int
	// ReadBuffer is the event socket's receive buffer in bytes; 0 keeps the
	// system default (net.core.rmem_default). Larger buffers make ENOBUFS rarer.
	ReadBuffer int
}

// Conn dumps the conntrack table and listens for DESTROY events of one network
// namespace. Dump and Listen may run concurrently; each uses its own socket.
type Conn struct {
	opts Options

	mu   sync.Mutex
	dump *netfilter.Conn
}

// Dial opens the dump socket; event sockets are opened by Listen.
func Dial(opts Options) (*Conn, error) {
	c, err := netfilter.Dial(&netlink.Config{NetNS: opts.NetNS})
	if err != nil {
		return nil, fmt.Errorf("dial ctnetlink: %w", err)
	}
	return &Conn{opts: opts, dump: c}, nil
}

// Close closes the dump socket. Listen ends with its context.
func (c *Conn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dump.Close()
}

// Dump reads every entry of the table (IPv4 and IPv6) with its counters and
// calls fn for each; fn must not keep the pointer. Counters are never zeroed:
// zero-on-dump would reset them for every other reader on the node. Entries
// are decoded by parseFlow, which reads only what Flow holds and allocates
// nothing per entry.
func (c *Conn) Dump(ctx context.Context, fn func(*Flow)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: msgCTGet,
		Family:      netfilter.ProtoUnspec, // IPv4 and IPv6
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return err
	}
	c.mu.Lock()
	msgs, err := c.dump.Query(req)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dump conntrack table: %w", err)
	}
	var f Flow
	for i := range msgs {
		if err := parseFlow(msgs[i].Data, &f); err != nil {
			return fmt.Errorf("dump conntrack table: entry %d: %w", i, err)
		}
		fn(&f)
	}
	return nil
}

// ListenDestroy joins the DESTROY multicast group and calls fn for every
// destroyed entry (with its final counters when accounting is on) until ctx ends
// (it returns ctx.Err()) or the socket fails. On ENOBUFS it returns an error
// wrapping ErrOverflow; the caller resyncs by dump and listens again. ready, if
// not nil, is called once the group is joined: events from then on are seen.
func (c *Conn) ListenDestroy(ctx context.Context, ready func(), fn func(EventType, *Flow)) error {
	nf, err := netfilter.Dial(&netlink.Config{NetNS: c.opts.NetNS})
	if err != nil {
		return fmt.Errorf("dial ctnetlink events: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = nf.Close() })
	defer func() {
		if stop() {
			_ = nf.Close()
		}
	}()
	if c.opts.ReadBuffer > 0 {
		if err := nf.SetReadBuffer(c.opts.ReadBuffer); err != nil {
			return fmt.Errorf("set event socket read buffer: %w", err)
		}
	}
	if err := nf.JoinGroups([]netfilter.NetlinkGroup{netfilter.GroupCTDestroy}); err != nil {
		return fmt.Errorf("join conntrack destroy group: %w", err)
	}
	if ready != nil {
		ready()
	}
	for {
		msgs, err := nf.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, unix.ENOBUFS) {
				return fmt.Errorf("%w: %w", ErrOverflow, err)
			}
			return fmt.Errorf("receive conntrack events: %w", err)
		}
		for _, m := range msgs {
			typ, f, err := decodeMessage(m)
			if err != nil {
				// One message the library does not understand (a newer kernel's
				// attribute) must not stop accounting: skip it.
				continue
			}
			fn(typ, &f)
		}
	}
}
