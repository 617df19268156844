//go:build linux

package udpbatch

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segmented returns n datagrams of size bytes each (the last last bytes long
// if last > 0), every one distinct, and their concatenation.
func segmented(tag string, n, size, last int) ([][]byte, []byte) {
	var dgs [][]byte
	var all []byte
	for i := range n {
		l := size
		if i == n-1 && last > 0 {
			l = last
		}
		d := []byte(payload(tag, i, l))
		dgs = append(dgs, d)
		all = append(all, d...)
	}
	return dgs, all
}

// readDatagrams reads until want datagrams arrived and returns them split
// into datagrams, and the Seg of every message read.
func readDatagrams(t *testing.T, c *Conn, want int) ([][]byte, []int) {
	t.Helper()
	if err := c.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.UDPConn().SetReadDeadline(time.Time{}) }()
	ms := NewMessages(8, MaxDatagram)
	var got [][]byte
	var segs []int
	for len(got) < want {
		n, err := c.ReadBatch(ms)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), want, err)
		}
		for i := range ms[:n] {
			m := &ms[i]
			if m.Truncated {
				t.Fatalf("message %d truncated", i)
			}
			segs = append(segs, m.Seg)
			for j := range m.Datagrams() {
				got = append(got, bytes.Clone(m.Segment(j)))
			}
		}
	}
	return got, segs
}

func enable(t *testing.T, c *Conn, gro, gso bool) {
	t.Helper()
	if o, err := c.EnableOffload(gro, gso); err != nil || o.GRO != gro || o.GSO != gso {
		t.Skipf("UDP offload unavailable here: %+v, %v", o, err)
	}
}

func sameDatagrams(t *testing.T, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d datagrams, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("datagram %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// TestOffloadRoundTrip sends segmented messages (with GSO and without) to a
// receiver with GRO and without, over IPv4 and IPv6, and checks that every
// datagram arrives once, in order, intact, and how it was coalesced.
func TestOffloadRoundTrip(t *testing.T) {
	for _, fam := range []struct{ net, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		for _, gso := range []bool{true, false} {
			for _, gro := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/gso=%v/gro=%v", fam.net, gso, gro), func(t *testing.T) {
					if fam.net == "udp6" {
						needIPv6(t)
					}
					src := listenConn(t, fam.net, fam.addr, 8)
					dst := listenConn(t, fam.net, fam.addr, 8)
					if err := SetBuffers(dst.UDPConn(), 8<<20); err != nil {
						t.Fatal(err)
					}
					enable(t, src, false, gso)
					enable(t, dst, gro, false)
					// 11 datagrams of 100 bytes, the last 37; then 150 of
					// 1400 (more than MaxSegments); then a single one.
					d1, b1 := segmented("a", 11, 100, 37)
					d2, b2 := segmented("b", 150, 1400, 0)
					d3, b3 := segmented("c", 1, 60, 0)
					to := local(dst, "")
					ms := []Message{
						{Buf: b1, N: len(b1), Addr: to, Seg: 100},
						{Buf: b2, N: len(b2), Addr: to, Seg: 1400},
						{Buf: b3, N: len(b3), Addr: to},
					}
					n, err := src.WriteBatch(ms)
					if err != nil || n != 162 {
						t.Fatalf("WriteBatch = %d, %v; want 162 datagrams", n, err)
					}
					got, segs := readDatagrams(t, dst, 162)
					sameDatagrams(t, got, append(append(d1, d2...), d3...))
					expectNothing(t, dst)
					ss, ds := src.Stats(), dst.Stats()
					if gso {
						// 1 + 4 segmented messages: 46 segments of 1400
						// bytes fill the 64 KiB a message may carry.
						if ss.GSOMessages != 5 || ss.GSODatagrams != 161 {
							t.Errorf("sender stats %+v, want 5 GSO messages of 161 datagrams", ss)
						}
					} else if ss.GSOMessages != 0 {
						t.Errorf("sender without GSO: stats %+v", ss)
					}
					if gso && gro {
						if fmt.Sprint(segs) != "[100 1400 1400 1400 1400 0]" {
							t.Errorf("message segment sizes %v, want [100 1400 1400 1400 1400 0]", segs)
						}
						if ds.GROBuffers != 5 || ds.GRODatagrams != 161 {
							t.Errorf("receiver stats %+v, want 5 GRO buffers of 161 datagrams", ds)
						}
					} else {
						for _, s := range segs {
							if s != 0 {
								t.Fatalf("coalesced message (Seg %d) without GSO and GRO on both ends", s)
							}
						}
					}
				})
			}
		}
	}
}

