package conntrack

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// ctnetlink attribute types (linux/netfilter/nfnetlink_conntrack.h) that Flow
// carries; everything else is skipped.
const (
	ctaTupleOrig     = 1
	ctaTupleReply    = 2
	ctaCountersOrig  = 9
	ctaCountersReply = 10
	ctaID            = 12
	ctaZone          = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaProtoNum     = 1
	ctaProtoSrcPort = 2
	ctaProtoDstPort = 3

	ctaCountersPackets   = 1
	ctaCountersBytes     = 2
	ctaCounters32Packets = 3
	ctaCounters32Bytes   = 4

	nfHeaderLen = 4 // struct nfgenmsg
)

var errAttr = errors.New("malformed ctnetlink attribute")

// attrs walks a buffer of netlink attributes; next returns false at the end or
// on a malformed attribute (err is then set).
type attrs struct {
	b   []byte
	typ uint16
	val []byte
	err error
}

func (a *attrs) next() bool {
	if len(a.b) == 0 {
		return false
	}
	if len(a.b) < 4 {
		a.err = errAttr
		return false
	}
	l := int(binary.NativeEndian.Uint16(a.b))
	// Types are compared on their low 8 bits, as github.com/ti-mo/conntrack does
	// (every ctnetlink type fits; the flag bits are above them).
	a.typ = uint16(uint8(binary.NativeEndian.Uint16(a.b[2:])))
	switch {
	case l > len(a.b) || (l > 0 && l < 4):
		a.err = errAttr
		return false
	case l == 0:
		// An empty attribute without even its own header counted, as the
		// netlink library accepts it: skip the header.
		a.val, l = nil, 4
	default:
		a.val = a.b[4:l]
	}
	// Attributes are padded to 4 bytes; the last one may not be.
	l = min((l+3)&^3, len(a.b))
	a.b = a.b[l:]
	return true
}

// parseFlow decodes the payload of a ctnetlink flow message (nfgenmsg and
// attributes, as in a dump reply or an event) into f, reading only the
// attributes Flow has and allocating nothing. It is the dump's hot path: the
// library's decoder builds a full Flow with every attribute per entry.
func parseFlow(data []byte, f *Flow) error {
	*f = Flow{}
	if len(data) < nfHeaderLen {
		return errAttr
	}
	a := attrs{b: data[nfHeaderLen:]}
	for a.next() {
		var err error
		switch a.typ {
		case ctaTupleOrig:
			err = parseTuple(a.val, &f.OrigSrc, &f.OrigDst, &f.Proto, &f.OrigSrcPort, &f.OrigDstPort)
		case ctaTupleReply:
			var proto uint8
			var sp, dp uint16
			err = parseTuple(a.val, &f.ReplySrc, &f.ReplyDst, &proto, &sp, &dp)
		case ctaCountersOrig:
			err = parseCounters(a.val, &f.OrigBytes, &f.OrigPackets)
		case ctaCountersReply:
			err = parseCounters(a.val, &f.ReplyBytes, &f.ReplyPackets)
		case ctaID:
			if len(a.val) != 4 {
				return errAttr
			}
			f.ID = binary.BigEndian.Uint32(a.val)
		case ctaZone:
			if len(a.val) != 2 {
				return errAttr
			}
			f.Zone = binary.BigEndian.Uint16(a.val)
		}
		if err != nil {
			return err
		}
	}
	if a.err != nil {
		return a.err
	}
	return nil
}

func parseTuple(b []byte, src, dst *netip.Addr, proto *uint8, sport, dport *uint16) error {
	t := attrs{b: b}
	for t.next() {
		switch t.typ {
		case ctaTupleIP:
			ip := attrs{b: t.val}
			for ip.next() {
				addr, ok := netip.AddrFromSlice(ip.val)
				if !ok {
					return errAttr
				}
				switch ip.typ {
				case 1, 3: // CTA_IP_V4_SRC, CTA_IP_V6_SRC
					*src = addr.Unmap()
				case 2, 4: // CTA_IP_V4_DST, CTA_IP_V6_DST
					*dst = addr.Unmap()
				}
			}
			if ip.err != nil {
				return ip.err
			}
		case ctaTupleProto:
			p := attrs{b: t.val}
			for p.next() {
				switch p.typ {
				case ctaProtoNum:
					if len(p.val) != 1 {
						return errAttr
					}
					*proto = p.val[0]
				case ctaProtoSrcPort, ctaProtoDstPort:
					if len(p.val) != 2 {
						return errAttr
					}
					if p.typ == ctaProtoSrcPort {
						*sport = binary.BigEndian.Uint16(p.val)
					} else {
						*dport = binary.BigEndian.Uint16(p.val)
					}
				}
			}
			if p.err != nil {
				return p.err
			}
		}
	}
	return t.err
}

func parseCounters(b []byte, bytes, packets *uint64) error {
	c := attrs{b: b}
	for c.next() {
		switch c.typ {
		case ctaCountersPackets, ctaCountersBytes:
			if len(c.val) != 8 {
				return errAttr
			}
			v := binary.BigEndian.Uint64(c.val)
			if c.typ == ctaCountersBytes {
				*bytes = v
			} else {
				*packets = v
			}
		case ctaCounters32Packets, ctaCounters32Bytes:
			if len(c.val) != 4 {
				return errAttr
			}
			v := uint64(binary.BigEndian.Uint32(c.val))
			if c.typ == ctaCounters32Bytes {
				*bytes = v
			} else {
				*packets = v
			}
		}
	}
	return c.err
}
