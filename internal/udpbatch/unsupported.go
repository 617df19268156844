//go:build !linux

package udpbatch

import (
	"context"
	"errors"
	"fmt"
	"net"
)

// errUnsupported is returned on systems without recvmmsg/sendmmsg support.
var errUnsupported = fmt.Errorf("udpbatch: %w: needs Linux recvmmsg/sendmmsg", errors.ErrUnsupported)

// Conn is only implemented on Linux; see the Linux documentation.
type Conn struct{ uc *net.UDPConn }

// New returns an error wrapping errors.ErrUnsupported on this system.
func New(c *net.UDPConn, maxBatch int) (*Conn, error) { return nil, errUnsupported }

// UDPConn returns the wrapped connection.
func (c *Conn) UDPConn() *net.UDPConn {
	if c == nil {
		return nil
	}
	return c.uc
}

// ReadBatch returns an error wrapping errors.ErrUnsupported on this system.
func (c *Conn) ReadBatch(ms []Message) (int, error) { return 0, errUnsupported }

// WriteBatch returns an error wrapping errors.ErrUnsupported on this system.
func (c *Conn) WriteBatch(ms []Message) (int, error) { return 0, errUnsupported }

// EnableOffload turns nothing on on this system.
func (c *Conn) EnableOffload(gro, gso bool) (Offload, error) { return Offload{}, errUnsupported }

// Offload reports no offloads on this system.
func (c *Conn) Offload() Offload { return Offload{} }

// Stats returns zero counters on this system.
func (c *Conn) Stats() Stats { return Stats{} }

// ListenReusePort returns an error wrapping errors.ErrUnsupported on this system.
func ListenReusePort(ctx context.Context, network, address string) (*net.UDPConn, error) {
	return nil, errUnsupported
}

// SetBuffers sets the buffers with the portable net API on this system.
func SetBuffers(c *net.UDPConn, bytes int) error {
	if c == nil {
		return errors.New("udpbatch: nil *net.UDPConn")
	}
	return errors.Join(c.SetReadBuffer(bytes), c.SetWriteBuffer(bytes))
}
