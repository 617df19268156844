package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/vishvananda/netns"
)

// zoneScenario (root only): two network namespaces are two nodes in two
// availability zones, joined by a veth, each tracking connections (an nftables
// ct rule, nf_conntrack_acct=1). One zone-flow-tracer per node runs inside its
// node's namespace (hostNetwork, as the DaemonSet) and reaches the API server
// through a loopback proxy the demo opens in that namespace. TCP transfers go
// both ways every few seconds; each node reports the bytes its side sent
// (egress) and nothing of what the other node sent: each byte once.
type zoneScenario struct {
	skip    bool
	d       *Demo
	nodes   []*zoneNode
	sent    [2]atomic.Int64 // payload bytes sent by node 0 and node 1
	rounds  atomic.Int64
	failed  atomic.Int64
	started atomic.Bool
	proven  atomic.Bool
}

type zoneNode struct {
	name, zone, ip string
	ns             *netnstest.NS
	tracer         *proc
	web            string // host-side address forwarding to the tracer's web endpoints
}

const (
	zonePort      = 9000
	zoneRequest   = 256 << 10 // bytes a client sends per transfer
	zoneResponse  = 64 << 10  // bytes the server sends back
	zoneFlowPrice = "cross-zone"
)

func (s *zoneScenario) name() string { return "zone-flow-tracer" }

func (s *zoneScenario) start(ctx context.Context, d *Demo) error {
	switch {
	case s.skip:
		return fmt.Errorf("disabled by --skip-zone-flow: %w", errSkipped)
	case runtime.GOOS != "linux" || os.Geteuid() != 0:
		return fmt.Errorf("needs root: it creates network namespaces, a veth pair and nftables conntrack rules, and the tracer reads conntrack over ctnetlink (CAP_SYS_ADMIN, CAP_NET_ADMIN); run the demo as root to see it: %w", errSkipped)
	}
	s.d = d
	s.nodes = []*zoneNode{
		{name: "shoot-worker-zone-a", zone: "eu-central-1a", ip: "10.250.0.1"},
		{name: "shoot-worker-zone-b", zone: "eu-central-1b", ip: "10.250.0.2"},
	}
	c := d.env.Client
	for i, n := range s.nodes {
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"topology.kubernetes.io/zone": n.zone}},
			Spec: corev1.NodeSpec{ProviderID: fmt.Sprintf("aws:///%s/i-0demo%d", n.zone, i),
				PodCIDR: fmt.Sprintf("100.96.%d.0/24", i), PodCIDRs: []string{fmt.Sprintf("100.96.%d.0/24", i)}},
		}
		created, err := c.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}, {Type: corev1.NodeHostName, Address: n.name}}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now(), LastTransitionTime: now()}}
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if err := try(func() {
		for _, n := range s.nodes {
			n.ns = netnstest.New(d.tb, n.name)
		}
		netnstest.Veth(d.tb, s.nodes[0].ns, "eth0", s.nodes[0].ip+"/24", s.nodes[1].ns, "eth0", s.nodes[1].ip+"/24")
		for _, n := range s.nodes {
			n.ns.EnableConntrack(d.tb, true)
		}
	}); err != nil {
		return err
	}
	api, err := url.Parse(d.env.Config.Host)
	if err != nil {
		return err
	}
	for _, n := range s.nodes {
		// The API server listens on the host's loopback; inside the node's
		// namespace a loopback listener forwards to it.
		var ln net.Listener
		if err := n.ns.Do(func() (err error) { ln, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
			return err
		}
		d.tb.Cleanup(func() { _ = ln.Close() })
		go forward(ln, func() (net.Conn, error) { return net.Dial("tcp", api.Host) })
		cfg := rest.CopyConfig(d.env.Config)
		cfg.Host = "https://" + ln.Addr().String()
		kubeconfig := filepath.Join(d.dir, "kubeconfig-"+n.name)
		if err := testenv.WriteKubeconfig(cfg, kubeconfig); err != nil {
			return err
		}
		p, err := d.launch(ctx, "zone-flow-tracer-"+n.zone, d.bin("zone-flow-tracer"), []string{
			"--kubeconfig=" + kubeconfig, "--node.name=" + n.name, "--web.listen-address=127.0.0.1:0",
			// The demo switched accounting on in the namespace already.
			"--conntrack.accounting=false", "--conntrack.dump-interval=1s",
		}, inNetns(n.ns.Handle), "serving web endpoints")
		if err != nil {
			return err
		}
		n.tracer = p
		// And the other way: a host loopback address for the tracer's /metrics.
		hostLn, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		d.tb.Cleanup(func() { _ = hostLn.Close() })
		inner, ns := p.addr("serving web endpoints"), n.ns
		go forward(hostLn, func() (c net.Conn, err error) {
			err = ns.Do(func() error { c, err = net.Dial("tcp", inner); return err })
			return c, err
		})
		n.web = hostLn.Addr().String()
	}
	// Servers: each node accepts transfers from the other.
	for _, n := range s.nodes {
		var ln net.Listener
		if err := n.ns.Do(func() (err error) { ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", n.ip, zonePort)); return err }); err != nil {
			return err
		}
		d.tb.Cleanup(func() { _ = ln.Close() })
		go serveTransfers(ln)
	}
	if err := pollUntil(ctx, 60*time.Second, func() bool { return ready(ctx, s.nodes[0].web) && ready(ctx, s.nodes[1].web) }); err != nil {
		return fmt.Errorf("zone-flow-tracers not ready: %w; log tail:\n%s", err, tail(s.nodes[0].tracer.logPath, 10))
	}
	s.started.Store(true)
	go s.traffic(ctx)
	return nil
}

// inNetns starts a process from an OS thread locked into namespace h (the child
// inherits it) and keeps that thread until the process exits.
func inNetns(h netns.NsHandle) starter {
	return func(start func() error, wait func()) error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
			if err := netns.Set(h); err != nil {
				errc <- err
				return
			}
			err := start()
			errc <- err
			if err == nil {
				wait()
			}
		}()
		return <-errc
	}
}

