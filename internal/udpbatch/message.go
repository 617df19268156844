package udpbatch

import "net/netip"

// Batch sizes accepted by [New].
const (
	// DefaultBatch is used when New is given a batch size <= 0.
	DefaultBatch = 64
	// MaxBatch is the largest batch size; the kernel caps recvmmsg and
	// sendmmsg at UIO_MAXIOV (1024) messages per call anyway.
	MaxBatch = 1024
)

// MaxDatagram is the largest UDP payload a datagram can carry
// (65535 minus the 8-byte UDP header, without IPv6 jumbograms); a buffer of
// this size never truncates.
const MaxDatagram = 65535 - 8

// Message is one datagram.
//
// Buf is owned by the caller. ReadBatch stores at most len(Buf) bytes in it
// and sets N to the number of bytes stored; WriteBatch sends Buf[:N].
//
// Truncation: a received datagram longer than len(Buf) is cut to len(Buf)
// bytes, N is set to len(Buf) and Truncated is set; the rest of the datagram
// is lost (the kernel discards it). Truncated is false otherwise, and is
// ignored by WriteBatch.
//
// Seg makes a message carry several datagrams of one sender and destination
// (UDP generic segmentation and receive offload): Buf[:N] is then a run of
// datagrams of Seg bytes each, the last of which may be shorter. ReadBatch on
// a Conn with GRO on sets it for a buffer the kernel coalesced (and 0 for a
// single datagram); WriteBatch sends such a message with one UDP_SEGMENT
// system call when GSO is on, and as separate datagrams otherwise. Seg <= 0
// or Seg >= N means one datagram. Use [Segments] to walk the datagrams.
type Message struct {
	Buf       []byte
	N         int
	Addr      netip.AddrPort
	Truncated bool
	Seg       int
}

// Datagrams is the number of datagrams m carries.
func (m *Message) Datagrams() int {
	if m.Seg <= 0 || m.Seg >= m.N {
		return 1
	}
	return (m.N + m.Seg - 1) / m.Seg
}

// Segment returns datagram i (0 <= i < Datagrams()) of m.
func (m *Message) Segment(i int) []byte {
	if m.Seg <= 0 || m.Seg >= m.N {
		return m.Buf[:m.N]
	}
	start := i * m.Seg
	return m.Buf[start:min(start+m.Seg, m.N)]
}

// MaxSegments is the most datagrams WriteBatch puts in one UDP_SEGMENT
// message (the kernel's UDP_MAX_SEGMENTS was 64 before Linux 6.10); a longer
// message is sent as several.
const MaxSegments = 64

// maxGSOBytes bounds the payload of one UDP_SEGMENT message: an IPv4 packet
// holds at most 65535 bytes with its 20-byte header and the UDP header.
const maxGSOBytes = 65535 - 20 - 8

// Stats are a Conn's cumulative counters of conditions that do not surface as
// errors from ReadBatch or WriteBatch.
type Stats struct {
	// WriteDropped counts messages WriteBatch skipped because the kernel
	// rejected them individually (for example ECONNREFUSED, EHOSTUNREACH,
	// EMSGSIZE) or because they could not be encoded (an IPv6 destination on
	// an IPv4 socket, N out of range, no destination on an unconnected
	// socket).
	WriteDropped uint64
	// LastWriteDropErr is the reason for the most recent such drop, a
	// syscall.Errno; nil if there was none.
	LastWriteDropErr error
	// ReadAsyncErrors counts asynchronous errors (ICMP-reported errors such
	// as ECONNREFUSED on a connected socket) that ReadBatch consumed and
	// ignored instead of returning them.
	ReadAsyncErrors uint64
	// GROBuffers counts received messages the kernel had coalesced from more
	// than one datagram (UDP_GRO), GRODatagrams the datagrams in them.
	GROBuffers, GRODatagrams uint64
	// GSOMessages counts messages WriteBatch sent with UDP_SEGMENT (segmented
	// ones and runs of single datagrams it gathered), GSODatagrams the
	// datagrams in them.
	GSOMessages, GSODatagrams uint64
	// GSOResent counts segmented messages the kernel refused (EIO: no
	// checksum offload on the route's device; EINVAL or EMSGSIZE: a segment
	// larger than the path allows) that WriteBatch sent again as separate
	// datagrams. After EIO the Conn turns GSO off for good (see Offload).
	GSOResent uint64
}

// Offload says which UDP segmentation offloads a Conn uses.
type Offload struct {
	// GRO: reads return coalesced buffers (UDP_GRO), see Message.Seg.
	GRO bool
	// GSO: writes send segmented messages with one UDP_SEGMENT call each.
	GSO bool
}
