package conntrack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/mdlayher/netlink"
	tmct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
)

// eventMessage builds a raw ctnetlink event as the kernel multicasts it.
func eventMessage(t testing.TB, msgType netfilter.MessageType, id uint32, orig, reply [2]netip.Addr, sport, dport uint16, ob, op, rb, rp uint64) []byte {
	t.Helper()
	be16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	be32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	be64 := func(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
	tuple := func(typ uint16, src, dst netip.Addr, sp, dp uint16) netfilter.Attribute {
		s, d := src.As4(), dst.As4()
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: s[:]}, {Type: 2, Data: d[:]}}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: []byte{6}}, {Type: 2, Data: be16(sp)}, {Type: 3, Data: be16(dp)}}},
		}}
	}
	counters := func(typ uint16, b, p uint64) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: be64(p)}, {Type: 2, Data: be64(b)}}}
	}
	attrs := []netfilter.Attribute{
		tuple(1, orig[0], orig[1], sport, dport),
		tuple(2, reply[0], reply[1], dport, sport),
		{Type: 3, Data: be32(0x0e)}, // status
		counters(9, ob, op),
		counters(10, rb, rp),
		{Type: 12, Data: be32(id)},
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: msgType, Family: netfilter.ProtoIPv4}, attrs)
	if err != nil {
		t.Fatal(err)
	}
	m.Header.Length = uint32(16 + len(m.Data))
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	podA    = netip.MustParseAddr("10.1.0.5")
	cluster = netip.MustParseAddr("10.96.0.10")
	podB    = netip.MustParseAddr("10.2.0.7")
	nodeA   = netip.MustParseAddr("192.168.0.1")
)

// TestDecodeEvent maps a DNAT'd Service flow: the responder is the reply tuple's
// source (the backend), the orig counters are what the initiator sent.
func TestDecodeEvent(t *testing.T) {
	const ipctnlMsgCtDelete = 2
	b := eventMessage(t, ipctnlMsgCtDelete, 42, [2]netip.Addr{podA, cluster}, [2]netip.Addr{podB, podA}, 40000, 80, 1500, 10, 9000, 8)
	typ, f, err := DecodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Flow{ID: 42, Proto: 6, OrigSrc: podA, OrigDst: cluster, ReplySrc: podB, ReplyDst: podA, OrigSrcPort: 40000, OrigDstPort: 80,
		OrigBytes: 1500, OrigPackets: 10, ReplyBytes: 9000, ReplyPackets: 8}
	if typ != EventDestroy || f != want {
		t.Fatalf("got %v %+v\nwant destroy %+v", typ, f, want)
	}
	if f.Initiator() != podA || f.Responder() != podB {
		t.Fatalf("initiator %s responder %s", f.Initiator(), f.Responder())
	}
	if _, _, err := DecodeEvent(b[:10]); err == nil {
		t.Fatal("truncated message decoded")
	}
}

// FuzzDecodeEvent feeds arbitrary bytes to the event decoder, as a hostile or
// newer kernel could: it must never panic, and a decoded flow maps consistently.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(eventMessage(f, 2, 1, [2]netip.Addr{podA, cluster}, [2]netip.Addr{podB, podA}, 1, 2, 3, 4, 5, 6))
	f.Add(eventMessage(f, 0, 7, [2]netip.Addr{nodeA, podB}, [2]netip.Addr{podB, nodeA}, 9, 10, 0, 0, 0, 0))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, fl, err := DecodeEvent(b)
		if err != nil {
			return
		}
		_ = fl.String()
		if typ > EventDestroy {
			t.Fatalf("event type %d", typ)
		}
		if fl.OrigSrc.Is4In6() || fl.ReplySrc.Is4In6() {
			t.Fatal("addresses not unmapped")
		}
	})
}

// FuzzParseFlowMatchesLibrary holds the tracer's own zero-allocation decoder to
// the library's: whatever message github.com/ti-mo/conntrack decodes as a flow
// event, parseFlow decodes too, to the same Flow and event type. (parseFlow
// may accept more, e.g. 32-bit counters; it never panics on anything.)
func FuzzParseFlowMatchesLibrary(f *testing.F) {
	f.Add(eventMessage(f, 2, 1, [2]netip.Addr{podA, cluster}, [2]netip.Addr{podB, podA}, 1, 2, 3, 4, 5, 6))
	f.Add(eventMessage(f, 0, 7, [2]netip.Addr{nodeA, podB}, [2]netip.Addr{podB, nodeA}, 9, 10, 0, 0, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m netlink.Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		typ, got, err := decodeMessage(m)
		var ev tmct.Event
		if ev.Unmarshal(m) != nil || ev.Flow == nil {
			return
		}
		var want Flow
		fromKernel(ev.Flow, &want)
		if err != nil {
			t.Fatalf("library decodes %+v, parseFlow fails: %v", want, err)
		}
		if got != want {
			t.Fatalf("parseFlow %+v\nlibrary   %+v", got, want)
		}
		wantType := map[uint8]EventType{1: EventNew, 2: EventUpdate, 3: EventDestroy}[uint8(ev.Type)]
		if typ != wantType {
			t.Fatalf("type %v, library %v", typ, ev.Type)
		}
	})
}

// fromKernel maps the library's flow to a Flow (the reference the fuzz test
// holds parseFlow to).
func fromKernel(k *tmct.Flow, f *Flow) {
	*f = Flow{
		ID:           k.ID,
		Zone:         k.Zone,
		Proto:        k.TupleOrig.Proto.Protocol,
		OrigSrc:      k.TupleOrig.IP.SourceAddress.Unmap(),
		OrigDst:      k.TupleOrig.IP.DestinationAddress.Unmap(),
		ReplySrc:     k.TupleReply.IP.SourceAddress.Unmap(),
		ReplyDst:     k.TupleReply.IP.DestinationAddress.Unmap(),
		OrigSrcPort:  k.TupleOrig.Proto.SourcePort,
		OrigDstPort:  k.TupleOrig.Proto.DestinationPort,
		OrigBytes:    k.CountersOrig.Bytes,
		OrigPackets:  k.CountersOrig.Packets,
		ReplyBytes:   k.CountersReply.Bytes,
		ReplyPackets: k.CountersReply.Packets,
	}
}

// FuzzDatagram feeds arbitrary datagrams to what the event listener and the
// dump do with each one they read from the kernel: split it into netlink
// messages and decode every ctnetlink message. It must never panic nor loop,
// and every split must consume input.
func FuzzDatagram(f *testing.F) {
	msg := eventMessage(f, 2, 42, [2]netip.Addr{podA, cluster}, [2]netip.Addr{podB, podA}, 40000, 80, 1500, 10, 9000, 8)
	f.Add(msg)
	f.Add(append(append([]byte(nil), msg...), msg...))
	f.Add(msg[:20])
	f.Add([]byte{16, 0, 0, 0, 3, 0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var fl Flow
		for len(b) > 0 {
			m, rest, err := nextMsg(b)
			if err != nil {
				return
			}
			if len(rest) >= len(b) {
				t.Fatalf("no progress: %d bytes left of %d", len(rest), len(b))
			}
			b = rest
			if _, ok := eventType(m); ok {
				_ = parseFlow(m.data, &fl)
			}
			if m.typ == nlmsgError || m.typ == nlmsgDone {
				_ = errnoOf(m.data)
			}
		}
	})
}
