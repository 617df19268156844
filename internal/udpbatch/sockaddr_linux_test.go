//go:build linux

package udpbatch

import (
	"net/netip"
	"strconv"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestSockaddr(t *testing.T) {
	tests := []struct {
		family  int
		in      string
		wantErr unix.Errno
		wantLen uint32
		out     string // decoded again; "" means same as in
	}{
		{unix.AF_INET, "1.2.3.4:51820", 0, unix.SizeofSockaddrInet4, ""},
		{unix.AF_INET, "[::ffff:1.2.3.4]:1", 0, unix.SizeofSockaddrInet4, "1.2.3.4:1"},
		{unix.AF_INET, "[2001:db8::1]:53", unix.EAFNOSUPPORT, 0, ""},
		{unix.AF_INET, "0.0.0.0:0", 0, unix.SizeofSockaddrInet4, ""},
		{unix.AF_INET6, "[2001:db8::1]:65535", 0, unix.SizeofSockaddrInet6, ""},
		{unix.AF_INET6, "1.2.3.4:80", 0, unix.SizeofSockaddrInet6, ""}, // v4-mapped on the wire, unmapped again
		{unix.AF_INET6, "[fe80::1%7]:80", 0, unix.SizeofSockaddrInet6, ""},
		{unix.AF_INET6, "[fe80::1%lo]:80", 0, unix.SizeofSockaddrInet6, "[fe80::1%1]:80"},
		{unix.AF_INET6, "[fe80::1%no-such-interface]:80", unix.EINVAL, 0, ""},
		{unix.AF_UNIX, "1.2.3.4:80", unix.EAFNOSUPPORT, 0, ""},
	}
	for _, tt := range tests {
		in := netip.MustParseAddrPort(tt.in)
		var sa unix.RawSockaddrAny
		n, e := encodeSockaddr(&sa, tt.family, in)
		if e != tt.wantErr || n != tt.wantLen {
			t.Errorf("encode(%d, %v) = %d, %v; want %d, %v", tt.family, in, n, e, tt.wantLen, tt.wantErr)
			continue
		}
		if e != 0 {
			continue
		}
		if tt.family == unix.AF_INET6 && in.Addr().Is4() {
			p := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sa))
			if !netip.AddrFrom16(p.Addr).Is4In6() {
				t.Errorf("encode(%v) on AF_INET6 is not v4-mapped: %v", in, netip.AddrFrom16(p.Addr))
			}
		}
		want := tt.out
		if want == "" {
			want = tt.in
		}
		var zc zoneCache
		if got := decodeSockaddr(&sa, n, &zc); got != netip.MustParseAddrPort(want) {
			t.Errorf("decode(encode(%v)) = %v, want %v", in, got, want)
		}
	}
	if _, e := encodeSockaddr(new(unix.RawSockaddrAny), unix.AF_INET, netip.AddrPort{}); e != unix.EDESTADDRREQ {
		t.Errorf("encode(zero) = %v", e)
	}
}

func TestDecodeSockaddrShortOrUnknown(t *testing.T) {
	var sa unix.RawSockaddrAny
	var zc zoneCache
	for _, tc := range []struct {
		family uint16
		n      uint32
	}{{unix.AF_INET, unix.SizeofSockaddrInet4 - 1}, {unix.AF_INET6, unix.SizeofSockaddrInet6 - 1}, {unix.AF_UNIX, 110}, {0, 0}} {
		sa.Addr.Family = tc.family
		if got := decodeSockaddr(&sa, tc.n, &zc); got.IsValid() {
			t.Errorf("decode(family %d, len %d) = %v", tc.family, tc.n, got)
		}
	}
}

// TestDecodeZoneNoAllocs: a link-local peer does not cost an allocation per
// datagram once its zone was seen.
func TestDecodeZoneNoAllocs(t *testing.T) {
	var sa unix.RawSockaddrAny
	n, e := encodeSockaddr(&sa, unix.AF_INET6, netip.MustParseAddrPort("[fe80::1%3]:5"))
	if e != 0 {
		t.Fatal(e)
	}
	var zc zoneCache
	var got netip.AddrPort
	if a := testing.AllocsPerRun(100, func() { got = decodeSockaddr(&sa, n, &zc) }); a != 0 {
		t.Errorf("%v allocs per decode", a)
	}
	if got.String() != "[fe80::1%3]:5" {
		t.Errorf("decoded %v", got)
	}
}

// FuzzSockaddr checks that encoding any address for either family never
// panics and decodes back to the same address (unmapped).
func FuzzSockaddr(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4}, uint16(80), uint32(0), true)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4}, uint16(1), uint32(0), false)
	f.Add([]byte{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, uint16(0), uint32(9), false)
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, scope uint32, v4 bool) {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		if a.Is6() && scope != 0 {
			a = a.WithZone(netip.MustParseAddr("fe80::%" + strconv.FormatUint(uint64(scope), 10)).Zone())
		}
		in := netip.AddrPortFrom(a, port)
		family := unix.AF_INET6
		if v4 {
			family = unix.AF_INET
		}
		var sa unix.RawSockaddrAny
		n, e := encodeSockaddr(&sa, family, in)
		if e != 0 {
			if family == unix.AF_INET6 || !a.Unmap().Is6() {
				t.Fatalf("encode(%d, %v): %v", family, in, e)
			}
			return
		}
		var zc zoneCache
		got := decodeSockaddr(&sa, n, &zc)
		// Unmap also drops the zone of a v4-mapped address.
		if want := netip.AddrPortFrom(a.Unmap(), port); got != want {
			t.Fatalf("decode(encode(%d, %v)) = %v, want %v", family, in, got, want)
		}
	})
}
