package conntrack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// recvBufSize is the one receive buffer a socket reads into, whatever the size
// of the table: the kernel fills dump datagrams up to 32 KiB (the largest
// buffer a reader has offered, capped there), events are a few hundred bytes.
const recvBufSize = 64 << 10

// nlSocket is a raw NETLINK_NETFILTER socket read through the Go runtime's
// poller: a blocked read ends when the socket is closed or its deadline passes,
// and the reader can tell "nothing queued right now" (EAGAIN) from "wait", which
// the event listener reports as idle. It holds one fixed buffer: a dump of a
// million entries is read datagram by datagram, never collected.
type nlSocket struct {
	f   *os.File
	rc  syscall.RawConn
	pid uint32
	seq uint32
	buf []byte
}

// errTruncated: a datagram did not fit the buffer (it never should).
var errTruncated = errors.New("netlink datagram larger than the receive buffer")

// openSocket opens a netlink socket in the network namespace netns (a file
// descriptor; 0 is the caller's), joined to the multicast groups (a bitmask).
func openSocket(netns int, groups uint32) (*nlSocket, error) {
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	create := func() {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			ch <- res{-1, fmt.Errorf("netlink socket: %w", err)}
			return
		}
		ch <- res{fd, nil}
	}
	if netns == 0 {
		create()
	} else {
		// A socket belongs to the namespace of the thread that creates it. The
		// thread is left in that namespace and never unlocked, so the runtime
		// ends it with the goroutine instead of reusing it elsewhere.
		go func() {
			runtime.LockOSThread()
			if err := unix.Setns(netns, unix.CLONE_NEWNET); err != nil {
				ch <- res{-1, fmt.Errorf("enter network namespace: %w", err)}
				return
			}
			create()
		}()
	}
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	if err := unix.Bind(r.fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: groups}); err != nil {
		_ = unix.Close(r.fd)
		return nil, fmt.Errorf("bind netlink socket: %w", err)
	}
	sa, err := unix.Getsockname(r.fd)
	if err != nil {
		_ = unix.Close(r.fd)
		return nil, fmt.Errorf("netlink socket name: %w", err)
	}
	s := &nlSocket{f: os.NewFile(uintptr(r.fd), "netlink-netfilter"), buf: make([]byte, recvBufSize)}
	if nl, ok := sa.(*unix.SockaddrNetlink); ok {
		s.pid = nl.Pid
	}
	if s.rc, err = s.f.SyscallConn(); err != nil {
		_ = s.f.Close()
		return nil, err
	}
	return s, nil
}

func (s *nlSocket) Close() error { return s.f.Close() }

// setReadBuffer sets the receive buffer: SO_RCVBUFFORCE first (CAP_NET_ADMIN,
// which a ctnetlink reader has anyway, may exceed net.core.rmem_max), then
// SO_RCVBUF (capped by rmem_max).
func (s *nlSocket) setReadBuffer(n int) error {
	var err error
	cerr := s.rc.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n); err != nil {
			err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, n)
		}
	})
	return errors.Join(cerr, err)
}

// send writes one request.
func (s *nlSocket) send(b []byte) error {
	var err error
	werr := s.rc.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return err != unix.EAGAIN
	})
	return errors.Join(werr, err)
}

// idleRecheck is how often a waiting event reader looks at its queue again to
// report it empty (idle), so that a caller waiting for "every event sent
// before now has been read" does not wait for the next event.
const idleRecheck = 50 * time.Millisecond

// recv reads one datagram into s.buf. When nothing is queued it calls idle (if
// not nil) with the time the read was attempted, then waits (checking again
// every idleRecheck): every datagram queued before that time has been returned
// by an earlier recv.
func (s *nlSocket) recv(idle func(since time.Time)) ([]byte, error) {
	for {
		b, err := s.recvOnce(idle)
		if idle != nil && errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		return b, err
	}
}

func (s *nlSocket) recvOnce(idle func(since time.Time)) ([]byte, error) {
	if idle != nil {
		if err := s.f.SetReadDeadline(time.Now().Add(idleRecheck)); err != nil {
			return nil, err
		}
	}
	var n int
	var err error
	rerr := s.rc.Read(func(fd uintptr) bool {
		var since time.Time
		if idle != nil {
			since = time.Now()
		}
		n, _, err = unix.Recvfrom(int(fd), s.buf, unix.MSG_TRUNC)
		if err == unix.EAGAIN {
			if idle != nil {
				idle(since)
			}
			return false
		}
		return err != unix.EINTR
	})
	if rerr != nil {
		return nil, rerr
	}
	if err != nil {
		return nil, err
	}
	if n > len(s.buf) {
		return nil, fmt.Errorf("%w: %d bytes", errTruncated, n)
	}
	return s.buf[:n], nil
}

// netlink message header (struct nlmsghdr) and constants.
const (
	nlmsgHdrLen  = 16
	nlmsgNoop    = 0x1
	nlmsgError   = 0x2
	nlmsgDone    = 0x3
	nlmFRequest  = 0x1
	nlmFMulti    = 0x2
	nlmFAck      = 0x4
	nlmFDumpIntr = 0x10
	nlmFDump     = 0x300
	nlmFExcl     = 0x200
	nlmFCreate   = 0x400
)

type nlMsg struct {
	typ, flags uint16
	seq        uint32
	data       []byte // after the header
}

var errMsg = errors.New("malformed netlink message")

// nextMsg splits the first message off b (messages are 4-byte aligned).
func nextMsg(b []byte) (m nlMsg, rest []byte, err error) {
	if len(b) < nlmsgHdrLen {
		return m, nil, errMsg
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < nlmsgHdrLen || l > len(b) {
		return m, nil, errMsg
	}
	m.typ = binary.NativeEndian.Uint16(b[4:])
	m.flags = binary.NativeEndian.Uint16(b[6:])
	m.seq = binary.NativeEndian.Uint32(b[8:])
	m.data = b[nlmsgHdrLen:l]
	l = min((l+3)&^3, len(b))
	return m, b[l:], nil
}

// errnoOf reads the error code of an NLMSG_ERROR or NLMSG_DONE payload (a
// negative errno; 0 is an acknowledgement).
func errnoOf(data []byte) error {
	if len(data) < 4 {
		return errMsg
	}
	if code := int32(binary.NativeEndian.Uint32(data)); code < 0 {
		return unix.Errno(-code)
	}
	return nil
}

// appendHeader appends a netlink header plus nfgenmsg for a ctnetlink request;
// the length is patched by finishMsg.
func appendHeader(b []byte, msgType uint16, flags uint16, seq uint32, family uint8) []byte {
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint16(b, subsysCTNetlink<<8|msgType)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, family, 0, 0, 0) // nfgenmsg: family, version 0, res_id 0
}

func finishMsg(b []byte, start int) []byte {
	binary.NativeEndian.PutUint32(b[start:], uint32(len(b)-start))
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}