// TestGatherSingles: with GSO on, consecutive single datagrams to one
// destination with one size (the last may be shorter) leave as one
// UDP_SEGMENT message; a change of destination or size starts another.
func TestGatherSingles(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 64)
	a := listenConn(t, "udp4", "127.0.0.1:0", 8)
	b := listenConn(t, "udp4", "127.0.0.1:0", 8)
	enable(t, src, false, true)
	enable(t, a, true, false)
	enable(t, b, true, false)
	var ms []Message
	var wantA, wantB [][]byte
	add := func(to *Conn, tag string, i, size int) {
		d := []byte(payload(tag, i, size))
		ms = append(ms, Message{Buf: d, N: len(d), Addr: local(to, "")})
		if to == a {
			wantA = append(wantA, d)
		} else {
			wantB = append(wantB, d)
		}
	}
	for i := range 10 {
		add(a, "a", i, 500)
	}
	add(a, "a", 10, 200) // shorter: ends the run
	add(a, "a", 11, 500) // starts a new one...
	add(b, "b", 0, 500)  // ...which a new destination ends
	add(b, "b", 1, 500)
	add(b, "b", 2, 700) // larger: a new run
	ms = append(ms, Message{Buf: nil, N: 0, Addr: local(b, "")}, Message{Buf: nil, N: 0, Addr: local(b, "")})
	wantB = append(wantB, []byte{}, []byte{}) // empty datagrams go out one by one
	if n, err := src.WriteBatch(ms); n != len(ms) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(ms))
	}
	gotA, segsA := readDatagrams(t, a, len(wantA))
	gotB, segsB := readDatagrams(t, b, len(wantB))
	sameDatagrams(t, gotA, wantA)
	sameDatagrams(t, gotB, wantB)
	if fmt.Sprint(segsA) != "[500 0]" || fmt.Sprint(segsB) != "[500 0 0 0]" {
		t.Errorf("segment sizes %v and %v, want [500 0] and [500 0 0 0] (a run, then singles)", segsA, segsB)
	}
	if st := src.Stats(); st.GSOMessages != 2 || st.GSODatagrams != 13 {
		t.Errorf("stats %+v: want 2 gathered messages of 13 datagrams", st)
	}
}

// TestOffloadZeroAllocs: segmented writes and coalesced reads allocate
// nothing.
func TestOffloadZeroAllocs(t *testing.T) {
	src := listenConn(t, "udp4", "127.0.0.1:0", 8)
	dst := listenConn(t, "udp4", "127.0.0.1:0", 8)
	if err := SetBuffers(dst.UDPConn(), 8<<20); err != nil {
		t.Fatal(err)
	}
	enable(t, src, false, true)
	enable(t, dst, true, false)
	_, b := segmented("z", 20, 1400, 0)
	out := []Message{{Buf: b, N: len(b), Addr: local(dst, ""), Seg: 1400}}
	in := NewMessages(8, MaxDatagram)
	if err := dst.UDPConn().SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	a := testing.AllocsPerRun(100, func() {
		if n, err := src.WriteBatch(out); n != 20 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		for got := 0; got < 20; {
			n, err := dst.ReadBatch(in)
			if err != nil {
				t.Fatal(err)
			}
			for i := range in[:n] {
				got += in[i].Datagrams()
			}
		}
	})
	if a != 0 {
		t.Errorf("%v allocs per segmented write and coalesced read", a)
	}
}

