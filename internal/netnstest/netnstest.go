// Package netnstest builds throw-away network namespaces for tests: namespaces,
// veth pairs, addresses and routes, an nftables rule that switches connection
// tracking on, and the nf_conntrack_acct sysctl, all from Go (no ip, nft or
// sysctl binaries). Everything is removed in t.Cleanup. It needs root (really
// CAP_SYS_ADMIN and CAP_NET_ADMIN); Require skips a test that lacks it.
package netnstest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Require skips the test unless it runs as root on Linux.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) to create network namespaces; run as root, as CI does")
	}
}

// NS is an unnamed network namespace owned by one test.
type NS struct {
	Name   string
	Handle netns.NsHandle
	nl     *netlink.Handle
}

// New creates a namespace with lo up; it is deleted (its last file descriptor
// closed) in t.Cleanup. name only labels errors.
func New(t testing.TB, name string) *NS {
	t.Helper()
	Require(t)
	type res struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// The thread is left in the new namespace and never unlocked, so the Go
		// runtime ends it with this goroutine instead of reusing it.
		runtime.LockOSThread()
		h, err := netns.New()
		ch <- res{h, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("create netns %s: %v", name, r.err)
	}
	ns := &NS{Name: name, Handle: r.h}
	t.Cleanup(func() { _ = ns.Handle.Close() })
	nl, err := netlink.NewHandleAt(r.h)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	ns.nl = nl
	t.Cleanup(nl.Close)
	lo, err := nl.LinkByName("lo")
	if err != nil {
		t.Fatalf("%s: lo: %v", name, err)
	}
	if err := nl.LinkSetUp(lo); err != nil {
		t.Fatalf("%s: lo up: %v", name, err)
	}
	return ns
}

// FD is the namespace's file descriptor, e.g. for netlink.Config.NetNS.
func (n *NS) FD() int { return int(n.Handle) }

// Do runs fn on an OS thread inside the namespace and returns its error. Sockets
// fn opens stay in the namespace and may be used from any goroutine afterwards.
func (n *NS) Do(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := netns.Set(n.Handle); err != nil {
			ch <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ch <- fn()
	}()
	return <-ch
}

// Listen opens a listener inside the namespace, closed in t.Cleanup.
func (n *NS) Listen(t testing.TB, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func() (err error) { ln, err = net.Listen(network, addr); return err }); err != nil {
		t.Fatalf("%s: listen %s %s: %v", n.Name, network, addr, err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// ListenPacket opens a packet socket inside the namespace, closed in t.Cleanup.
func (n *NS) ListenPacket(t testing.TB, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := n.Do(func() (err error) { pc, err = net.ListenPacket(network, addr); return err }); err != nil {
		t.Fatalf("%s: listen %s %s: %v", n.Name, network, addr, err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// Dial connects from inside the namespace; the connection is closed in t.Cleanup.
func (n *NS) Dial(t testing.TB, network, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	if err := n.Do(func() (err error) { c, err = net.Dial(network, addr); return err }); err != nil {
		t.Fatalf("%s: dial %s %s: %v", n.Name, network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Exchange is one TCP connection of known size from n: it dials addr (served by
// ln, which may be in another namespace), sends up bytes, reads down bytes the
// server sends back, and closes both ends. It returns the client's and the
// server's ports, the flow's keys in a conntrack table.
func (n *NS) Exchange(t testing.TB, ln net.Listener, addr string, up, down int) (clientPort, serverPort uint16) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if _, err := io.CopyN(io.Discard, c, int64(up)); err != nil {
			done <- err
			return
		}
		_, err = c.Write(make([]byte, down))
		done <- err
	}()
	c := n.Dial(t, "tcp4", addr)
	if _, err := c.Write(make([]byte, up)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, c, int64(down)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	return uint16(c.LocalAddr().(*net.TCPAddr).Port), uint16(ln.Addr().(*net.TCPAddr).Port)
}

// Veth joins a and b with a veth pair (aName in a, bName in b), gives each end
// its address (CIDR notation, e.g. "192.0.2.1/24") and brings both up. The pair
// goes with the namespaces.
func Veth(t testing.TB, a *NS, aName, aAddr string, b *NS, bName, bAddr string) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: aName},
		PeerName:      bName,
		PeerNamespace: netlink.NsFd(b.Handle),
	}
	if err := a.nl.LinkAdd(veth); err != nil {
		t.Fatalf("veth %s(%s) - %s(%s): %v", aName, a.Name, bName, b.Name, err)
	}
	t.Cleanup(func() {
		if l, err := a.nl.LinkByName(aName); err == nil {
			_ = a.nl.LinkDel(l)
		}
	})
	a.AddrUp(t, aName, aAddr)
	b.AddrUp(t, bName, bAddr)
}

// AddrUp adds an address to a link and brings it up.
func (n *NS) AddrUp(t testing.TB, link, cidr string) {
	t.Helper()
	l, err := n.nl.LinkByName(link)
	if err != nil {
		t.Fatalf("%s: link %s: %v", n.Name, link, err)
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	// No duplicate address detection delays for IPv6 test addresses.
	addr.Flags |= unix.IFA_F_NODAD
	if err := n.nl.AddrAdd(l, addr); err != nil {
		t.Fatalf("%s: addr %s on %s: %v", n.Name, cidr, link, err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		t.Fatalf("%s: %s up: %v", n.Name, link, err)
	}
}

// Route adds a route to dst (CIDR) through gw (empty: directly on link).
func (n *NS) Route(t testing.TB, dst, link, gw string) {
	t.Helper()
	l, err := n.nl.LinkByName(link)
	if err != nil {
		t.Fatalf("%s: link %s: %v", n.Name, link, err)
	}
	_, ipnet, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Dst: ipnet}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
	} else {
		r.Scope = netlink.SCOPE_LINK
	}
	if err := n.nl.RouteAdd(r); err != nil {
		t.Fatalf("%s: route %s via %s dev %s: %v", n.Name, dst, gw, link, err)
	}
}

// Sysctl writes a value below /proc/sys/net from inside the namespace (the
// net.* sysctls are per namespace), e.g. Sysctl(t, "ipv4/ip_forward", "1").
func (n *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	err := n.Do(func() error {
		return os.WriteFile(filepath.Join("/proc/sys/net", key), []byte(value), 0o644)
	})
	if err != nil {
		t.Fatalf("%s: sysctl net/%s=%s: %v", n.Name, key, value, err)
	}
}

// EnableConntrack makes the namespace track connections (an nftables table with
// a `ct state` rule in input, output and forward: nothing is tracked until a rule
// uses conntrack) and, with acct, switches byte counters on. Entries created
// before the call have no counters.
func (n *NS) EnableConntrack(t testing.TB, acct bool) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.FD()))
	if err != nil {
		t.Fatalf("%s: nftables: %v", n.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "trellis_test"})
	for _, hook := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"in", nftables.ChainHookInput}, {"out", nftables.ChainHookOutput}, {"fwd", nftables.ChainHookForward}} {
		ch := c.AddChain(&nftables.Chain{Name: hook.name, Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: hook.hook, Priority: nftables.ChainPriorityFilter})
		// ct state established,related accept
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				Xor:  binaryutil.NativeEndian.PutUint32(0)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: nft conntrack rules: %v", n.Name, err)
	}
	if acct {
		n.Sysctl(t, "netfilter/nf_conntrack_acct", "1")
	}
}

