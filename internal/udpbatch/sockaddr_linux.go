//go:build linux

package udpbatch

import (
	"net"
	"net/netip"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// zoneCache remembers the zone string of the last IPv6 scope ID seen, so that
// receiving from a link-local peer does not allocate a string per datagram.
// Zones are reported as the numeric interface index ("fe80::1%2").
type zoneCache struct {
	id   uint32
	name string
}

// zone returns the zone string for scope ID id.
func (z *zoneCache) zone(id uint32) string {
	if z.id != id || z.name == "" {
		z.id, z.name = id, strconv.FormatUint(uint64(id), 10)
	}
	return z.name
}

// decodeSockaddr returns the address the kernel stored in sa; namelen is the
// length it reported. IPv4-mapped IPv6 addresses are returned unmapped. An
// unknown family or a short namelen gives the zero AddrPort.
func decodeSockaddr(sa *unix.RawSockaddrAny, namelen uint32, zc *zoneCache) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		if namelen < unix.SizeofSockaddrInet4 {
			return netip.AddrPort{}
		}
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), getPort(&p.Port))
	case unix.AF_INET6:
		if namelen < unix.SizeofSockaddrInet6 {
			return netip.AddrPort{}
		}
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		a := netip.AddrFrom16(p.Addr)
		if a.Is4In6() {
			a = a.Unmap()
		} else if p.Scope_id != 0 {
			a = a.WithZone(zc.zone(p.Scope_id))
		}
		return netip.AddrPortFrom(a, getPort(&p.Port))
	}
	return netip.AddrPort{}
}

// encodeSockaddr stores ap in sa in the form a socket of the given family
// expects and returns the length to pass to the kernel. On an AF_INET6 socket
// IPv4 addresses become v4-mapped; on an AF_INET socket v4-mapped addresses
// are unmapped and other IPv6 addresses are rejected with EAFNOSUPPORT. An
// IPv6 zone must be a numeric interface index or an interface name (names are
// resolved with a slow, allocating lookup).
func encodeSockaddr(sa *unix.RawSockaddrAny, family int, ap netip.AddrPort) (uint32, unix.Errno) {
	a := ap.Addr()
	if !a.IsValid() {
		return 0, unix.EDESTADDRREQ
	}
	switch family {
	case unix.AF_INET:
		a = a.Unmap()
		if !a.Is4() {
			return 0, unix.EAFNOSUPPORT
		}
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*p = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		putPort(&p.Port, ap.Port())
		return unix.SizeofSockaddrInet4, 0
	case unix.AF_INET6:
		var scope uint32
		if z := a.Zone(); z != "" {
			id, ok := zoneIndex(z)
			if !ok {
				return 0, unix.EINVAL
			}
			scope = id
		}
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		*p = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16(), Scope_id: scope}
		putPort(&p.Port, ap.Port())
		return unix.SizeofSockaddrInet6, 0
	}
	return 0, unix.EAFNOSUPPORT
}

// zoneIndex resolves an IPv6 zone to an interface index.
func zoneIndex(z string) (uint32, bool) {
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n), true
	}
	ifi, err := net.InterfaceByName(z)
	if err != nil || ifi.Index <= 0 {
		return 0, false
	}
	return uint32(ifi.Index), true
}

// getPort reads a port stored in network byte order.
func getPort(p *uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// putPort stores a port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}
