//go:build linux

package udpbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Control message sizes: a UDP_GRO message carries an int (the segment size),
// a UDP_SEGMENT message a uint16. The read buffer leaves room for another
// message the socket may have been asked for.
var (
	readCtrlSize  = unix.CmsgSpace(4) + unix.CmsgSpace(64)
	writeCtrlSize = unix.CmsgSpace(2)
)

// EnableOffload turns on UDP receive offload (gro: UDP_GRO, the kernel hands
// over runs of one sender's datagrams as one buffer, see Message.Seg) and
// generic segmentation offload on send (gso: WriteBatch sends a segmented
// message with one UDP_SEGMENT system call) where the kernel and the socket
// support them. It returns what is on afterwards; the error says why a
// requested offload is not (errors.Is(err, errors.ErrUnsupported)). Without
// an offload the Conn behaves as before: reads return single datagrams and
// segmented messages are sent as separate datagrams. GRO is a property of the
// socket: turn it on only through the Conn that reads it.
func (c *Conn) EnableOffload(gro, gso bool) (Offload, error) {
	if !c.ok() {
		return Offload{}, errors.New("udpbatch: Conn not made by New")
	}
	var groErr, gsoErr error
	if err := c.rc.Control(func(fd uintptr) {
		if gro {
			groErr = enableGRO(int(fd))
		}
		if gso {
			// UDP_SEGMENT can be read back since it exists (Linux 4.18):
			// a socket that knows the option accepts the control message.
			if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT); err != nil {
				gsoErr = fmt.Errorf("udpbatch: UDP_SEGMENT: %w (%w)", errors.ErrUnsupported, os.NewSyscallError("getsockopt", err))
			}
		}
	}); err != nil {
		return c.Offload(), fmt.Errorf("udpbatch: %w", err)
	}
	if gro && groErr == nil {
		c.r.gro.Store(true)
	}
	if gso && gsoErr == nil {
		c.w.gso.Store(true)
	}
	return c.Offload(), errors.Join(groErr, gsoErr)
}

// enableGRO sets UDP_GRO and reads it back (kernels before 5.12 cannot read
// it back, and their UDP_GRO had bugs wireguard-go avoids too).
func enableGRO(fd int) error {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1); err != nil {
		return fmt.Errorf("udpbatch: UDP_GRO: %w (%w)", errors.ErrUnsupported, os.NewSyscallError("setsockopt", err))
	}
	v, err := unix.GetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO)
	if err != nil || v != 1 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 0)
		return fmt.Errorf("udpbatch: UDP_GRO cannot be read back: %w", errors.ErrUnsupported)
	}
	return nil
}

// Offload returns the offloads in use. GSO turns off by itself after a
// segmented send failed with EIO (the route's device cannot checksum).
func (c *Conn) Offload() Offload {
	if c == nil {
		return Offload{}
	}
	return Offload{GRO: c.r.gro.Load(), GSO: c.w.gso.Load()}
}

// groSize returns the segment size of a UDP_GRO control message in ctrl, or
// 0 if there is none. It does not allocate.
func groSize(ctrl []byte) int {
	hdr := unix.CmsgLen(0)
	for len(ctrl) >= hdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
		l := int(h.Len)
		if l < hdr || l > len(ctrl) {
			return 0
		}
		if h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO {
			data := ctrl[hdr:l]
			switch {
			case len(data) >= 4:
				return int(binary.NativeEndian.Uint32(data))
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data))
			}
			return 0
		}
		next := unix.CmsgSpace(l - hdr)
		if next >= len(ctrl) {
			return 0
		}
		ctrl = ctrl[next:]
	}
	return 0
}

// initSegmentCtrl writes the header of a UDP_SEGMENT control message into
// ctrl, which must be writeCtrlSize bytes long.
func initSegmentCtrl(ctrl []byte) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
}

// setSegmentSize stores size in a control message made by initSegmentCtrl.
func setSegmentSize(ctrl []byte, size uint16) {
	binary.NativeEndian.PutUint16(ctrl[unix.CmsgLen(0):], size)
}
