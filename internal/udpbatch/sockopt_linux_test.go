//go:build linux

package udpbatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestListenReusePort(t *testing.T) {
	for _, tc := range []struct{ network, ip string }{{"udp4", "127.0.0.1"}, {"udp6", "::1"}} {
		t.Run(tc.network, func(t *testing.T) {
			if tc.network == "udp6" {
				needIPv6(t)
			}
			ctx := context.Background()
			a, err := ListenReusePort(ctx, tc.network, net.JoinHostPort(tc.ip, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			addr := a.LocalAddr().(*net.UDPAddr).AddrPort()
			b, err := ListenReusePort(ctx, tc.network, addr.String())
			if err != nil {
				t.Fatalf("second socket on %v: %v", addr, err)
			}
			defer b.Close()
			// Without SO_REUSEPORT the port is taken.
			if plain, err := net.ListenUDP(tc.network, net.UDPAddrFromAddrPort(addr)); err == nil {
				_ = plain.Close()
				t.Fatalf("plain listen on %v succeeded", addr)
			}

			// Many source ports, one datagram each: the kernel hashes
			// flows over both sockets.
			const senders = 64
			sources := map[netip.AddrPort]bool{}
			for i := range senders {
				s := listenConn(t, tc.network, net.JoinHostPort(tc.ip, "0"), 1)
				sources[local(s, "")] = true
				ms := []Message{{Buf: []byte(fmt.Sprint(i)), N: len(fmt.Sprint(i)), Addr: addr}}
				if n, err := s.WriteBatch(ms); n != 1 || err != nil {
					t.Fatalf("sender %d: %d, %v", i, n, err)
				}
			}
			type result struct {
				sock int
				from netip.AddrPort
			}
			results := make(chan result, senders)
			readerErrs := make(chan error, 2)
			for i, uc := range []*net.UDPConn{a, b} {
				c := newConn(t, uc, 8)
				go func() {
					ms := NewMessages(8, 64)
					for {
						n, err := c.ReadBatch(ms)
						if err != nil {
							readerErrs <- err
							return
						}
						for _, m := range ms[:n] {
							results <- result{i, m.Addr}
						}
					}
				}()
			}
			perSock := [2]int{}
			timeout := time.After(waitTimeout)
			for range senders {
				select {
				case r := <-results:
					if !sources[r.from] {
						t.Fatalf("datagram from unknown or repeated source %v", r.from)
					}
					delete(sources, r.from)
					perSock[r.sock]++
				case <-timeout:
					t.Fatalf("only %v of %d datagrams arrived", perSock, senders)
				}
			}
			if perSock[0] == 0 || perSock[1] == 0 {
				t.Errorf("the kernel did not spread flows: %v", perSock)
			}
			// Both close cleanly and unblock their readers.
			if err := errors.Join(a.Close(), b.Close()); err != nil {
				t.Fatal(err)
			}
			for range 2 {
				select {
				case err := <-readerErrs:
					if !errors.Is(err, net.ErrClosed) {
						t.Errorf("reader: %v", err)
					}
				case <-time.After(waitTimeout):
					t.Fatal("reader still blocked after Close")
				}
			}
		})
	}
}

func TestListenReusePortErrors(t *testing.T) {
	if _, err := ListenReusePort(context.Background(), "tcp", "127.0.0.1:0"); err == nil {
		t.Error("tcp accepted")
	}
	if _, err := ListenReusePort(context.Background(), "udp4", "not an address"); err == nil {
		t.Error("bad address accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if uc, err := ListenReusePort(ctx, "udp4", "127.0.0.1:0"); err == nil {
		_ = uc.Close()
		t.Error("cancelled context accepted")
	}
}

func TestSetBuffers(t *testing.T) {
	uc := listenUDP(t, "udp4", "127.0.0.1:0")
	const size = 4 << 20
	if err := SetBuffers(uc, size); err != nil {
		t.Fatal(err)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var rcv, snd int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		rcv, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
		if serr == nil {
			snd, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	// The kernel doubles the request; without CAP_NET_ADMIN it caps it at
	// net.core.rmem_max / wmem_max.
	if os.Geteuid() == 0 && (rcv < size || snd < size) {
		t.Errorf("as root: SO_RCVBUF %d, SO_SNDBUF %d, want >= %d", rcv, snd, size)
	}
	t.Logf("SO_RCVBUF %d SO_SNDBUF %d", rcv, snd)

	if err := SetBuffers(uc, 0); err == nil {
		t.Error("size 0 accepted")
	}
	if err := SetBuffers(nil, size); err == nil {
		t.Error("nil conn accepted")
	}
	if err := SetBuffers(uc, 1<<62); err != nil {
		t.Errorf("huge size: %v", err)
	}
	_ = uc.Close()
	if err := SetBuffers(uc, size); !errors.Is(err, net.ErrClosed) {
		t.Errorf("closed conn: %v", err)
	}
}
