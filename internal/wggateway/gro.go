package wggateway

import (
	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

// splitter cuts the messages of one read into the items the gateway routes one
// by one. A single datagram is one item. A buffer the kernel coalesced (UDP GRO:
// datagrams of one client address, all Seg bytes long but the last) is cut into
// runs: consecutive transport messages with the same receiver index make one item
// that keeps Seg (one routing decision, and one UDP_SEGMENT send, for the run);
// every other datagram - a handshake message, a cookie reply, anything malformed
// - is an item of its own, so handshake messages never ride in a coalesced
// buffer. A client's batch that straddles a rekey (two receiver indexes in one
// buffer) becomes two runs. Items share the read buffers; nothing is copied.
//
// fill is resumable: it stops when items is full and continues from there on the
// next call, so a bounded items slice serves buffers of any number of segments.
type splitter struct {
	msg int // next message
	off int // next byte of ms[msg] (inside a coalesced buffer)
}

// done reports whether the n messages of the read have been cut.
func (sp *splitter) done(n int) bool { return sp.msg >= n }

// fill appends the items of ms from where the last call stopped to items, up to
// cap(items), and returns items.
func (sp *splitter) fill(ms []udpbatch.Message, items []udpbatch.Message) []udpbatch.Message {
	for sp.msg < len(ms) && len(items) < cap(items) {
		m := &ms[sp.msg]
		n := min(max(m.N, 0), len(m.Buf))
		if m.Seg <= 0 || m.Seg >= n {
			items = append(items, udpbatch.Message{Buf: m.Buf[:n:n], N: n, Addr: m.Addr})
			sp.msg, sp.off = sp.msg+1, 0
			continue
		}
		seg, start := m.Seg, sp.off
		end := min(start+seg, n)
		if recv, ok := transportReceiver(m.Buf[start:end]); ok {
			for end < n {
				next := min(end+seg, n)
				if r, ok := transportReceiver(m.Buf[end:next]); !ok || r != recv {
					break
				}
				end = next
			}
		}
		it := udpbatch.Message{Buf: m.Buf[start:end:end], N: end - start, Addr: m.Addr}
		if end-start > seg {
			it.Seg = seg
		}
		items = append(items, it)
		if end >= n {
			sp.msg, sp.off = sp.msg+1, 0
		} else {
			sp.off = end
		}
	}
	return items
}

// transportReceiver returns the receiver index of a valid transport message.
func transportReceiver(b []byte) (uint32, bool) {
	if t, ok := wgproto.Type(b); !ok || t != wgproto.MessageTransport {
		return 0, false
	}
	return wgproto.Receiver(b), true
}
