// Package probetest runs loopback servers for egress probe tests: a STUN server
// answering Binding requests (built with pion/stun) and an HTTP echo server, each
// able to report an address of the test's choosing and to misbehave on request.
package probetest

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/pion/stun/v3"
)

// Mode is how a server answers.
type Mode int

const (
	// Answer reports the mapped address (the sender's, or the one Set).
	Answer Mode = iota
	// Silent drops every request.
	Silent
	// Garbage answers with bytes that are no STUN message (or, HTTP, no address).
	Garbage
	// ErrorReply answers with a Binding error response (HTTP: status 500).
	ErrorReply
	// WrongTransaction answers a success response for another transaction.
	WrongTransaction
)

// STUNServer is a UDP STUN server on loopback.
type STUNServer struct {
	// Addr is host:port to give the probe.
	Addr string

	conn     *net.UDPConn
	mu       sync.Mutex
	mode     Mode
	mapped   netip.Addr // zero: the sender's address
	requests atomic.Int64
	done     chan struct{}
}

// NewSTUNServer listens on 127.0.0.1:0 (network "udp4") or [::1]:0 ("udp6") and
// serves until the test ends.
func NewSTUNServer(t testing.TB, network string) *STUNServer {
	t.Helper()
	host := "127.0.0.1:0"
	if network == "udp6" {
		host = "[::1]:0"
	}
	laddr, err := net.ResolveUDPAddr(network, host)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP(network, laddr)
	if err != nil {
		t.Fatal(err)
	}
	s := &STUNServer{Addr: conn.LocalAddr().String(), conn: conn, done: make(chan struct{})}
	go s.serve()
	t.Cleanup(func() { conn.Close(); <-s.done })
	return s
}

// Set changes the mode and the address reported (zero: the sender's own).
func (s *STUNServer) Set(mode Mode, mapped netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode, s.mapped = mode, mapped
}

// Requests is how many datagrams the server received.
func (s *STUNServer) Requests() int64 { return s.requests.Load() }

func (s *STUNServer) serve() {
	defer close(s.done)
	buf := make([]byte, 1500)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.requests.Add(1)
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		s.mu.Lock()
		mode, mapped := s.mode, s.mapped
		s.mu.Unlock()
		ip, port := from.IP, from.Port
		if mapped.IsValid() {
			ip = mapped.AsSlice()
		}
		var out []byte
		switch mode {
		case Silent:
			continue
		case Garbage:
			out = []byte("HTTP/1.1 400 Bad Request\r\n\r\nthis is not STUN")
		case ErrorReply:
			m, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingError,
				stun.ErrorCodeAttribute{Code: stun.CodeServerError, Reason: []byte("test says no")}, stun.Fingerprint)
			if err != nil {
				continue
			}
			out = m.Raw
		case WrongTransaction:
			m, err := stun.Build(stun.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: ip, Port: port}, stun.Fingerprint)
			if err != nil {
				continue
			}
			out = m.Raw
		default:
			m, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: ip, Port: port}, stun.Fingerprint)
			if err != nil {
				continue
			}
			out = m.Raw
		}
		_, _ = s.conn.WriteToUDP(out, from)
	}
}

// EchoServer is an HTTP server on loopback that answers GET with the caller's
// address as text, as checkip.amazonaws.com does.
type EchoServer struct {
	// URL is the echo URL.
	URL string

	mu     sync.Mutex
	mode   Mode
	mapped netip.Addr
}

// NewEchoServer serves on 127.0.0.1:0 until the test ends.
func NewEchoServer(t testing.TB) *EchoServer {
	t.Helper()
	e := &EchoServer{}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

// Set changes the mode and the address reported (zero: the caller's own).
func (e *EchoServer) Set(mode Mode, mapped netip.Addr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mode, e.mapped = mode, mapped
}

func (e *EchoServer) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	mode, mapped := e.mode, e.mapped
	e.mu.Unlock()
	switch mode {
	case Silent:
		<-r.Context().Done() // hangs until the client gives up
		return
	case Garbage:
		_, _ = w.Write([]byte("<html>not an address</html>\n"))
		return
	case ErrorReply:
		http.Error(w, "nope", http.StatusInternalServerError)
		return
	}
	addr := mapped
	if !addr.IsValid() {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		addr = ap.Addr()
	}
	_, _ = w.Write([]byte(addr.String() + "\n"))
}
