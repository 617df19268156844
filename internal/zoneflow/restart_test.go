package zoneflow

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	tmct "github.com/ti-mo/conntrack"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestRestartLosesNothing restarts the built binary (SIGTERM, start again)
// during a bulk TCP transfer from node A to node B and checks that nothing is
// lost or counted twice: what the first run's last scrape showed plus what
// the second run reports equals the kernel's count of what A sent to B (an
// nftables counter in A's output hook). The binary runs inside A's network
// namespace, as the DaemonSet in the host's, and reaches the API server
// through a loopback forwarder in that namespace. The first run's final dump
// and state file carry the bytes of its last moments and the flow's counters
// over the downtime.
func TestRestartLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	netnstest.Require(t)
	env := testenv.Get(t)
	bin := testbin.Build(t, Name)
	c := createCluster(t, env.Namespace(t))

	nsA := netnstest.New(t, "zf-restart-a")
	nsB := netnstest.New(t, "zf-restart-b")
	netnstest.Veth(t, nsA, "eth0", "192.168.50.1/24", nsB, "eth0", "192.168.50.2/24")
	nsA.EnableConntrack(t, true)
	sentToB := nsA.CountTo(t, addr4("192.168.50.2"))

	// The API server listens on the host's loopback: forward to it from A's.
	api, err := url.Parse(env.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	fwd := nsA.Listen(t, "tcp", "127.0.0.1:0")
	go forwardTo(fwd, api.Host)
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://" + fwd.Addr().String()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := testenv.WriteKubeconfig(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state", "zone-flow-tracer.state")
	if err := os.MkdirAll(filepath.Dir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	// HTTP to the daemon's web address inside A.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = nsA.Do(func() error { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		},
	}}
	var body string
	var scrapeErr error
	// scrape returns bytes_total a>b once the daemon has dumped (body keeps
	// the whole page).
	scrape := func(web string) (float64, bool) {
		resp, err := client.Get("http://" + web + "/metrics")
		scrapeErr = err
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			return 0, false
		}
		body = string(b)
		if d, _ := metricValue(body, "trellis_zone_flow_tracer_dumps_total", "result", "success"); d < 1 {
			return 0, false
		}
		v, _ := metricValue(body, "trellis_zone_flow_tracer_bytes_total", "source_zone", "a", "destination_zone", "b")
		return v, true
	}
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "--kubeconfig="+kubeconfig, "--node.name="+c.nodeA, "--web.listen-address=127.0.0.1:0",
			"--conntrack.accounting=false", "--conntrack.dump-interval=300ms", "--log.format=json", "--state.file="+state)
		var web string
		// The child inherits the namespace of the thread that forks it.
		if err := nsA.Do(func() error { web = testbin.Start(t, cmd); return nil }); err != nil {
			t.Fatal(err)
		}
		if !testkit.Until(testkit.Timeout, func() bool { _, ok := scrape(web); return ok }) {
			t.Fatalf("no first dump: last scrape error %v\n%s", scrapeErr, body)
		}
		return cmd, web
	}

	// Run 1; then a bulk transfer A -> B of about 2 MB/s.
	run1, web1 := start()
	ln := nsB.Listen(t, "tcp4", "192.168.50.2:0")
	received := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		received <- n
	}()
	conn := nsA.Dial(t, "tcp4", ln.Addr().String())
	var stop atomic.Bool
	sent := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		tick := time.NewTicker(16 * time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if stop.Load() {
				sent <- conn.(*net.TCPConn).CloseWrite()
				return
			}
			if _, err := conn.Write(chunk); err != nil {
				sent <- err
				return
			}
		}
	}()
	// Scrape run 1 a few times (as Prometheus would), the last one just before
	// SIGTERM: what it shows is what run 1 delivered.
	var last float64
	testkit.Eventually(t, "run 1 to count the transfer", func() bool {
		v, ok := scrape(web1)
		if ok {
			last = v
		}
		return last > 1<<20
	})
	testbin.Terminate(t, run1)
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after SIGTERM: %v", err)
	}
	// Downtime while the transfer goes on, then run 2.
	time.Sleep(time.Second) // sleep-ok: the downtime being tested, not a synchronisation
	_, web2 := start()
	if _, err := os.Stat(state); err == nil {
		t.Fatal("run 2 left the state file in place")
	}
	testkit.Eventually(t, "run 2 to count on", func() bool { v, _ := scrape(web2); return v > 1<<20 })
	stop.Store(true)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := <-received; n <= 0 {
		t.Fatalf("receiver got %d bytes", n)
	}
	_ = conn.Close()
	// The flow ends; its DESTROY event carries the final counters to run 2.
	// (A's table also holds the daemon's loopback connections to the API
	// forwarder and the scrapes: only the transfer's entry is waited for and
	// deleted.)
	raw := openRaw(t, nsA)
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	var bulk *tmct.Flow
	testkit.Eventually(t, "the transfer's entry to settle", func() bool {
		for _, f := range raw.dump(t) {
			if f.TupleOrig.Proto.DestinationPort == port {
				bulk = &f
				return f.ProtoInfo.TCP != nil && f.ProtoInfo.TCP.State >= 7
			}
		}
		return false
	})
	if err := raw.c.Delete(*bulk); err != nil {
		t.Fatal(err)
	}
	truth, _ := sentToB()
	var got2 float64
	testkit.Until(testkit.Timeout, func() bool { got2, _ = scrape(web2); return last+got2 == float64(truth) })
	t.Logf("kernel: %d bytes A->B; run 1 last scrape %.0f, run 2 %.0f, sum %.0f", truth, last, got2, last+got2)
	if last+got2 != float64(truth) {
		t.Fatalf("run 1 (%.0f) + run 2 (%.0f) = %.0f bytes, the kernel counted %d", last, got2, last+got2, truth)
	}
	if v, _ := metricValue(body, "trellis_zone_flow_tracer_state_loads_total", "result", "restored"); v != 1 {
		t.Errorf("state_loads_total{result=restored} = %v, want 1", v)
	}
	// The transfer and the daemon's own loopback connections to the API
	// forwarder were open across the restart.
	if v, _ := metricValue(body, "trellis_zone_flow_tracer_state_flows_total", "outcome", "matched"); v < 1 {
		t.Errorf("state_flows_total{outcome=matched} = %v, want at least 1", v)
	}
}

