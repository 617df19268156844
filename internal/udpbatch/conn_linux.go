//go:build linux

package udpbatch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn does batched reads and writes on a *net.UDPConn with recvmmsg and
// sendmmsg, without allocating per call once created.
//
// ReadBatch and WriteBatch may run concurrently with each other. Concurrent
// ReadBatch calls are safe but serialised, and so are concurrent WriteBatch
// calls. Deadlines and Close are those of the wrapped *net.UDPConn.
type Conn struct {
	uc     *net.UDPConn
	rc     syscall.RawConn
	family int // AF_INET or AF_INET6

	rmu sync.Mutex
	r   reader
	_   [64]byte // keep the reader's and writer's hot fields on separate cache lines
	wmu sync.Mutex
	w   writer
}

// New wraps c for batches of up to maxBatch messages per system call;
// maxBatch <= 0 selects DefaultBatch and values above MaxBatch are lowered to
// MaxBatch. The caller keeps ownership of c: closing c ends the Conn.
func New(c *net.UDPConn, maxBatch int) (*Conn, error) {
	if c == nil {
		return nil, errors.New("udpbatch: nil *net.UDPConn")
	}
	if maxBatch <= 0 {
		maxBatch = DefaultBatch
	}
	maxBatch = min(maxBatch, MaxBatch)
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	var family int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		family, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("udpbatch: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("udpbatch: %w", os.NewSyscallError("getsockopt", serr))
	}
	if family != unix.AF_INET && family != unix.AF_INET6 {
		return nil, fmt.Errorf("udpbatch: unsupported socket family %d", family)
	}
	cn := &Conn{uc: c, rc: rc, family: family}
	cn.r.vectors = newVectors(maxBatch)
	cn.r.ctrl = make([]byte, maxBatch*readCtrlSize)
	cn.r.fn = cn.r.read
	cn.w.vectors = newVectors(maxBatch)
	cn.w.ctrl = make([]byte, maxBatch*writeCtrlSize)
	for i := range maxBatch {
		initSegmentCtrl(cn.w.ctrl[i*writeCtrlSize : (i+1)*writeCtrlSize])
	}
	cn.w.dgrams = make([]int, maxBatch)
	cn.w.msg = make([]int, maxBatch)
	cn.w.gathered = make([]bool, maxBatch)
	cn.w.pool = make([]unix.Iovec, max(2*maxBatch, MaxSegments))
	cn.w.fn = cn.w.write
	return cn, nil
}

// UDPConn returns the wrapped connection (nil for a Conn not made by New).
func (c *Conn) UDPConn() *net.UDPConn {
	if c == nil {
		return nil
	}
	return c.uc
}

// ok reports whether c was made by New.
func (c *Conn) ok() bool { return c != nil && c.rc != nil }

// ReadBatch receives up to min(len(ms), maxBatch) datagrams into ms[i].Buf,
// setting N, Addr, Truncated and Seg of each, and returns how many messages
// it filled. With GRO on (EnableOffload) a message may hold several
// datagrams of one sender (Seg > 0); buffers should then be MaxDatagram
// bytes, or the kernel truncates the coalesced run.
// It blocks (in the network poller, without spinning) until at least one
// datagram is available, and then takes whatever else is queued without
// waiting. Asynchronous socket errors (an ICMP "port unreachable" for an
// earlier send on a connected socket, ...) are counted in Stats and not
// returned. Errors are those of the wrapped connection: errors.Is(err,
// net.ErrClosed) after Close, errors.Is(err, os.ErrDeadlineExceeded) after the
// read deadline, syscall.EINVAL for a Conn not made by New. len(ms) == 0
// returns (0, nil) at once.
func (c *Conn) ReadBatch(ms []Message) (int, error) {
	if !c.ok() {
		return 0, syscall.EINVAL
	}
	if len(ms) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	r := &c.r
	k := min(len(ms), len(r.hdrs))
	gro := r.gro.Load()
	for i := range k {
		r.setBuf(i, ms[i].Buf, len(ms[i].Buf))
		h := &r.hdrs[i]
		h.Hdr.Namelen = unix.SizeofSockaddrAny
		h.Hdr.Flags = 0
		h.Len = 0
		if gro {
			h.Hdr.Control = &r.ctrl[i*readCtrlSize]
			h.Hdr.SetControllen(readCtrlSize)
		} else {
			h.Hdr.Control = nil
			h.Hdr.SetControllen(0)
		}
	}
	r.cnt, r.n, r.errno = k, 0, 0
	if err := c.rc.Read(r.fn); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, c.opError("recvmmsg", r.errno)
	}
	for i := range r.n {
		h := &r.hdrs[i]
		m := &ms[i]
		m.N = min(int(h.Len), len(m.Buf))
		m.Truncated = h.Hdr.Flags&unix.MSG_TRUNC != 0
		m.Addr = decodeSockaddr(&r.names[i], h.Hdr.Namelen, &r.zones)
		m.Seg = 0
		if gro && h.Hdr.Controllen > 0 {
			cl := min(int(h.Hdr.Controllen), readCtrlSize)
			if seg := groSize(r.ctrl[i*readCtrlSize : i*readCtrlSize+cl]); seg > 0 && seg < m.N {
				m.Seg = seg
				r.groBuffers.Add(1)
				r.groDatagrams.Add(uint64(m.Datagrams()))
			}
		}
	}
	return r.n, nil
}

