package zoneflow

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/netnstest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testenv"
)

// realEntries is the table size of BenchmarkRealDump1M: a busy node.
const realEntries = 1_000_000

// BenchmarkRealDump1M dumps a real conntrack table of a million entries
// (inserted through ctnetlink create messages in a throw-away network
// namespace: no connections needed) through the whole path. Sub-benchmarks,
// all on the same table in the same run:
//
//   - bare: the streamed dump with a callback that does nothing (kernel and
//     decoding: the floor, and the baseline of the others);
//   - tracer: the tracer's dump (decoding, processor, tombstone sweep) with
//     the million flows tracked, in the benchmark process, reporting ms/dump,
//     CPU ms per dump, flow updates per second, its ratio to bare, the heap
//     the tracked flows hold and the peak RSS of the process while dumping;
//   - daemon: the built zone-flow-tracer binary, run inside the namespace as
//     the DaemonSet runs in the host's (its own process, its flags, the real
//     API server through a forwarder), started once after the others: after
//     its first dump and three more it reports, over b.N further dumps, wall and CPU time per dump (from its
//     own metrics: dump_duration_seconds, dump_cpu_seconds_total), the
//     process's CPU per dump (/proc/<pid>/stat: GC, informers, HTTP
//     included), flow updates per second, its resident memory (VmRSS) and
//     peak (VmHWM) from /proc/<pid>/status, and the ratios to bare.
//
// Needs root (daemon also the test API server: make bench provides both).
// nf_conntrack_max is read-only inside a network namespace on this kernel
// (the limit is the host's value, applied per namespace): the benchmark
// raises the host's value for its duration when it is lower and restores it
// afterwards.
//
//	make bench-zone-flow-tracer-1m
func BenchmarkRealDump1M(b *testing.B) {
	netnstest.Require(b)
	raiseConntrackMax(b, realEntries+realEntries/10)
	ns := netnstest.New(b, "zf-bench-1m")
	ns.EnableConntrack(b, true)
	conn, err := conntrack.Dial(conntrack.Options{NetNS: ns.FD()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	start := time.Now()
	if err := conn.Create(benchEntries(realEntries), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.Logf("inserted %d entries in %s", realEntries, time.Since(start).Round(time.Millisecond))
	ctx := context.Background()

	var bareMs, bareCPU float64
	b.Run("bare", func(b *testing.B) {
		cpu := cpuTime()
		for b.Loop() {
			n := 0
			if err := conn.Dump(ctx, func(*conntrack.Flow) { n++ }); err != nil {
				b.Fatal(err)
			}
			if n != realEntries {
				b.Fatalf("dumped %d entries, want %d", n, realEntries)
			}
		}
		bareMs = float64(b.Elapsed().Milliseconds()) / float64(b.N)
		bareCPU = float64((cpuTime() - cpu).Milliseconds()) / float64(b.N)
		b.ReportMetric(bareMs, "ms/dump")
		b.ReportMetric(bareCPU, "cpu-ms/dump")
		b.ReportMetric(loadAverage(), "load-avg")
	})
	ratios := func(b *testing.B, ms, cpuMs float64) {
		if bareMs > 0 && bareCPU > 0 {
			b.ReportMetric(ms/bareMs, "x-bare-dump")
			b.ReportMetric(cpuMs/bareCPU, "x-bare-dump-cpu")
		}
	}
	b.Run("tracer", func(b *testing.B) {
		tr := newTestTracer("n1", conn, testIndex("n1"))
		heapBefore := heapInUse()
		if _, err := tr.dump(ctx); err != nil {
			b.Fatal(err)
		}
		if n := tr.p.flows.len(); n != realEntries {
			b.Fatalf("tracked %d entries, want %d", n, realEntries)
		}
		heap := heapInUse() - heapBefore
		debug.FreeOSMemory()
		resetPeakRSS(b)
		cpu := cpuTime()
		b.ResetTimer()
		for b.Loop() {
			if _, err := tr.dump(ctx); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		ms := float64(b.Elapsed().Milliseconds()) / float64(b.N)
		b.ReportMetric(ms, "ms/dump")
		cpuMs := float64((cpuTime() - cpu).Milliseconds()) / float64(b.N)
		b.ReportMetric(cpuMs, "cpu-ms/dump")
		b.ReportMetric(realEntries/(ms/1e3), "flows/s")
		b.ReportMetric(float64(heap)/(1<<20), "MiB-heap")
		b.ReportMetric(float64(tr.p.TableBytes())/(1<<20), "MiB-table")
		b.ReportMetric(float64(peakRSS(b, "self"))/(1<<20), "MiB-peak-RSS")
		b.ReportMetric(loadAverage(), "load-avg")
		ratios(b, ms, cpuMs)
		runtime.KeepAlive(tr)
	})
	// The daemon is started once, after the in-process sub-benchmarks (its
	// dumps would disturb them), and measured by the daemon sub-benchmark
	// however often the harness calls it.
	d := startBenchDaemon(b, ns)
	// The first dump sets the baselines of a million new flows; three more
	// let the heap settle before anything is measured.
	first := d.waitDumps(b, 1, 10*time.Minute)
	if v, _ := metricValue(first, "trellis_zone_flow_tracer_tracked_flows"); v < realEntries {
		b.Fatalf("daemon tracks %.0f flows, want at least %d", v, realEntries)
	}
	d.waitDumps(b, 4, 10*time.Minute)
	b.Run("daemon", func(b *testing.B) {
		before := d.metrics()
		done, _ := metricValue(before, "trellis_zone_flow_tracer_dumps_total", "result", "success")
		procCPU := d.cpu(b)
		b.ResetTimer()
		after := d.waitDumps(b, int(done)+b.N, time.Duration(b.N)*5*time.Minute)
		b.StopTimer()
		procCPU = d.cpu(b) - procCPU
		delta := func(name string, labels ...string) float64 {
			v0, _ := metricValue(before, name, labels...)
			v1, _ := metricValue(after, name, labels...)
			return v1 - v0
		}
		dumps := delta("trellis_zone_flow_tracer_dumps_total", "result", "success")
		ms := delta("trellis_zone_flow_tracer_dump_duration_seconds_sum") / dumps * 1e3
		cpuMs := delta("trellis_zone_flow_tracer_dump_cpu_seconds_total") / dumps * 1e3
		entries, _ := metricValue(after, "trellis_zone_flow_tracer_dump_entries")
		table, _ := metricValue(after, "trellis_zone_flow_tracer_flow_memory_bytes")
		heap, _ := metricValue(after, "go_memstats_heap_inuse_bytes")
		b.ReportMetric(ms, "ms/dump")
		b.ReportMetric(cpuMs, "cpu-ms/dump")
		b.ReportMetric(float64(procCPU.Milliseconds())/dumps, "process-cpu-ms/dump")
		b.ReportMetric(entries/(ms/1e3), "flows/s")
		b.ReportMetric(float64(d.status(b, "VmRSS:"))/(1<<20), "MiB-RSS")
		b.ReportMetric(float64(d.status(b, "RssAnon:"))/(1<<20), "MiB-RSS-anon")
		b.ReportMetric(float64(d.status(b, "RssFile:"))/(1<<20), "MiB-RSS-file")
		b.ReportMetric(float64(d.status(b, "VmHWM:"))/(1<<20), "MiB-peak-RSS")
		b.ReportMetric(heap/(1<<20), "MiB-heap-inuse")
		b.ReportMetric(table/(1<<20), "MiB-table")
		b.ReportMetric(loadAverage(), "load-avg")
		ratios(b, ms, cpuMs)
		for _, l := range strings.Split(after, "\n") {
			if strings.HasPrefix(l, "go_memstats_heap_") || strings.HasPrefix(l, "go_memstats_sys_bytes") || strings.HasPrefix(l, "go_gc_gogc") {
				b.Log(l)
			}
		}
	})
	d.stop(b)
}

// benchDaemon is the built binary running inside the benchmark's namespace.
type benchDaemon struct {
	cmd    *exec.Cmd
	web    string
	client *http.Client
}

// startBenchDaemon builds and starts zone-flow-tracer in ns with Nodes in the
// real API server that make benchEntries' sources this node's pods.
func startBenchDaemon(b *testing.B, ns *netnstest.NS) *benchDaemon {
	env := testenv.Get(b)
	bin := testbin.Build(b, Name)
	prefix := env.Namespace(b)
	ctx := context.Background()
	for _, n := range []struct{ suffix, zone, ip, cidr string }{{"-a", "a", n1IP.String(), "10.1.0.0/24"}, {"-b", "b", n2IP.String(), "10.2.0.0/24"}} {
		name := prefix + n.suffix
		node, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ZoneLabel: n.zone}},
			Spec:       corev1.NodeSpec{PodCIDR: n.cidr, PodCIDRs: []string{n.cidr}},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}}
		if _, err := env.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
	}
	// The API server listens on the host's loopback: forward to it from the
	// namespace's.
	api, err := url.Parse(env.Config.Host)
	if err != nil {
		b.Fatal(err)
	}
	fwd := ns.Listen(b, "tcp", "127.0.0.1:0")
	go forwardTo(fwd, api.Host)
	cfg := rest.CopyConfig(env.Config)
	cfg.Host = "https://" + fwd.Addr().String()
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := testenv.WriteKubeconfig(cfg, kubeconfig); err != nil {
		b.Fatal(err)
	}
	d := &benchDaemon{client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = ns.Do(func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		},
	}}}
	// As the DaemonSet runs it, but with dumps back to back (a dump of a
	// million entries takes longer than the interval).
	d.cmd = exec.Command(bin, "--kubeconfig="+kubeconfig, "--node.name="+prefix+"-a", "--web.listen-address=127.0.0.1:0",
		"--conntrack.accounting=false", "--conntrack.dump-interval=1s", "--log.format=json")
	if err := ns.Do(func() error { d.web = testbin.Start(b, d.cmd); return nil }); err != nil {
		b.Fatal(err)
	}
	return d
}

