//go:build linux

package udpbatch

import (
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxAsyncRetries bounds how many asynchronous errors one read callback
// consumes before it waits for the poller again, so a flood of ICMP errors
// cannot spin a goroutine.
const maxAsyncRetries = 16

// vectors are the message headers, I/O vectors and socket addresses handed to
// the kernel. They are allocated once; hdrs[i] points at iovs[i] and names[i].
type vectors struct {
	hdrs  []unix.Mmsghdr
	iovs  []unix.Iovec
	names []unix.RawSockaddrAny
}

func newVectors(n int) vectors {
	v := vectors{
		hdrs:  make([]unix.Mmsghdr, n),
		iovs:  make([]unix.Iovec, n),
		names: make([]unix.RawSockaddrAny, n),
	}
	for i := range v.hdrs {
		h := &v.hdrs[i].Hdr
		h.Iov = &v.iovs[i]
		h.SetIovlen(1)
		h.Name = (*byte)(unsafe.Pointer(&v.names[i]))
	}
	return v
}

// setBuf points I/O vector i at b[:n].
func (v *vectors) setBuf(i int, b []byte, n int) {
	iov := &v.iovs[i]
	iov.Base = unsafe.SliceData(b)
	iov.SetLen(n)
}

// reader is the state of ReadBatch. fn is created once so that passing it to
// syscall.RawConn.Read does not allocate.
type reader struct {
	vectors
	ctrl  []byte     // readCtrlSize bytes of control messages per header
	cnt   int        // messages offered to the kernel
	n     int        // messages received
	errno unix.Errno // hard error of the last call
	zones zoneCache
	fn    func(fd uintptr) bool
	async atomic.Uint64 // asynchronous errors consumed
	gro   atomic.Bool   // UDP_GRO is on: read control messages

	groBuffers, groDatagrams atomic.Uint64
}

// read is the syscall.RawConn.Read callback: it returns false to wait for
// readability.
func (r *reader) read(fd uintptr) bool {
	for tries := 0; ; {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&r.hdrs[0])), uintptr(r.cnt), 0, 0, 0)
		switch {
		case e == 0:
			r.n = int(n)
			return true
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false
		case asyncError(e):
			// A pending socket error (usually an ICMP error for an
			// earlier send) is reported once and cleared; the datagrams
			// behind it are still there.
			r.async.Add(1)
			if tries++; tries >= maxAsyncRetries {
				return false
			}
		default:
			r.errno = e
			return true
		}
	}
}

// writer is the state of WriteBatch. fn is created once so that passing it to
// syscall.RawConn.Write does not allocate.
type writer struct {
	vectors
	ctrl     []byte       // a UDP_SEGMENT control message (writeCtrlSize bytes) per header
	dgrams   []int        // datagrams header i carries
	msg      []int        // index of the (first) Message header i was made from
	gathered []bool       // header i gathers single datagrams (coalesce)
	pool     []unix.Iovec // I/O vectors of gathering headers
	cnt      int          // headers prepared in hdrs
	off      int          // first header not yet handled
	sent     int          // datagrams the kernel accepted
	errno    unix.Errno   // hard error of the last call
	refused  int          // header of a segmented message the kernel refused, or -1
	refusedE unix.Errno   // and why
	fn       func(fd uintptr) bool
	dropped  atomic.Uint64
	lastDrop atomic.Uintptr
	gso      atomic.Bool // send segmented messages with UDP_SEGMENT

	gsoMessages, gsoDatagrams, gsoResent atomic.Uint64
}

// write is the syscall.RawConn.Write callback: it returns false to wait for
// writability. It loops over partial sendmmsg results and skips a message the
// kernel rejects with a per-message error.
func (w *writer) write(fd uintptr) bool {
	for w.off < w.cnt {
		n, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&w.hdrs[w.off])), uintptr(w.cnt-w.off), 0, 0, 0)
		switch {
		case e == 0 && n > 0:
			for _, d := range w.dgrams[w.off : w.off+int(n)] {
				w.sent += d
				if d > 1 {
					w.gsoMessages.Add(1)
					w.gsoDatagrams.Add(uint64(d))
				}
			}
			w.off += int(n)
		case e == 0:
			// sendmmsg never returns 0 for a non-empty vector; do not spin.
			w.errno = unix.EIO
			return true
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false
		case w.dgrams[w.off] > 1 && (e == unix.EIO || e == unix.EINVAL || e == unix.EMSGSIZE):
			// A segmented message the kernel will not segment: the
			// caller sends it again as separate datagrams.
			w.refused, w.refusedE = w.off, e
			return true
		case perMessageError(e):
			w.drop(e, w.dgrams[w.off])
			w.off++
		default:
			w.errno = e
			return true
		}
	}
	return true
}

// drop counts n skipped datagrams.
func (w *writer) drop(e unix.Errno, n int) {
	w.dropped.Add(uint64(n))
	w.lastDrop.Store(uintptr(e))
}

// asyncError reports whether e is an error the kernel queues on a socket
// after the fact (ICMP and ICMPv6 errors, see icmp_err_convert and
// icmpv6_err_convert in Linux) and reports on a later call.
func asyncError(e unix.Errno) bool {
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN,
		unix.ENONET, unix.ENOPROTOOPT, unix.EMSGSIZE, unix.EPROTO, unix.EACCES:
		return true
	}
	return false
}

// perMessageError reports whether a sendmmsg error concerns one message (its
// destination, its size, or a pending asynchronous error) rather than the
// socket, so that the message is skipped and the others are still sent.
func perMessageError(e unix.Errno) bool {
	if asyncError(e) {
		return true
	}
	switch e {
	case unix.ENETDOWN, unix.EPERM, unix.EAFNOSUPPORT, unix.EADDRNOTAVAIL,
		unix.EDESTADDRREQ, unix.EINVAL, unix.ENOBUFS, unix.ENOMEM, unix.ECONNRESET:
		return true
	}
	return false
}
