//go:build linux

package udpbatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// ListenReusePort listens on a UDP address ("udp", "udp4" or "udp6") with
// SO_REUSEADDR and SO_REUSEPORT set, so that several sockets of the same user
// can bind one port and the kernel spreads flows (by 4-tuple hash) across
// them. Use it once per reading goroutine.
func ListenReusePort(ctx context.Context, network, address string) (*net.UDPConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, err
	}
	uc, ok := pc.(*net.UDPConn)
	if !ok {
		_ = pc.Close()
		return nil, fmt.Errorf("udpbatch: listen %s: got %T, not *net.UDPConn", network, pc)
	}
	return uc, nil
}

// reusePort is a net.ListenConfig.Control function setting SO_REUSEADDR and
// SO_REUSEPORT.
func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt", serr)
}

// SetBuffers asks for socket receive and send buffers of bytes each. It tries
// SO_RCVBUFFORCE / SO_SNDBUFFORCE first (honoured for CAP_NET_ADMIN, beyond
// net.core.rmem_max / wmem_max) and falls back to SO_RCVBUF / SO_SNDBUF, which
// the kernel silently caps at those sysctls. It is best effort: callers may
// ignore the error, which is only returned if even the fallback fails. The
// kernel doubles the value for bookkeeping overhead.
func SetBuffers(c *net.UDPConn, bytes int) error {
	if c == nil {
		return errors.New("udpbatch: nil *net.UDPConn")
	}
	if bytes <= 0 {
		return fmt.Errorf("udpbatch: invalid buffer size %d", bytes)
	}
	bytes = min(bytes, math.MaxInt32/2)
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("udpbatch: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = errors.Join(
			setBuffer(int(fd), unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, bytes),
			setBuffer(int(fd), unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, bytes),
		)
	}); err != nil {
		return fmt.Errorf("udpbatch: %w", err)
	}
	return serr
}

// setBuffer sets one buffer size, forced if permitted.
func setBuffer(fd, force, plain, bytes int) error {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, bytes) == nil {
		return nil
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, bytes))
}