// forwardTo accepts connections on ln and joins each to one to addr.
func forwardTo(ln net.Listener, addr string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("tcp", addr)
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

// TestRestartInProcess is TestRestartLosesNothing without the binary and the
// API server: two tracers one after the other on the same real conntrack
// table, the first stopped (final dump, state file) during a bulk transfer,
// the second started from its state file after a downtime. What the first
// one's last scrape showed plus what the second counts equals the kernel's
// count of the bytes sent.
func TestRestartInProcess(t *testing.T) {
	nsA := netnstest.New(t, "zf-restart-ip-a")
	nsB := netnstest.New(t, "zf-restart-ip-b")
	netnstest.Veth(t, nsA, "eth0", "192.168.0.1/24", nsB, "eth0", "192.168.0.2/24")
	nsA.EnableConntrack(t, true)
	sentToB := nsA.CountTo(t, n2IP)
	id, err := selfIdentity("/proc")
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state")
	sum := func(p *Processor) float64 {
		var s uint64
		for _, v := range totals(p, zdKey) {
			s += v
		}
		return float64(s)
	}
	run := func() (*tracer, func()) {
		conn, err := conntrack.Dial(conntrack.Options{NetNS: nsA.FD()})
		if err != nil {
			t.Fatal(err)
		}
		src := &readySource{Conn: conn, ready: make(chan struct{})}
		tr := newTestTracer("n1", src, buildIndex("n1", testNodes, nil, nil, nil))
		tr.p.BaselineFirstDump()
		tr.interval, tr.state, tr.id = 200*time.Millisecond, state, id
		tr.loadState()
		ctx, cancel := context.WithCancel(context.Background())
		ectx, stopEvents := context.WithCancel(context.Background())
		done := make(chan struct{}, 2)
		go func() { _ = tr.eventLoop(ectx); done <- struct{}{} }()
		<-src.ready
		go func() { _ = tr.dumpLoop(ctx, stopEvents); done <- struct{}{} }()
		stop := func() { cancel(); <-done; <-done; _ = conn.Close() }
		t.Cleanup(func() {
			select {
			case <-ctx.Done():
			default:
				stop()
			}
		})
		return tr, stop
	}

	tr1, stop1 := run()
	testkit.Eventually(t, "a first dump", func() bool { tr1.p.mu.Lock(); defer tr1.p.mu.Unlock(); return tr1.p.ended >= 1 })
	ln := nsB.Listen(t, "tcp4", "192.168.0.2:0")
	received := make(chan int64, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			received <- -1
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		received <- n
	}()
	conn := nsA.Dial(t, "tcp4", ln.Addr().String())
	var stop atomic.Bool
	sent := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for !stop.Load() {
			if _, err := conn.Write(chunk); err != nil {
				sent <- err
				return
			}
			time.Sleep(10 * time.Millisecond) // sleep-ok: pacing the sender, not synchronising
		}
		sent <- conn.(*net.TCPConn).CloseWrite()
	}()
	var last float64
	testkit.Eventually(t, "run 1 to count the transfer", func() bool {
		recs, _, _ := tr1.p.snapshot()
		tr1.p.markScraped(recs) // a scrape
		last = 0
		for _, r := range recs {
			last += float64(r.bytes)
		}
		return last > 1<<20
	})
	stop1()
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after stop: %v", err)
	}
	time.Sleep(500 * time.Millisecond) // sleep-ok: the downtime being tested
	tr2, _ := run()
	if v := testutilCounter(tr2.m.stateLoads.WithLabelValues(loadRestored)); v != 1 {
		t.Fatalf("state not restored (%v)", v)
	}
	testkit.Eventually(t, "run 2 to count on", func() bool { return sum(tr2.p) > 1<<20 })
	stop.Store(true)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if n := <-received; n <= 0 {
		t.Fatalf("receiver got %d bytes", n)
	}
	_ = conn.Close()
	raw := openRaw(t, nsA)
	testkit.Eventually(t, "TCP to settle", func() bool { return raw.settled(t) })
	if err := raw.c.Flush(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "run 2 to count the flow to its end", func() bool {
		_, st, tracked := tr2.p.snapshot()
		return st.destroyEvents >= 1 && tracked == 0
	})
	truth, _ := sentToB()
	got2 := sum(tr2.p)
	_, st, _ := tr2.p.snapshot()
	t.Logf("kernel: %d bytes; run 1 last scrape %.0f, run 2 %.0f (restored flows matched %d)", truth, last, got2, st.restoredSeen)
	if last+got2 != float64(truth) {
		t.Fatalf("run 1 (%.0f) + run 2 (%.0f) = %.0f bytes, the kernel counted %d", last, got2, last+got2, truth)
	}
}

func testutilCounter(c interface{ Write(*dto.Metric) error }) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}
