package egressprobe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Family is an address family to probe.
type Family string

const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// ParseFamily accepts ipv4 and ipv6.
func ParseFamily(s string) (Family, error) {
	switch Family(s) {
	case IPv4, IPv6:
		return Family(s), nil
	}
	return "", fmt.Errorf("%q is not one of ipv4, ipv6", s)
}

// Matches reports whether addr belongs to the family.
func (f Family) Matches(addr netip.Addr) bool {
	if f == IPv4 {
		return addr.Is4()
	}
	return addr.Is6() && !addr.Is4In6()
}

func (f Family) udp() string {
	if f == IPv6 {
		return "udp6"
	}
	return "udp4"
}

func (f Family) tcp() string {
	if f == IPv6 {
		return "tcp6"
	}
	return "tcp4"
}

// Methods of a probe.
const (
	MethodSTUN = "stun"
	MethodHTTP = "http"
)

// Kinds of failure, for metrics.
const (
	KindTimeout     = "timeout"
	KindUnreachable = "unreachable"
	KindInvalid     = "invalid"
	KindHTTPStatus  = "http_status"
	KindOther       = "other"
)

// Error is one failed attempt against one server.
type Error struct {
	Method string
	Server string
	Kind   string
	Err    error
}

func (e *Error) Error() string { return e.Method + " " + e.Server + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// errInvalid marks a reply that is not a usable answer.
var errInvalid = errors.New("invalid reply")

// kindOf classifies a transport error.
func kindOf(err error) string {
	var ne net.Error
	var se *statusError
	switch {
	case errors.As(err, &se):
		return KindHTTPStatus
	case errors.Is(err, errInvalid):
		return KindInvalid
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH),
		errors.Is(err, syscall.EADDRNOTAVAIL), errors.Is(err, syscall.EAFNOSUPPORT):
		return KindUnreachable
	}
	var dnsErr *net.DNSError
	var addrErr *net.AddrError
	if errors.As(err, &dnsErr) || errors.As(err, &addrErr) {
		return KindUnreachable
	}
	return KindOther
}

// Prober asks its servers in order until one answers.
type Prober struct {
	// STUNServers are host:port of STUN servers, asked first, in order.
	STUNServers []string
	// HTTPURLs are echo URLs answering with the caller's address, asked after
	// every STUN server failed, in order.
	HTTPURLs []string
	// Timeout bounds one attempt against one server.
	Timeout time.Duration
	// RTO is the STUN retransmission timeout (RFC 8489 §6.2.1); 0 means 250 ms.
	RTO time.Duration
	// OnAttempt, when set, is told about every attempt: err nil on success.
	OnAttempt func(family Family, method, server string, err *Error)
}

// Result is a discovered address and who told it.
type Result struct {
	Address netip.Addr
	Method  string
	Server  string
}

// Probe finds the family's egress address: each STUN server, then each HTTP
// URL, until one answers. When all fail, the error joins every attempt's *Error.
func (p *Prober) Probe(ctx context.Context, family Family) (Result, error) {
	var errs []error
	try := func(method, server string, fn func(ctx context.Context) (netip.Addr, error)) (Result, bool) {
		actx, cancel := context.WithTimeout(ctx, p.timeout())
		addr, err := fn(actx)
		cancel()
		if err == nil && !family.Matches(addr) {
			err = fmt.Errorf("%w: address %s is not %s", errInvalid, addr, family)
		}
		if err != nil {
			e := &Error{Method: method, Server: server, Kind: kindOf(err), Err: err}
			if ctx.Err() != nil {
				e.Kind = KindOther // our own cancellation, not the server's fault
			}
			errs = append(errs, e)
			if p.OnAttempt != nil {
				p.OnAttempt(family, method, server, e)
			}
			return Result{}, false
		}
		if p.OnAttempt != nil {
			p.OnAttempt(family, method, server, nil)
		}
		return Result{Address: addr, Method: method, Server: server}, true
	}
	for _, s := range p.STUNServers {
		if ctx.Err() != nil {
			break
		}
		if r, ok := try(MethodSTUN, s, func(ctx context.Context) (netip.Addr, error) { return STUN(ctx, family, s, p.RTO) }); ok {
			return r, nil
		}
	}
	for _, u := range p.HTTPURLs {
		if ctx.Err() != nil {
			break
		}
		if r, ok := try(MethodHTTP, u, func(ctx context.Context) (netip.Addr, error) { return HTTP(ctx, family, u) }); ok {
			return r, nil
		}
	}
	if len(errs) == 0 {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		return Result{}, errors.New("no STUN server or HTTP URL configured")
	}
	return Result{}, errors.Join(errs...)
}

func (p *Prober) timeout() time.Duration {
	if p.Timeout <= 0 {
		return 5 * time.Second
	}
	return p.Timeout
}

// HTTP asks an echo URL (e.g. https://checkip.amazonaws.com) over the family's
// TCP and parses the body as one address. The body is read up to 1 KiB.
func HTTP(ctx context.Context, family Family, url string) (netip.Addr, error) {
	dialer := &net.Dialer{}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return dialer.DialContext(ctx, family.tcp(), addr)
		},
		DisableKeepAlives: true,
		// No proxy: the address the echo sees must be this host's egress.
		Proxy: nil,
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return netip.Addr{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := (&http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		return netip.Addr{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxEchoBody+1))
	if err != nil {
		return netip.Addr{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return netip.Addr{}, &statusError{code: resp.StatusCode}
	}
	if len(body) > maxEchoBody {
		return netip.Addr{}, fmt.Errorf("%w: body longer than %d bytes", errInvalid, maxEchoBody)
	}
	return ParseEchoBody(body)
}

// maxEchoBody bounds what an echo URL may answer: an address and some space.
const maxEchoBody = 1024

type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP status %d", e.code) }
