// Package conntrack reads the Linux connection-tracking table through ctnetlink:
// full dumps (with per-flow counters) and DESTROY events, plus the
// nf_conntrack_acct switch. It speaks netfilter netlink through
// github.com/ti-mo/netfilter and decodes entries itself into a compact Flow,
// reading only the attributes Flow holds (github.com/ti-mo/conntrack is the
// reference its fuzz test compares against). It knows nothing about any daemon.
package conntrack

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
)

// Flow is one connection-tracking entry, reduced to what flow accounting needs.
//
// The original tuple is the direction of the packet that created the entry: its
// source is the initiator as it sent the packet (before SNAT). The reply tuple is
// what the responder's answer looks like: its source is the real responder (after
// DNAT, e.g. a Service's backend pod). Orig counters are what the initiator sent,
// reply counters what the responder sent; both count IP-layer bytes (headers
// included) and are zero unless nf_conntrack_acct was on when the entry was created.
type Flow struct {
	// ID is the kernel's conntrack ID; with Zone it names an entry while it lives.
	ID   uint32
	Zone uint16
	// Proto is the IP protocol number (6 TCP, 17 UDP, 1 ICMP, ...).
	Proto uint8

	OrigSrc, OrigDst   netip.Addr
	ReplySrc, ReplyDst netip.Addr
	OrigSrcPort        uint16
	OrigDstPort        uint16

	OrigBytes, OrigPackets   uint64
	ReplyBytes, ReplyPackets uint64
}

// Initiator is the endpoint that opened the flow, as it sent (before SNAT).
func (f *Flow) Initiator() netip.Addr { return f.OrigSrc }

// Responder is the endpoint that answers (after DNAT): the reply tuple's source.
func (f *Flow) Responder() netip.Addr { return f.ReplySrc }

func (f *Flow) String() string {
	return fmt.Sprintf("id=%d zone=%d proto=%d %s:%d->%s:%d reply %s->%s orig=%dB/%dp reply=%dB/%dp",
		f.ID, f.Zone, f.Proto, f.OrigSrc, f.OrigSrcPort, f.OrigDst, f.OrigDstPort, f.ReplySrc, f.ReplyDst,
		f.OrigBytes, f.OrigPackets, f.ReplyBytes, f.ReplyPackets)
}

// EventType is the kind of a ctnetlink event.
type EventType uint8

const (
	EventOther EventType = iota
	EventNew
	EventUpdate
	EventDestroy
)

// DecodeEvent parses one raw ctnetlink event message (a netlink header followed
// by the nfgenmsg and attributes, as the kernel multicasts it) into a Flow. It is
// what the event listener does with every message from the kernel; exported for
// tests and tools that replay captured messages.
func DecodeEvent(b []byte) (EventType, Flow, error) {
	var m netlink.Message
	if err := m.UnmarshalBinary(b); err != nil {
		return EventOther, Flow{}, fmt.Errorf("netlink message: %w", err)
	}
	return decodeMessage(m)
}

func decodeMessage(m netlink.Message) (EventType, Flow, error) {
	var f Flow
	if m.Header.Type>>8 != subsysCTNetlink {
		return EventOther, f, fmt.Errorf("not a ctnetlink message: type %#x", m.Header.Type)
	}
	if err := parseFlow(m.Data, &f); err != nil {
		return EventOther, f, fmt.Errorf("ctnetlink event: %w", err)
	}
	switch m.Header.Type & 0xff {
	case msgCTNew:
		if m.Header.Flags&(netlink.Create|netlink.Excl) != 0 {
			return EventNew, f, nil
		}
		return EventUpdate, f, nil
	case msgCTDelete:
		return EventDestroy, f, nil
	}
	return EventOther, f, nil
}

// ctnetlink message types (linux/netfilter/nfnetlink_conntrack.h).
const (
	subsysCTNetlink = 1 // NFNL_SUBSYS_CTNETLINK
	msgCTNew        = 0 // IPCTNL_MSG_CT_NEW: dump replies, NEW and UPDATE events
	msgCTGet        = 1 // IPCTNL_MSG_CT_GET
	msgCTDelete     = 2 // IPCTNL_MSG_CT_DELETE: DESTROY events
)
