// Package udpbatch is a small, allocation-free batched UDP I/O library for
// Linux, built on recvmmsg(2) and sendmmsg(2).
//
// It exists because golang.org/x/net/ipv4's ReadBatch allocates a
// *net.UDPAddr (and a net.IP) for every received message, which breaks a
// relay's "zero allocations per forwarded packet" budget. A [Conn] wraps a
// *net.UDPConn, issues the system calls itself through the socket's
// syscall.RawConn (so blocking, deadlines and Close go through Go's network
// poller) and returns addresses as netip.AddrPort values parsed from buffers
// that are allocated once, in [New].
//
// Concurrency rules for a [Conn]:
//
//   - ReadBatch and WriteBatch use separate internal buffers and may run at
//     the same time from different goroutines.
//   - Concurrent ReadBatch calls are safe but serialised (one waits for the
//     other); concurrent WriteBatch calls likewise. For parallel reads open
//     several sockets on one port with [ListenReusePort].
//   - Closing the wrapped *net.UDPConn (or setting a deadline on it) unblocks
//     pending calls; the returned error satisfies errors.Is(err, net.ErrClosed)
//     (or os.ErrDeadlineExceeded).
//
// Dual-stack sockets are handled: IPv4 peers of an AF_INET6 socket are
// reported unmapped (1.2.3.4, not ::ffff:1.2.3.4), and IPv4 destinations are
// encoded as v4-mapped addresses when written through an AF_INET6 socket.
//
// [Forward] and [RunLoad] are the plain batched forwarder and the load
// generator used as the baseline of relay benchmarks.
package udpbatch