// WriteBatch sends ms[i].Buf[:ms[i].N] to ms[i].Addr for every message, in
// order, maxBatch messages per system call, and returns how many datagrams
// the kernel accepted. A zero Addr sends to the connected peer.
//
// A message with Seg set (see Message) is sent with UDP_SEGMENT, at most
// MaxSegments datagrams per system call message, when GSO is on
// (EnableOffload), and as separate datagrams otherwise. With GSO on,
// consecutive single-datagram messages to one destination with the size of
// the first (the last may be shorter) are gathered into one UDP_SEGMENT
// message too; a receiver sees the same datagrams either way. A segmented or
// gathered message the kernel refuses (EIO when the device cannot checksum, EINVAL or
// EMSGSIZE) is sent again as separate datagrams and counted in
// Stats.GSOResent; after EIO the Conn turns GSO off.
//
// It loops over partial sendmmsg results and waits in the network poller when
// the send buffer is full. A datagram rejected on its own - an ICMP-reported
// error such as ECONNREFUSED or EHOSTUNREACH, EMSGSIZE, an IPv6 destination on
// an IPv4 socket, N outside [0, len(Buf)], no destination on an unconnected
// socket - is skipped and counted in Stats, and the remaining messages are
// still sent; such drops do not produce an error. The returned error is the
// first hard error (the connection closed, the write deadline passed, or an
// unexpected errno), which stops the call: later messages are not attempted.
func (c *Conn) WriteBatch(ms []Message) (int, error) {
	if !c.ok() {
		return 0, syscall.EINVAL
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w := &c.w
	sent := 0
	// The next datagram to prepare is at byte off of ms[i]; messages before
	// splitUntil go out as separate datagrams although GSO is on (the kernel
	// refused them segmented).
	i, off, splitUntil := 0, 0, 0
	for i < len(ms) {
		gso := w.gso.Load()
		k, pool := 0, 0
		for i < len(ms) && k < len(w.hdrs) {
			m := &ms[i]
			if m.N < 0 || m.N > len(m.Buf) {
				w.drop(unix.EINVAL, 1)
				i, off = i+1, 0
				continue
			}
			segmented := m.Seg > 0 && m.Seg < m.N
			if !segmented && gso && i >= splitUntil {
				// Consecutive single datagrams of one size (the last may
				// be shorter) to one destination: one UDP_SEGMENT message
				// gathering their buffers.
				if d := c.coalesce(k, ms[i:], w.pool[pool:]); d > 1 {
					w.msg[k] = i
					k, pool, i = k+1, pool+d, i+d
					continue
				}
			}
			seg := m.N - off // one datagram
			if segmented {
				seg = m.Seg
			}
			// The datagrams of this header: one, or a run of up to
			// MaxSegments segments.
			n := seg
			if gso && i >= splitUntil && seg > 0 {
				n = min(m.N-off, seg*max(1, min(MaxSegments, maxGSOBytes/seg)))
			}
			n = min(n, m.N-off)
			if e := c.prepare(k, m.Addr, m.Buf[off:off+n], seg); e != 0 {
				w.drop(e, max(1, (n+seg-1)/max(seg, 1)))
			} else {
				w.msg[k] = i
				k++
			}
			if off += n; off >= m.N {
				i, off = i+1, 0
			}
		}
		if k == 0 {
			continue
		}
		w.cnt, w.off, w.sent, w.errno, w.refused = k, 0, 0, 0, -1
		err := c.rc.Write(w.fn)
		sent += w.sent
		if err != nil {
			return sent, err
		}
		if w.errno != 0 {
			return sent, c.opError("sendmmsg", w.errno)
		}
		if r := w.refused; r >= 0 {
			// Send the refused header's datagrams again, separately.
			w.gsoResent.Add(1)
			if w.refusedE == unix.EIO {
				w.gso.Store(false)
			}
			i, off = w.msg[r], 0
			if w.gathered[r] {
				splitUntil = i + w.dgrams[r]
			} else {
				splitUntil = i + 1
				off = int(uintptr(unsafe.Pointer(w.iovs[r].Base)) - uintptr(unsafe.Pointer(unsafe.SliceData(ms[i].Buf))))
			}
		}
	}
	return sent, nil
}

// coalesce fills header k with the run of single datagrams at the start of ms
// that one UDP_SEGMENT message can carry: same destination, the size of the
// first (the last may be shorter), at most MaxSegments and 64 KiB, gathered
// with one I/O vector each from iovs. It returns the run's length; below 2 it
// prepared nothing.
func (c *Conn) coalesce(k int, ms []Message, iovs []unix.Iovec) int {
	first := &ms[0]
	size := first.N
	if size <= 0 || len(ms) < 2 || len(iovs) < 2 {
		return 0
	}
	d, total := 1, size
	for d < len(ms) && d < len(iovs) && d < MaxSegments {
		m := &ms[d]
		if m.N <= 0 || m.N > size || m.N > len(m.Buf) || (m.Seg > 0 && m.Seg < m.N) ||
			m.Addr != first.Addr || total+m.N > maxGSOBytes {
			break
		}
		d, total = d+1, total+m.N
		if m.N < size {
			break // a shorter datagram ends the run
		}
	}
	if d < 2 {
		return 0
	}
	w := &c.w
	if c.prepareHeader(k, first.Addr) != 0 {
		return 0 // sent one by one, where the error is counted
	}
	for j := range d {
		iovs[j].Base = unsafe.SliceData(ms[j].Buf)
		iovs[j].SetLen(ms[j].N)
	}
	h := &w.hdrs[k].Hdr
	h.Iov = &iovs[0]
	h.SetIovlen(d)
	w.dgrams[k], w.gathered[k] = d, true
	c.setSegment(k, size)
	return d
}

// prepare fills header k of the writer for the datagrams in b to addr, each
// seg bytes long but the last.
func (c *Conn) prepare(k int, addr netip.AddrPort, b []byte, seg int) unix.Errno {
	if e := c.prepareHeader(k, addr); e != 0 {
		return e
	}
	w := &c.w
	h := &w.hdrs[k].Hdr
	h.Iov = &w.iovs[k]
	h.SetIovlen(1)
	w.setBuf(k, b, len(b))
	w.dgrams[k], w.gathered[k] = 1, false
	if len(b) > seg {
		w.dgrams[k] = (len(b) + seg - 1) / seg
		c.setSegment(k, seg)
	} else {
		h.Control = nil
		h.SetControllen(0)
	}
	return 0
}

// prepareHeader sets the destination of header k.
func (c *Conn) prepareHeader(k int, addr netip.AddrPort) unix.Errno {
	w := &c.w
	h := &w.hdrs[k].Hdr
	if addr.Addr().IsValid() {
		n, e := encodeSockaddr(&w.names[k], c.family, addr)
		if e != 0 {
			return e
		}
		h.Name = (*byte)(unsafe.Pointer(&w.names[k]))
		h.Namelen = n
	} else {
		h.Name = nil
		h.Namelen = 0
	}
	h.Flags = 0
	return 0
}

// setSegment attaches a UDP_SEGMENT control message of size seg to header k.
func (c *Conn) setSegment(k, seg int) {
	w := &c.w
	ctrl := w.ctrl[k*writeCtrlSize : (k+1)*writeCtrlSize]
	setSegmentSize(ctrl, uint16(seg))
	h := &w.hdrs[k].Hdr
	h.Control = &ctrl[0]
	h.SetControllen(writeCtrlSize)
}

// Stats returns the Conn's counters. It is safe to call at any time.
func (c *Conn) Stats() Stats {
	if c == nil {
		return Stats{}
	}
	s := Stats{
		WriteDropped:    c.w.dropped.Load(),
		ReadAsyncErrors: c.r.async.Load(),
		GROBuffers:      c.r.groBuffers.Load(),
		GRODatagrams:    c.r.groDatagrams.Load(),
		GSOMessages:     c.w.gsoMessages.Load(),
		GSODatagrams:    c.w.gsoDatagrams.Load(),
		GSOResent:       c.w.gsoResent.Load(),
	}
	if e := c.w.lastDrop.Load(); e != 0 {
		s.LastWriteDropErr = syscall.Errno(e)
	}
	return s
}

// opError wraps a hard errno like the net package does.
func (c *Conn) opError(op string, e unix.Errno) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.uc.LocalAddr(), Err: os.NewSyscallError(op, e)}
}