// TestGSORefusedIsResent: in a network namespace whose loopback has a
// 1500-byte MTU, segments of 1480 bytes do not fit (the kernel refuses the
// UDP_SEGMENT message with EINVAL); WriteBatch sends them again as separate
// (fragmented) datagrams, keeps GSO on, and later fitting messages still go
// out segmented.
func TestGSORefusedIsResent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	type result struct {
		got              [][]byte
		want             [][]byte
		stats            Stats
		offload          Offload
		n1, n2, n3       int
		err1, err2, err3 error
		setupSkipped     error
	}
	done := make(chan result, 1)
	go func() {
		// This thread enters a new network namespace and is never
		// returned to the runtime's pool (no UnlockOSThread).
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			r.setupSkipped = err
			return
		}
		if err := loopbackUp(1500); err != nil {
			r.setupSkipped = err
			return
		}
		src, err1 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		dst, err2 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err := errors.Join(err1, err2); err != nil {
			r.setupSkipped = err
			return
		}
		defer src.Close()
		defer dst.Close()
		s, _ := New(src, 8)
		d, _ := New(dst, 8)
		if o, err := s.EnableOffload(false, true); err != nil || !o.GSO {
			r.setupSkipped = fmt.Errorf("no GSO: %v", err)
			return
		}
		to := dst.LocalAddr().(*net.UDPAddr).AddrPort()
		big, bb := segmented("big", 5, 1480, 0)
		small, sb := segmented("small", 5, 1000, 0)
		singles, _ := segmented("single", 4, 1480, 0)
		r.n1, r.err1 = s.WriteBatch([]Message{{Buf: bb, N: len(bb), Addr: to, Seg: 1480}})
		r.n2, r.err2 = s.WriteBatch([]Message{{Buf: sb, N: len(sb), Addr: to, Seg: 1000}})
		var out []Message
		for _, d := range singles {
			out = append(out, Message{Buf: d, N: len(d), Addr: to})
		}
		r.n3, r.err3 = s.WriteBatch(out) // gathered, refused, resent one by one
		r.want = append(append(big, small...), singles...)
		_ = dst.SetReadDeadline(time.Now().Add(waitTimeout))
		ms := NewMessages(8, MaxDatagram)
		for len(r.got) < 14 {
			n, err := d.ReadBatch(ms)
			if err != nil {
				break
			}
			for i := range ms[:n] {
				for j := range ms[i].Datagrams() {
					r.got = append(r.got, bytes.Clone(ms[i].Segment(j)))
				}
			}
		}
		r.stats, r.offload = s.Stats(), s.Offload()
	}()
	r := <-done
	if r.setupSkipped != nil {
		t.Skipf("network namespace setup: %v", r.setupSkipped)
	}
	if r.n1 != 5 || r.err1 != nil || r.n2 != 5 || r.err2 != nil || r.n3 != 4 || r.err3 != nil {
		t.Fatalf("WriteBatch = %d, %v; %d, %v; %d, %v; want 5, 5, 4 datagrams", r.n1, r.err1, r.n2, r.err2, r.n3, r.err3)
	}
	sameDatagrams(t, r.got, r.want)
	if r.stats.GSOResent != 2 || r.stats.GSOMessages != 1 || r.stats.GSODatagrams != 5 || !r.offload.GSO {
		t.Errorf("stats %+v, offload %+v: want 2 messages resent, the second sent segmented, GSO still on", r.stats, r.offload)
	}
}

// loopbackUp sets the MTU of this thread's network namespace's loopback and
// brings it up.
func loopbackUp(mtu uint32) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	ifr.SetUint32(mtu)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFMTU, ifr); err != nil {
		return fmt.Errorf("SIOCSIFMTU: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// TestGROSizeParser: groSize finds the UDP_GRO message among others and
// survives malformed control data.
func TestGROSizeParser(t *testing.T) {
	msg := func(level, typ int32, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafePointer(b))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	gro := msg(unix.SOL_UDP, unix.UDP_GRO, []byte{0x78, 0x05, 0, 0})
	other := msg(unix.SOL_IP, unix.IP_TOS, []byte{1, 2, 3, 4})
	for name, tc := range map[string]struct {
		ctrl []byte
		want int
	}{
		"gro":            {gro, 1400},
		"after another":  {append(bytes.Clone(other), gro...), 1400},
		"none":           {other, 0},
		"empty":          {nil, 0},
		"short header":   {gro[:8], 0},
		"length too big": {append([]byte{0xff, 0xff, 0, 0, 0, 0, 0, 0}, gro[8:]...), 0},
		"zero length":    {make([]byte, 32), 0},
	} {
		if got := groSize(tc.ctrl); got != tc.want {
			t.Errorf("%s: groSize = %d, want %d", name, got, tc.want)
		}
	}
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
