package wggateway

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/trellis-garden/trellis/internal/udpbatch"
	"github.com/trellis-garden/trellis/internal/wgproto"
)

// checkSplit cuts ms with items of capacity room and checks the invariants of the
// splitter: the items cover every message's bytes exactly once and in order; an
// item with Seg is a run of whole segments of its buffer, every one a valid
// transport message with the same receiver index; runs are as long as possible
// (an item boundary inside a buffer falls between two segments that could not be
// in one run, unless items ran out there); handshake messages are single items.
func checkSplit(t *testing.T, ms []udpbatch.Message, room int) {
	t.Helper()
	var sp splitter
	items := make([]udpbatch.Message, 0, room)
	var got []udpbatch.Message
	var fullAt []int // item counts after which fill stopped for room
	for rounds := 0; !sp.done(len(ms)); rounds++ {
		if rounds > 1<<20 {
			t.Fatal("splitter makes no progress")
		}
		items = sp.fill(ms, items[:0])
		if len(items) == 0 {
			t.Fatal("fill returned nothing before the end")
		}
		for _, it := range items {
			got = append(got, udpbatch.Message{Buf: bytes.Clone(it.Buf[:it.N]), N: it.N, Addr: it.Addr, Seg: it.Seg})
		}
		fullAt = append(fullAt, len(got))
	}
	k := 0
	for mi := range ms {
		m := &ms[mi]
		n := min(max(m.N, 0), len(m.Buf))
		coalesced := m.Seg > 0 && m.Seg < n
		off := 0
		for first := true; first || off < n; first = false {
			if k >= len(got) {
				t.Fatalf("message %d: items end at byte %d of %d", mi, off, n)
			}
			it := got[k]
			if it.Addr != m.Addr {
				t.Fatalf("item %d: address %v, want %v", k, it.Addr, m.Addr)
			}
			if !bytes.Equal(it.Buf, m.Buf[off:off+it.N]) {
				t.Fatalf("item %d: bytes differ from message %d at %d", k, mi, off)
			}
			if !coalesced {
				if it.N != n || it.Seg != 0 {
					t.Fatalf("item %d: single datagram of %d bytes became N=%d Seg=%d", k, n, it.N, it.Seg)
				}
			} else {
				if off%m.Seg != 0 || (it.N%m.Seg != 0 && off+it.N != n) {
					t.Fatalf("item %d: [%d,%d) not on segment boundaries of %d", k, off, off+it.N, m.Seg)
				}
				segs := (it.N + m.Seg - 1) / m.Seg
				if segs > 1 && it.Seg != m.Seg || segs == 1 && it.Seg != 0 {
					t.Fatalf("item %d: %d segments with Seg %d (buffer's %d)", k, segs, it.Seg, m.Seg)
				}
				if segs > 1 {
					want, _ := transportReceiver(it.Buf[:m.Seg])
					for s := 0; s < segs; s++ {
						r, ok := transportReceiver(it.Buf[s*m.Seg : min((s+1)*m.Seg, it.N)])
						if !ok || r != want {
							t.Fatalf("item %d: segment %d is not a transport message for receiver %d", k, s, want)
						}
					}
				}
				if typ, ok := wgproto.Type(it.Buf[:min(m.Seg, it.N)]); ok && typ != wgproto.MessageTransport && segs != 1 {
					t.Fatalf("item %d: a %v rides in a run", k, typ)
				}
				// Maximal: the next segment of the buffer could not join.
				if end := off + it.N; end < n && !contains(fullAt, k+1) {
					last := it.Buf[it.N-min(m.Seg, it.N):]
					r1, ok1 := transportReceiver(last)
					r2, ok2 := transportReceiver(m.Buf[end:min(end+m.Seg, n)])
					if ok1 && ok2 && r1 == r2 {
						t.Fatalf("item %d ends at %d although the next segment continues its run", k, end)
					}
				}
			}
			off += it.N
			k++
		}
	}
	if k != len(got) {
		t.Fatalf("%d items for %d", len(got), k)
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// transportSeg returns a transport message of size bytes for receiver recv.
func transportSeg(recv uint32, size int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, size)
	copy(b, []byte{4, 0, 0, 0})
	binary.LittleEndian.PutUint32(b[4:], recv)
	return b
}

func TestSplitterRekeyAndHandshakes(t *testing.T) {
	src := netip.MustParseAddrPort("192.0.2.1:1000")
	var buf []byte
	for i := range 3 {
		buf = append(buf, transportSeg(7, 148, byte(i))...)
	}
	buf = append(buf, initiation(key(0), 9)...) // 148 bytes too
	for i := range 2 {
		buf = append(buf, transportSeg(7, 148, byte(10+i))...)
	}
	for i := range 2 {
		buf = append(buf, transportSeg(8, 148, byte(20+i))...) // rekeyed
	}
	buf = append(buf, transportSeg(8, 60, 30)...) // the shorter last one
	ms := []udpbatch.Message{{Buf: buf, N: len(buf), Addr: src, Seg: 148}}
	var sp splitter
	items := sp.fill(ms, make([]udpbatch.Message, 0, 16))
	type shape struct{ n, seg int }
	want := []shape{{3 * 148, 148}, {148, 0}, {2 * 148, 148}, {2*148 + 60, 148}}
	if len(items) != len(want) || !sp.done(1) {
		t.Fatalf("%d items, done %v; want %d", len(items), sp.done(1), len(want))
	}
	for i, w := range want {
		if items[i].N != w.n || items[i].Seg != w.seg {
			t.Errorf("item %d: N=%d Seg=%d, want N=%d Seg=%d", i, items[i].N, items[i].Seg, w.n, w.seg)
		}
	}
	if typ, _ := wgproto.Type(items[1].Buf[:items[1].N]); typ != wgproto.MessageInitiation {
		t.Errorf("item 1 is %v, want the initiation on its own", typ)
	}
	checkSplit(t, ms, 16)
	checkSplit(t, ms, 1)
}

// FuzzSplitter feeds the GRO-buffer splitter arbitrary buffers, segment sizes and
// item capacities (including ones that stop it mid-buffer) and checks its
// invariants; a fuzzed buffer is also seeded with runs of transport messages so
// the interesting cases are near.
func FuzzSplitter(f *testing.F) {
	f.Add([]byte{4, 0, 0, 0, 1, 0, 0, 0}, uint16(32), uint8(4), uint8(3))
	f.Add([]byte{1, 0, 0, 0}, uint16(148), uint8(2), uint8(1))
	f.Add([]byte{}, uint16(0), uint8(0), uint8(0))
	f.Add([]byte{4, 0, 0, 0, 9, 9, 9, 9, 2, 0, 0, 0}, uint16(40), uint8(9), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, seg uint16, runs uint8, room uint8) {
		// Build a buffer: runs of transport segments with receivers taken from
		// data, with data's bytes spliced in as arbitrary segments.
		s := int(seg%300) + 1
		var buf []byte
		for i := 0; i < int(runs%8); i++ {
			var recv uint32
			if i < len(data) {
				recv = uint32(data[i] % 3)
			}
			for j := 0; j < 1+i%3; j++ {
				if s >= 32 {
					buf = append(buf, transportSeg(recv, s, byte(j))...)
				}
			}
			if i < len(data) && data[i]%5 == 0 && len(data) >= s {
				buf = append(buf, data[:s]...) // an arbitrary segment
			}
		}
		buf = append(buf, data...)
		ms := []udpbatch.Message{
			{Buf: buf, N: len(buf), Addr: netip.MustParseAddrPort("192.0.2.1:1"), Seg: s},
			{Buf: data, N: len(data), Addr: netip.MustParseAddrPort("[2001:db8::1]:2")},
			{Buf: buf, N: len(buf) / 2, Addr: netip.MustParseAddrPort("192.0.2.2:3"), Seg: s / 2},
		}
		checkSplit(t, ms, int(room%17)+1)
	})
}
