package egressprobe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"net/netip"
)

// STUN message layout (RFC 8489 §5, §14): a 20-byte header (type, length, magic
// cookie, 96-bit transaction id) and attributes of type, length and a value padded
// to 4 bytes.
const (
	stunHeaderSize  = 20
	stunMagicCookie = 0x2112A442
	// TransactionIDSize is the length of a STUN transaction id.
	TransactionIDSize = 12

	stunBindingRequest = 0x0001
	stunBindingSuccess = 0x0101
	stunBindingError   = 0x0111

	attrMappedAddress    = 0x0001
	attrErrorCode        = 0x0009
	attrXORMappedAddress = 0x0020
	// attrXORMappedAddressOld is XOR-MAPPED-ADDRESS's number in the drafts before
	// RFC 5389, which some old servers still send (pion/stun reads it too).
	attrXORMappedAddressOld = 0x8020
	attrFingerprint         = 0x8028

	fingerprintXOR = 0x5354554e // "STUN"
	familyIPv4     = 0x01
	familyIPv6     = 0x02
)

// appendBindingRequest appends a Binding request for transaction tx with a
// FINGERPRINT (RFC 8489 §14.7) and no other attribute.
func appendBindingRequest(b []byte, tx [TransactionIDSize]byte) []byte {
	start := len(b)
	b = binary.BigEndian.AppendUint16(b, stunBindingRequest)
	b = binary.BigEndian.AppendUint16(b, 8) // the FINGERPRINT attribute
	b = binary.BigEndian.AppendUint32(b, stunMagicCookie)
	b = append(b, tx[:]...)
	// The header's length already counts the FINGERPRINT, as §14.7 asks.
	crc := crc32.ChecksumIEEE(b[start:]) ^ fingerprintXOR
	b = binary.BigEndian.AppendUint16(b, attrFingerprint)
	b = binary.BigEndian.AppendUint16(b, 4)
	return binary.BigEndian.AppendUint32(b, crc)
}

// isSTUN reports whether b can be a STUN message at all (RFC 8489 §5: the two
// leading zero bits and the magic cookie).
func isSTUN(b []byte) bool {
	return len(b) >= stunHeaderSize && b[0]&0xc0 == 0 && binary.BigEndian.Uint32(b[4:8]) == stunMagicCookie
}

