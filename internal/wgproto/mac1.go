package wgproto

import "encoding/binary"

// labelMAC1 prefixes the public key when deriving the mac1 key (WireGuard
// whitepaper, section 5.4.4; wireguard-go WGLabelMAC1).
const labelMAC1 = "mac1----"

// MAC1Key checks and computes the mac1 field of handshake messages sent to the
// owner of one public key. mac1 = BLAKE2s-128(key, message bytes before mac1)
// with key = BLAKE2s-256("mac1----" || public key), so the public key alone is
// enough: a relay can tell which server an initiation is for without holding any
// secret.
//
// A MAC1Key keeps the BLAKE2s state after the key block rather than the key, so
// a check costs two compressions for an initiation and one for a response. It is
// immutable and safe for concurrent use. The zero value matches no message.
type MAC1Key struct {
	h   [8]uint32 // keyed BLAKE2s-128 state after the key block
	set bool
}

// NewMAC1Key derives the mac1 key of the peer with the given static public key.
// To check an initiation, use the responder's key; to check a response, the
// initiator's.
func NewMAC1Key(publicKey [KeySize]byte) MAC1Key {
	key := sum256([]byte(labelMAC1), publicKey[:])
	return MAC1Key{h: keyedState(key[:], MACSize), set: true}
}

// mac1Offset returns where mac1 starts in msg: the number of bytes it covers.
// It reports false unless Type accepts msg as an initiation or a response.
func mac1Offset(msg []byte) (int, bool) {
	switch t, ok := Type(msg); {
	case ok && t == MessageInitiation:
		return InitiationMAC1Offset, true
	case ok && t == MessageResponse:
		return ResponseMAC1Offset, true
	}
	return 0, false
}

// Check reports whether msg is a valid initiation or response (see Type) whose
// mac1 was made with this key. The comparison takes constant time and Check
// does not allocate.
func (k *MAC1Key) Check(msg []byte) bool {
	n, ok := mac1Offset(msg)
	if !ok || !k.set {
		return false
	}
	h := k.h
	hashTail(&h, blockSize, msg[:n])
	return macEqual(&h, msg[n:n+MACSize])
}

// macEqual compares the first four words of h, a finished BLAKE2s-128 state,
// with the 16-byte MAC in mac, in constant time.
func macEqual(h *[8]uint32, mac []byte) bool {
	mac = mac[:MACSize]
	d := h[0] ^ binary.LittleEndian.Uint32(mac[0:])
	d |= h[1] ^ binary.LittleEndian.Uint32(mac[4:])
	d |= h[2] ^ binary.LittleEndian.Uint32(mac[8:])
	d |= h[3] ^ binary.LittleEndian.Uint32(mac[12:])
	return d == 0
}

// Compute returns the mac1 that msg, an initiation or a response (see Type),
// should carry for this key; copy it to msg[InitiationMAC1Offset:] or
// msg[ResponseMAC1Offset:]. For any other msg, or a zero MAC1Key, it returns
// all zeros.
func (k *MAC1Key) Compute(msg []byte) [MACSize]byte {
	var mac [MACSize]byte
	n, ok := mac1Offset(msg)
	if !ok || !k.set {
		return mac
	}
	h := k.h
	hashTail(&h, blockSize, msg[:n])
	for i := range 4 {
		binary.LittleEndian.PutUint32(mac[4*i:], h[i])
	}
	return mac
}