// waitDumps waits until the daemon has completed n dumps and returns the
// /metrics page that showed it. It looks once a second: the scrapes are
// part of the daemon's process CPU time.
func (d *benchDaemon) waitDumps(b *testing.B, n int, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		body := d.metrics()
		if v, _ := metricValue(body, "trellis_zone_flow_tracer_dumps_total", "result", "success"); v >= float64(n) {
			return body
		}
		if time.Now().After(deadline) {
			b.Fatalf("the daemon did not complete %d dumps within %s", n, timeout)
		}
		time.Sleep(time.Second) // sleep-ok: the interval of a poll with a deadline, 1 s so the scrapes barely weigh on the daemon CPU being measured
	}
}

func (d *benchDaemon) metrics() string {
	resp, err := d.client.Get("http://" + d.web + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return ""
	}
	return string(body)
}

// cpu is the daemon process's CPU time (user + system, /proc/<pid>/stat).
func (d *benchDaemon) cpu(b *testing.B) time.Duration {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces) in parentheses;
	// utime and stime are fields 14 and 15, in clock ticks (100 a second).
	f := strings.Fields(string(s[bytes.LastIndexByte(s, ')')+1:]))
	utime, _ := strconv.ParseUint(f[11], 10, 64)
	stime, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func (d *benchDaemon) status(b *testing.B, field string) uint64 {
	return procStatus(b, strconv.Itoa(d.cmd.Process.Pid), field)
}