// DNAT rewrites, for packets this namespace sends (output hook), destination
// from -> to (IPv4): what kube-proxy does for a Service's ClusterIP.
func (n *NS) DNAT(t testing.TB, from, to netip.Addr) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.FD()))
	if err != nil {
		t.Fatalf("%s: nftables: %v", n.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "trellis_test_nat"})
	ch := c.AddChain(&nftables.Chain{Name: "out", Table: tbl, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	f4, t4 := from.As4(), to.As4()
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		// ip daddr == from
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: f4[:]},
		&expr.Immediate{Register: 1, Data: t4[:]},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: nft dnat: %v", n.Name, err)
	}
}

// SNAT rewrites the source of packets leaving through link (postrouting) to
// addr (IPv4): what a node's masquerade rule does for pod traffic.
func (n *NS) SNAT(t testing.TB, link string, addr netip.Addr) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.FD()))
	if err != nil {
		t.Fatalf("%s: nftables: %v", n.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "trellis_test_snat"})
	ch := c.AddChain(&nftables.Chain{Name: "post", Table: tbl, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	a4 := addr.As4()
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(link)},
		&expr.Immediate{Register: 1, Data: a4[:]},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: nft snat: %v", n.Name, err)
	}
}

func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// CountTo adds an nftables counter, in the output hook of this namespace, of
// the packets it sends to dst that connection tracking tracks (ct state new,
// established or related: what conntrack's own counters count) and returns a
// function reading its bytes and packets: the kernel's ground truth of what
// this namespace sent to dst. The rule runs after conntrack (priority filter
// + 10) and accepts nothing itself.
func (n *NS) CountTo(t testing.TB, dst netip.Addr) func() (bytes, packets uint64) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.FD()))
	if err != nil {
		t.Fatalf("%s: nftables: %v", n.Name, err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "trellis_test_count"})
	name := "to_" + strings.NewReplacer(".", "_", ":", "_").Replace(dst.String())
	ch := c.AddChain(&nftables.Chain{Name: name, Table: tbl, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookOutput,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + 10)})
	proto, offset := byte(unix.NFPROTO_IPV4), uint32(16)
	if dst.Is6() && !dst.Is4In6() {
		proto, offset = unix.NFPROTO_IPV6, 24
	}
	c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: uint32(len(dst.Unmap().AsSlice()))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: dst.Unmap().AsSlice()},
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW | expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Counter{},
	}})
	if err := c.Flush(); err != nil {
		t.Fatalf("%s: nft counter to %s: %v", n.Name, dst, err)
	}
	return func() (uint64, uint64) {
		t.Helper()
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatalf("%s: read counter to %s: %v", n.Name, dst, err)
		}
		for _, r := range rules {
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					return ctr.Bytes, ctr.Packets
				}
			}
		}
		t.Fatalf("%s: counter to %s not found", n.Name, dst)
		return 0, 0
	}
}
