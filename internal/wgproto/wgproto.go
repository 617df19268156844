// Package wgproto holds the parts of the WireGuard wire protocol that a relay needs
// when it knows only the PUBLIC keys of the servers behind it: message types and
// sizes, the sender/receiver indexes, key parsing, and the mac1 check that tells
// which server a handshake initiation is meant for.
//
// Nothing here decrypts anything or keeps state; every function is safe on any
// input (it never panics) and the hot paths do not allocate.
//
// Layouts follow the WireGuard whitepaper and wireguard-go (device/noise-protocol.go,
// device/cookie.go). All offsets are in bytes.
package wgproto

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MessageType is the first byte of every WireGuard message. On the wire the type
// is a little-endian uint32, so the three bytes after it must be zero.
type MessageType uint8

// The four WireGuard message types.
const (
	MessageInitiation  MessageType = 1 // handshake initiation
	MessageResponse    MessageType = 2 // handshake response
	MessageCookieReply MessageType = 3 // cookie reply (the responder is under load)
	MessageTransport   MessageType = 4 // transport data, or a keepalive
)

// String returns a short lower-case name, for logs and metric labels.
func (t MessageType) String() string {
	switch t {
	case MessageInitiation:
		return "initiation"
	case MessageResponse:
		return "response"
	case MessageCookieReply:
		return "cookie_reply"
	case MessageTransport:
		return "transport"
	}
	return "unknown(" + strconv.Itoa(int(t)) + ")"
}

// Message sizes.
const (
	InitiationSize   = 148 // a handshake initiation is exactly this long
	ResponseSize     = 92  // a handshake response is exactly this long
	CookieReplySize  = 64  // a cookie reply is exactly this long
	TransportMinSize = 32  // a transport message is at least this long (header + tag)
	KeepaliveSize    = 32  // a keepalive is a transport message with no payload

	// TransportHeaderSize is the type, receiver and counter in front of the
	// ciphertext of a transport message.
	TransportHeaderSize = 16

	// MACSize is the size of mac1 and mac2.
	MACSize = 16
	// KeySize is the size of a Curve25519 public key.
	KeySize = 32
)

// Field offsets. Each index field is 4 bytes, little-endian.
const (
	// SenderOffset is where the sender index sits in an initiation and a response.
	SenderOffset = 4
	// ResponseReceiverOffset is where the receiver index sits in a response.
	ResponseReceiverOffset = 8
	// ReceiverOffset is where the receiver index sits in a cookie reply and a
	// transport message.
	ReceiverOffset = 4

	// InitiationMAC1Offset and InitiationMAC2Offset locate the MACs of an
	// initiation; mac1 covers the bytes before InitiationMAC1Offset.
	InitiationMAC1Offset = 116
	InitiationMAC2Offset = 132
	// ResponseMAC1Offset and ResponseMAC2Offset locate the MACs of a response;
	// mac1 covers the bytes before ResponseMAC1Offset.
	ResponseMAC1Offset = 60
	ResponseMAC2Offset = 76

	// CookieReplyNonceOffset and CookieReplyCookieOffset locate the 24-byte
	// nonce and the 32-byte encrypted cookie of a cookie reply.
	CookieReplyNonceOffset  = 8
	CookieReplyCookieOffset = 32

	// TransportCounterOffset is where the 8-byte little-endian counter of a
	// transport message sits.
	TransportCounterOffset = 8
)

// Type validates a datagram as a WireGuard message and returns its type. It
// reports false unless the first byte is 1..4, the three reserved bytes are zero
// and the length is exact for an initiation, a response and a cookie reply, or at
// least TransportMinSize for a transport message. With false it returns type 0.
func Type(b []byte) (MessageType, bool) {
	if len(b) < 4 || b[1]|b[2]|b[3] != 0 {
		return 0, false
	}
	var ok bool
	switch t := MessageType(b[0]); t {
	case MessageInitiation:
		ok = len(b) == InitiationSize
	case MessageResponse:
		ok = len(b) == ResponseSize
	case MessageCookieReply:
		ok = len(b) == CookieReplySize
	case MessageTransport:
		ok = len(b) >= TransportMinSize
	}
	if !ok {
		return 0, false
	}
	return MessageType(b[0]), true
}

// Sender returns the sender index of an initiation or a response. It is meant for
// a message that Type accepted; for anything else it returns 0 (it never panics).
func Sender(b []byte) uint32 {
	if len(b) < SenderOffset+4 {
		return 0
	}
	switch MessageType(b[0]) {
	case MessageInitiation, MessageResponse:
		return binary.LittleEndian.Uint32(b[SenderOffset:])
	}
	return 0
}

// Receiver returns the receiver index of a response, a cookie reply or a transport
// message. It is meant for a message that Type accepted; for anything else it
// returns 0 (it never panics).
func Receiver(b []byte) uint32 {
	if len(b) < ResponseReceiverOffset+4 {
		return 0
	}
	switch MessageType(b[0]) {
	case MessageResponse:
		return binary.LittleEndian.Uint32(b[ResponseReceiverOffset:])
	case MessageCookieReply, MessageTransport:
		return binary.LittleEndian.Uint32(b[ReceiverOffset:])
	}
	return 0
}

// Errors returned by ParseKey, for errors.Is.
var (
	ErrKeyLength   = errors.New("wgproto: key must be 44 characters of base64 or 64 of hex")
	ErrKeyEncoding = errors.New("wgproto: key is not valid base64 or hex")
	ErrKeyZero     = errors.New("wgproto: key is all zeros")
)

// Lengths of a key in its two text encodings.
const (
	keyBase64Len = 44 // standard base64 with one '=' of padding, as `wg pubkey` prints
	keyHexLen    = 64 // hex, as wireguard-go's UAPI and Gardener's Secrets use
)

// ParseKey decodes a 32-byte WireGuard key given in standard base64 (44
// characters, as `wg pubkey` prints it) or in hex (64 characters, either case).
// Surrounding white space, such as the newline `wg pubkey` ends with, is ignored.
// The all-zero key is rejected: it is never a valid public key and usually means
// an unset field.
func ParseKey(s string) ([KeySize]byte, error) {
	var k [KeySize]byte
	s = strings.TrimSpace(s)
	switch len(s) {
	case keyBase64Len:
		// 44 characters without padding decode to 33 bytes; Decode needs room for
		// them. Strict rejects non-zero padding bits, so a key has one spelling.
		var buf [keyBase64Len / 4 * 3]byte
		n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
		if err != nil || n != KeySize {
			return [KeySize]byte{}, fmt.Errorf("%w: base64: %v", ErrKeyEncoding, errDecodedLen(err, n))
		}
		copy(k[:], buf[:KeySize])
	case keyHexLen:
		if _, err := hex.Decode(k[:], []byte(s)); err != nil {
			return [KeySize]byte{}, fmt.Errorf("%w: hex: %v", ErrKeyEncoding, err)
		}
	default:
		return [KeySize]byte{}, fmt.Errorf("%w, got %d", ErrKeyLength, len(s))
	}
	if k == ([KeySize]byte{}) {
		return [KeySize]byte{}, ErrKeyZero
	}
	return k, nil
}

// errDecodedLen names why a base64 decode produced no key.
func errDecodedLen(err error, n int) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("decodes to %d bytes, want %d", n, KeySize)
}

// KeyString encodes a key in standard base64, the form `wg` prints and reads.
func KeyString(k [KeySize]byte) string {
	return base64.StdEncoding.EncodeToString(k[:])
}
