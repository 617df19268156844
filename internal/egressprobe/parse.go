package egressprobe

import (
	"bytes"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v3"
)

// ParseBindingResponse decodes a STUN message and returns the address of its
// XOR-MAPPED-ADDRESS (or, from RFC 3489 servers, MAPPED-ADDRESS). The message must
// be a Binding success response to transaction tx; a FINGERPRINT, when present,
// must match. The address must be a unicast address (not unspecified, multicast
// or broadcast). raw is untrusted network input.
func ParseBindingResponse(raw []byte, tx [stun.TransactionIDSize]byte) (netip.Addr, error) {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %v", errInvalid, err)
	}
	if m.TransactionID != tx {
		return netip.Addr{}, fmt.Errorf("%w: transaction id mismatch", errInvalid)
	}
	if m.Type == stun.BindingError {
		var code stun.ErrorCodeAttribute
		if err := code.GetFrom(m); err == nil {
			return netip.Addr{}, fmt.Errorf("%w: binding error %d %s", errInvalid, code.Code, code.Reason)
		}
		return netip.Addr{}, fmt.Errorf("%w: binding error response", errInvalid)
	}
	if m.Type != stun.BindingSuccess {
		return netip.Addr{}, fmt.Errorf("%w: message type %s, want binding success response", errInvalid, m.Type)
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return netip.Addr{}, fmt.Errorf("%w: fingerprint: %v", errInvalid, err)
		}
	}
	var ip []byte
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err == nil {
		ip = xor.IP
	} else {
		var mapped stun.MappedAddress
		if err := mapped.GetFrom(m); err != nil {
			return netip.Addr{}, fmt.Errorf("%w: no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS", errInvalid)
		}
		ip = mapped.IP
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%w: address of %d bytes", errInvalid, len(ip))
	}
	return checkUnicast(addr.Unmap())
}

// ParseEchoBody parses an echo URL's answer: one IPv4 or IPv6 address, optionally
// surrounded by white space. raw is untrusted network input.
func ParseEchoBody(raw []byte) (netip.Addr, error) {
	s := bytes.TrimSpace(raw)
	addr, err := netip.ParseAddr(string(s))
	if err != nil || addr.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: body %q is not an address", errInvalid, truncate(s, 64))
	}
	return checkUnicast(addr.Unmap())
}

func checkUnicast(addr netip.Addr) (netip.Addr, error) {
	if !addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%w: %s is not a unicast address", errInvalid, addr)
	}
	return addr, nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