// ParseBindingResponse decodes a STUN message and returns the address of its
// XOR-MAPPED-ADDRESS (or, from RFC 3489 servers, MAPPED-ADDRESS). The message must
// be a Binding success response to transaction tx, exactly as long as its header
// says, with well-formed attributes; a FINGERPRINT, when present, must be the
// last attribute and match. The address must be a unicast address (not
// unspecified, multicast or broadcast). raw is untrusted network input; it is
// not retained or modified.
func ParseBindingResponse(raw []byte, tx [TransactionIDSize]byte) (netip.Addr, error) {
	if !isSTUN(raw) {
		return netip.Addr{}, fmt.Errorf("%w: not a STUN message (%d bytes)", errInvalid, len(raw))
	}
	typ := binary.BigEndian.Uint16(raw[0:2])
	length := int(binary.BigEndian.Uint16(raw[2:4]))
	if length%4 != 0 || stunHeaderSize+length != len(raw) {
		return netip.Addr{}, fmt.Errorf("%w: message length %d in a datagram of %d bytes", errInvalid, length, len(raw))
	}
	if [TransactionIDSize]byte(raw[8:20]) != tx {
		return netip.Addr{}, fmt.Errorf("%w: transaction id mismatch", errInvalid)
	}
	var xorMapped, mapped, errorCode []byte
	for off := stunHeaderSize; off < len(raw); {
		if len(raw)-off < 4 {
			return netip.Addr{}, fmt.Errorf("%w: truncated attribute header at %d", errInvalid, off)
		}
		at := binary.BigEndian.Uint16(raw[off : off+2])
		alen := int(binary.BigEndian.Uint16(raw[off+2 : off+4]))
		padded := (alen + 3) &^ 3
		if len(raw)-off-4 < padded {
			return netip.Addr{}, fmt.Errorf("%w: attribute 0x%04x of %d bytes overruns the message", errInvalid, at, alen)
		}
		value := raw[off+4 : off+4+alen]
		switch at {
		case attrXORMappedAddress, attrXORMappedAddressOld:
			if xorMapped == nil {
				xorMapped = value
			}
		case attrMappedAddress:
			if mapped == nil {
				mapped = value
			}
		case attrErrorCode:
			if errorCode == nil {
				errorCode = value
			}
		case attrFingerprint:
			if off+4+padded != len(raw) {
				return netip.Addr{}, fmt.Errorf("%w: FINGERPRINT is not the last attribute", errInvalid)
			}
			if alen != 4 {
				return netip.Addr{}, fmt.Errorf("%w: FINGERPRINT of %d bytes", errInvalid, alen)
			}
			if want := crc32.ChecksumIEEE(raw[:off]) ^ fingerprintXOR; binary.BigEndian.Uint32(value) != want {
				return netip.Addr{}, fmt.Errorf("%w: fingerprint mismatch", errInvalid)
			}
		}
		off += 4 + padded
	}
	switch typ {
	case stunBindingSuccess:
	case stunBindingError:
		if len(errorCode) >= 4 {
			code := int(errorCode[2]&0x7)*100 + int(errorCode[3])
			reason := truncate(errorCode[4:], 128)
			return netip.Addr{}, fmt.Errorf("%w: binding error %d %q", errInvalid, code, reason)
		}
		return netip.Addr{}, fmt.Errorf("%w: binding error response", errInvalid)
	default:
		return netip.Addr{}, fmt.Errorf("%w: message type 0x%04x, want binding success response", errInvalid, typ)
	}
	var addr netip.Addr
	var err error
	switch {
	case xorMapped != nil:
		var mask [16]byte
		binary.BigEndian.PutUint32(mask[0:4], stunMagicCookie)
		copy(mask[4:], tx[:])
		addr, err = decodeAddress("XOR-MAPPED-ADDRESS", xorMapped, &mask)
	case mapped != nil:
		addr, err = decodeAddress("MAPPED-ADDRESS", mapped, nil)
	default:
		return netip.Addr{}, fmt.Errorf("%w: no XOR-MAPPED-ADDRESS or MAPPED-ADDRESS", errInvalid)
	}
	if err != nil {
		return netip.Addr{}, err
	}
	return checkUnicast(addr.Unmap())
}

// decodeAddress decodes a (XOR-)MAPPED-ADDRESS value (RFC 8489 §14.1, §14.2):
// reserved byte, family, port, then 4 or 16 address bytes, XORed with mask when
// mask is not nil (the magic cookie, then the transaction id). The port is not
// needed and not decoded.
func decodeAddress(name string, v []byte, mask *[16]byte) (netip.Addr, error) {
	if len(v) < 4 {
		return netip.Addr{}, fmt.Errorf("%w: %s of %d bytes", errInvalid, name, len(v))
	}
	var n int
	switch v[1] {
	case familyIPv4:
		n = 4
	case familyIPv6:
		n = 16
	default:
		return netip.Addr{}, fmt.Errorf("%w: %s family %d", errInvalid, name, v[1])
	}
	if v[0] != 0 || len(v) != 4+n {
		return netip.Addr{}, fmt.Errorf("%w: %s of %d bytes for family %d", errInvalid, name, len(v), v[1])
	}
	var ip [16]byte
	copy(ip[:], v[4:])
	if mask != nil {
		for i := range n {
			ip[i] ^= mask[i]
		}
	}
	if n == 4 {
		return netip.AddrFrom4([4]byte(ip[:4])), nil
	}
	return netip.AddrFrom16(ip), nil
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
