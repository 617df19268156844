package wgproto

import (
	"crypto/cipher"
	"encoding/binary"
	"net/netip"

	"golang.org/x/crypto/chacha20poly1305"
)

// WireGuard's answer to spoofed handshake floods is the cookie (whitepaper section
// 5.4.7, wireguard-go device/cookie.go). A responder under load answers a handshake
// message that lacks a valid mac2 with a cookie reply instead of doing any
// Diffie-Hellman work:
//
//	cookie      = BLAKE2s-128(key = secret rotated every 120 s, source IP || port)
//	cookie reply: type 3, receiver = the initiation's sender index, 24-byte random
//	              nonce, XChaCha20-Poly1305(key = BLAKE2s-256("cookie--" || responder
//	              PUBLIC key), nonce, cookie, additional data = the initiation's mac1)
//	mac2        = BLAKE2s-128(key = cookie, message bytes before mac2)
//
// Only a sender that receives packets at its source address learns the cookie, and
// the encryption key needs only the responder's public key: a relay can issue and
// check cookies on behalf of a server whose private key it never sees, and it can
// read the cookies such a server hands out.

// labelCookie prefixes the public key when deriving the cookie encryption key
// (wireguard-go WGLabelCookie).
const labelCookie = "cookie--"

// CookieSize is the size of a cookie.
const CookieSize = 16

// CookieSecret derives cookies from a random secret. It keeps the keyed BLAKE2s
// state after the key block, so a cookie costs one compression. Immutable and safe
// for concurrent use.
type CookieSecret struct {
	h [8]uint32
}

// NewCookieSecret returns the cookie deriver of secret (32 random bytes).
func NewCookieSecret(secret [32]byte) CookieSecret {
	return CookieSecret{h: keyedState(secret[:], CookieSize)}
}

// Cookie returns the cookie of the source address src. The address is hashed as
// its 16-byte form (IPv4 as IPv4-mapped IPv6) and the port in big-endian order, so
// an address has one cookie whatever form the socket reported it in.
func (s *CookieSecret) Cookie(src netip.AddrPort) [CookieSize]byte {
	var in [18]byte
	a := src.Addr().Unmap()
	if a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	b := a.As16()
	copy(in[:16], b[:])
	binary.BigEndian.PutUint16(in[16:], src.Port())
	h := s.h
	hashTail(&h, blockSize, in[:])
	var c [CookieSize]byte
	for i := range 4 {
		binary.LittleEndian.PutUint32(c[4*i:], h[i])
	}
	return c
}

// mac2Offset returns where mac2 starts in msg, an initiation or a response (see
// Type); false for anything else.
func mac2Offset(msg []byte) (int, bool) {
	switch t, ok := Type(msg); {
	case ok && t == MessageInitiation:
		return InitiationMAC2Offset, true
	case ok && t == MessageResponse:
		return ResponseMAC2Offset, true
	}
	return 0, false
}

// CheckMAC2 reports whether msg, an initiation or a response, carries the mac2 of
// cookie. Constant-time comparison, no allocation.
func CheckMAC2(msg []byte, cookie *[CookieSize]byte) bool {
	n, ok := mac2Offset(msg)
	if !ok {
		return false
	}
	h := keyedState(cookie[:], MACSize)
	hashTail(&h, blockSize, msg[:n])
	return macEqual(&h, msg[n:n+MACSize])
}

// SetMAC2 writes the mac2 of cookie into msg, an initiation or a response, and
// reports whether msg was one. mac2 is outside the Noise handshake transcript and
// outside mac1, so rewriting it changes nothing else the responder checks.
func SetMAC2(msg []byte, cookie *[CookieSize]byte) bool {
	n, ok := mac2Offset(msg)
	if !ok {
		return false
	}
	h := keyedState(cookie[:], MACSize)
	hashTail(&h, blockSize, msg[:n])
	for i := range 4 {
		binary.LittleEndian.PutUint32(msg[n+4*i:], h[i])
	}
	return true
}

// MAC1 returns the mac1 field of msg, an initiation or a response (zero for
// anything else): the additional data a cookie reply to msg is bound to.
func MAC1(msg []byte) [MACSize]byte {
	var m [MACSize]byte
	if n, ok := mac1Offset(msg); ok {
		copy(m[:], msg[n:n+MACSize])
	}
	return m
}

// CookieSealer writes and reads the cookie replies of one responder, keyed from
// its PUBLIC key. Safe for concurrent use.
type CookieSealer struct {
	aead cipher.AEAD
}

// NewCookieSealer returns the sealer for the responder with static public key pub.
func NewCookieSealer(pub [KeySize]byte) *CookieSealer {
	key := sum256([]byte(labelCookie), pub[:])
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		panic(err) // the key is always 32 bytes
	}
	return &CookieSealer{aead: aead}
}

// Reply writes into dst the cookie reply that answers initiation (or response)
// msg with cookie, using nonce (24 bytes, never repeated: random). It returns
// false, writing nothing, unless msg is an initiation or a response.
func (s *CookieSealer) Reply(dst *[CookieReplySize]byte, msg []byte, cookie *[CookieSize]byte, nonce *[24]byte) bool {
	n, ok := mac1Offset(msg)
	if !ok {
		return false
	}
	clear(dst[:8])
	dst[0] = byte(MessageCookieReply)
	copy(dst[ReceiverOffset:ReceiverOffset+4], msg[SenderOffset:SenderOffset+4])
	copy(dst[CookieReplyNonceOffset:CookieReplyCookieOffset], nonce[:])
	s.aead.Seal(dst[CookieReplyCookieOffset:CookieReplyCookieOffset], nonce[:], cookie[:], msg[n:n+MACSize])
	return true
}

// Open decrypts the cookie of reply, a cookie reply (see Type) answering a message
// whose mac1 was mac1. It reports false for anything else or a failed
// authentication.
func (s *CookieSealer) Open(reply []byte, mac1 *[MACSize]byte) ([CookieSize]byte, bool) {
	var c [CookieSize]byte
	if t, ok := Type(reply); !ok || t != MessageCookieReply {
		return c, false
	}
	var buf [CookieSize]byte
	out, err := s.aead.Open(buf[:0], reply[CookieReplyNonceOffset:CookieReplyCookieOffset], reply[CookieReplyCookieOffset:CookieReplySize], mac1[:])
	if err != nil || len(out) != CookieSize {
		return c, false
	}
	copy(c[:], out)
	return c, true
}
