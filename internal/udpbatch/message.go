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
type Message struct {
	Buf       []byte
	N         int
	Addr      netip.AddrPort
	Truncated bool
}

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
}