// stop ends the daemon as Kubernetes does (SIGTERM: a final dump, exit 0).
func (d *benchDaemon) stop(b *testing.B) { testbin.Terminate(b, d.cmd) }

func loadAverage() float64 {
	s, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseFloat(strings.Fields(string(s))[0], 64)
	return v
}

// benchEntries are n TCP entries of n1's pods (10.1.0.0/24) to a pod on n2,
// a VPC address and the internet.
func benchEntries(n int) []conntrack.Flow {
	dsts := []netip.Addr{n2Pod, vpcIP, inetIP}
	fs := make([]conntrack.Flow, n)
	for i := range fs {
		src := netip.AddrFrom4([4]byte{10, 1, 0, byte(1 + i%250)})
		fs[i] = conntrack.Flow{Proto: 6, OrigSrc: src, OrigDst: dsts[i%len(dsts)], OrigSrcPort: uint16(1024 + i/250), OrigDstPort: 443}
	}
	return fs
}

const conntrackMaxPath = "/proc/sys/net/netfilter/nf_conntrack_max"

// raiseConntrackMax makes the (host's) nf_conntrack_max at least n until the
// benchmark ends.
func raiseConntrackMax(b *testing.B, n int) {
	old, err := os.ReadFile(conntrackMaxPath)
	if err != nil {
		b.Skipf("nf_conntrack_max: %v", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(old)))
	if err != nil || v >= n {
		return
	}
	if err := os.WriteFile(conntrackMaxPath, []byte(strconv.Itoa(n)), 0o644); err != nil {
		b.Skipf("raise nf_conntrack_max to %d: %v", n, err)
	}
	b.Cleanup(func() { _ = os.WriteFile(conntrackMaxPath, old, 0o644) })
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// resetPeakRSS resets the process's VmHWM (clear_refs 5).
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0o200); err != nil {
		b.Logf("cannot reset the peak RSS: %v", err)
	}
}

// peakRSS is the VmHWM of process pid ("self" for this one) in bytes.
func peakRSS(b *testing.B, pid string) uint64 { return procStatus(b, pid, "VmHWM:") }

// procStatus is a memory field (kB) of /proc/<pid>/status in bytes.
func procStatus(b *testing.B, pid, field string) uint64 {
	s, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(s))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("/proc/%s/status has no %s", pid, field)
	return 0
}
