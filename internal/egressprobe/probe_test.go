package egressprobe_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/egressprobe"
	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
)

// attempts records what the prober reports.
type attempts struct {
	mu  sync.Mutex
	got []string // "method server kind" ("ok" for success)
}

func (a *attempts) record(_ egressprobe.Family, method, server string, err *egressprobe.Error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	kind := "ok"
	if err != nil {
		kind = err.Kind
	}
	a.got = append(a.got, method+" "+server+" "+kind)
}

func (a *attempts) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.got...)
}

var public = netip.MustParseAddr("203.0.113.7")

func TestSTUNReportsMappedAddress(t *testing.T) {
	srv := probetest.NewSTUNServer(t, "udp4")
	// The sender's own address, as a real server sees it.
	addr, err := egressprobe.STUN(context.Background(), egressprobe.IPv4, srv.Addr, 0)
	if err != nil || addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("STUN = %v, %v; want 127.0.0.1", addr, err)
	}
	// A NAT in between: the server reports another address.
	srv.Set(probetest.Answer, public)
	addr, err = egressprobe.STUN(context.Background(), egressprobe.IPv4, srv.Addr, 0)
	if err != nil || addr != public {
		t.Fatalf("STUN = %v, %v; want %s", addr, err, public)
	}
}

func TestSTUNIPv6(t *testing.T) {
	if ln, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	srv := probetest.NewSTUNServer(t, "udp6")
	v6 := netip.MustParseAddr("2001:db8::7")
	srv.Set(probetest.Answer, v6)
	p := &egressprobe.Prober{STUNServers: []string{srv.Addr}, Timeout: 5 * time.Second}
	r, err := p.Probe(context.Background(), egressprobe.IPv6)
	if err != nil || r.Address != v6 {
		t.Fatalf("Probe(ipv6) = %v, %v", r, err)
	}
	// An IPv6 server cannot tell the IPv4 address.
	if _, err := p.Probe(context.Background(), egressprobe.IPv4); err == nil {
		t.Fatal("IPv4 probe to an IPv6-only server succeeded")
	}
}

func TestHTTPEcho(t *testing.T) {
	echo := probetest.NewEchoServer(t)
	addr, err := egressprobe.HTTP(context.Background(), egressprobe.IPv4, echo.URL)
	if err != nil || addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("HTTP = %v, %v", addr, err)
	}
	echo.Set(probetest.Answer, public)
	if addr, err = egressprobe.HTTP(context.Background(), egressprobe.IPv4, echo.URL); err != nil || addr != public {
		t.Fatalf("HTTP = %v, %v", addr, err)
	}
}

// Failing servers are skipped in order, every failure is reported with its kind,
// and the first server that answers wins.
func TestProberFailover(t *testing.T) {
	silent := probetest.NewSTUNServer(t, "udp4")
	silent.Set(probetest.Silent, netip.Addr{})
	garbage := probetest.NewSTUNServer(t, "udp4")
	garbage.Set(probetest.Garbage, netip.Addr{})
	errReply := probetest.NewSTUNServer(t, "udp4")
	errReply.Set(probetest.ErrorReply, netip.Addr{})
	wrongTx := probetest.NewSTUNServer(t, "udp4")
	wrongTx.Set(probetest.WrongTransaction, netip.Addr{})
	good := probetest.NewSTUNServer(t, "udp4")
	good.Set(probetest.Answer, public)
	deadEcho := probetest.NewEchoServer(t)
	deadEcho.Set(probetest.ErrorReply, netip.Addr{})

	var a attempts
	p := &egressprobe.Prober{
		STUNServers: []string{silent.Addr, garbage.Addr, errReply.Addr, wrongTx.Addr, "[::1]:3478", good.Addr},
		HTTPURLs:    []string{deadEcho.URL},
		Timeout:     time.Second, RTO: 50 * time.Millisecond,
		OnAttempt: a.record,
	}
	r, err := p.Probe(context.Background(), egressprobe.IPv4)
	if err != nil || r.Address != public || r.Server != good.Addr || r.Method != egressprobe.MethodSTUN {
		t.Fatalf("Probe = %+v, %v", r, err)
	}
	want := []string{
		"stun " + silent.Addr + " timeout",
		"stun " + garbage.Addr + " invalid",
		"stun " + errReply.Addr + " invalid",
		"stun " + wrongTx.Addr + " timeout",
		"stun [::1]:3478 unreachable", // no IPv4 address: fails without DNS or network
		"stun " + good.Addr + " ok",
	}
	if got := a.list(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("attempts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if garbage.Requests() == 0 || silent.Requests() == 0 {
		t.Fatal("servers were not asked")
	}

	// Every STUN server down: the HTTP echo is the fallback.
	goodEcho := probetest.NewEchoServer(t)
	goodEcho.Set(probetest.Answer, public)
	a = attempts{}
	p = &egressprobe.Prober{STUNServers: []string{silent.Addr}, HTTPURLs: []string{deadEcho.URL, goodEcho.URL},
		Timeout: time.Second, RTO: 50 * time.Millisecond, OnAttempt: a.record}
	r, err = p.Probe(context.Background(), egressprobe.IPv4)
	if err != nil || r.Address != public || r.Method != egressprobe.MethodHTTP || r.Server != goodEcho.URL {
		t.Fatalf("Probe = %+v, %v", r, err)
	}
	if got := a.list(); len(got) != 3 || !strings.HasSuffix(got[1], " http_status") {
		t.Fatalf("attempts = %v", got)
	}
}

// Every server failing: the error names each attempt.
func TestProberAllFail(t *testing.T) {
	silent := probetest.NewSTUNServer(t, "udp4")
	silent.Set(probetest.Silent, netip.Addr{})
	hang := probetest.NewEchoServer(t)
	hang.Set(probetest.Silent, netip.Addr{})
	garbage := probetest.NewEchoServer(t)
	garbage.Set(probetest.Garbage, netip.Addr{})
	var a attempts
	p := &egressprobe.Prober{STUNServers: []string{silent.Addr}, HTTPURLs: []string{hang.URL, garbage.URL},
		Timeout: time.Second, RTO: 50 * time.Millisecond, OnAttempt: a.record}
	_, err := p.Probe(context.Background(), egressprobe.IPv4)
	var pe *egressprobe.Error
	if err == nil || !errors.As(err, &pe) || !strings.Contains(err.Error(), silent.Addr) || !strings.Contains(err.Error(), garbage.URL) {
		t.Fatalf("Probe error = %v", err)
	}
	got := a.list()
	if len(got) != 3 || !strings.HasSuffix(got[0], " timeout") || !strings.HasSuffix(got[1], " timeout") || !strings.HasSuffix(got[2], " invalid") {
		t.Fatalf("attempts = %v", got)
	}
	// Nothing configured.
	if _, err := (&egressprobe.Prober{}).Probe(context.Background(), egressprobe.IPv4); err == nil {
		t.Fatal("empty prober succeeded")
	}
	// A cancelled context stops at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Probe(ctx, egressprobe.IPv4); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Probe = %v", err)
	}
}

func TestParseEchoBody(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7\n": "203.0.113.7", "  2001:db8::1 \r\n": "2001:db8::1", "::ffff:203.0.113.7": "203.0.113.7",
		"": "", "0.0.0.0": "", "224.0.0.1": "", "255.255.255.255": "", "fe80::1%eth0": "", "203.0.113.7, 1.2.3.4": "", "<html>": "",
	} {
		got, err := egressprobe.ParseEchoBody([]byte(in))
		if want == "" {
			if err == nil {
				t.Errorf("ParseEchoBody(%q) = %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("ParseEchoBody(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
}