// forward accepts connections on ln and joins each to one from dial.
func forward(ln net.Listener, dial func() (net.Conn, error)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := dial()
			if err != nil {
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
			<-done
		}()
	}
}

// serveTransfers reads a request to its end and answers zoneResponse bytes.
func serveTransfers(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.Copy(io.Discard, c); err != nil {
				return
			}
			_, _ = c.Write(make([]byte, zoneResponse))
		}()
	}
}

// traffic runs one transfer each way every 2 s.
func (s *zoneScenario) traffic(ctx context.Context) {
	for {
		for i := range s.nodes {
			from, to := s.nodes[i], s.nodes[1-i]
			if err := s.transfer(from, to); err != nil {
				s.failed.Add(1)
				continue
			}
			s.sent[i].Add(zoneRequest)
			s.sent[1-i].Add(zoneResponse)
		}
		s.rounds.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

func (s *zoneScenario) transfer(from, to *zoneNode) error {
	var c net.Conn
	if err := from.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", to.ip, zonePort), 5*time.Second)
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(make([]byte, zoneRequest)); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, c)
	if err != nil {
		return err
	}
	if n != zoneResponse {
		return fmt.Errorf("got %d bytes back, want %d", n, zoneResponse)
	}
	return nil
}

func (s *zoneScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	a, b := s.nodes[0], s.nodes[1]
	for _, n := range s.nodes {
		e := fmt.Sprintf("%-22s http://%s/metrics  (/flows too; runs in %s's netns, proxied)", "tracer "+n.zone, n.web, n.name)
		if x := n.tracer.exited(); x != "" {
			e += "  (" + x + ")"
		}
		st.Endpoints = append(st.Endpoints, e)
	}
	ma, mb := scrape(ctx, a.web), scrape(ctx, b.web)
	const bytes = "trellis_zone_flow_tracer_bytes_total"
	aToB := ma.sum(bytes, "source_zone", a.zone, "destination_zone", b.zone, "direction", "egress")
	bToA := mb.sum(bytes, "source_zone", b.zone, "destination_zone", a.zone, "direction", "egress")
	// What each node reports about the other node's sending: must stay 0.
	aAboutB := ma.sum(bytes, "source_zone", b.zone)
	bAboutA := mb.sum(bytes, "source_zone", a.zone)
	cost := ma.sum("trellis_zone_flow_tracer_cost_dollars_total", "class", zoneFlowPrice) + mb.sum("trellis_zone_flow_tracer_cost_dollars_total", "class", zoneFlowPrice)
	st.Lines = append(st.Lines,
		fmt.Sprintf("transfers %d rounds (failed %d); payload sent %s -> %s %s, %s -> %s %s",
			s.rounds.Load(), s.failed.Load(), a.zone, b.zone, bytesStr(float64(s.sent[0].Load())), b.zone, a.zone, bytesStr(float64(s.sent[1].Load()))),
		fmt.Sprintf("tracer %s: egress %s->%s %s (IP bytes)  about the other node's sending %s  tracked flows %.0f  dumps ok %.0f  accounting %.0f",
			a.zone, a.zone, b.zone, bytesStr(aToB), bytesStr(aAboutB), ma.sum("trellis_zone_flow_tracer_tracked_flows"),
			ma.sum("trellis_zone_flow_tracer_dumps_total", "result", "success"), ma.sum("trellis_zone_flow_tracer_accounting_enabled")),
		fmt.Sprintf("tracer %s: egress %s->%s %s (IP bytes)  about the other node's sending %s  tracked flows %.0f  dumps ok %.0f  accounting %.0f",
			b.zone, b.zone, a.zone, bytesStr(bToA), bytesStr(bAboutA), mb.sum("trellis_zone_flow_tracer_tracked_flows"),
			mb.sum("trellis_zone_flow_tracer_dumps_total", "result", "success"), mb.sum("trellis_zone_flow_tracer_accounting_enabled")),
		fmt.Sprintf("estimated cross-zone cost $%.6f (aws, $%.2f/GiB)", cost, ma.sum("trellis_zone_flow_tracer_price_dollars_per_byte", "class", zoneFlowPrice)*(1<<30)),
	)
	if aToB >= zoneRequest && bToA >= zoneRequest && aAboutB == 0 && bAboutA == 0 {
		s.proven.Store(true)
	}
	st.Proven = s.proven.Load()
	st.Proof = "cross-zone bytes counted by zone in both directions, each direction by the sending node only (each byte once)"
	return st
}
