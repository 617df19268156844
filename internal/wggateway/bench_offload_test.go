//go:build linux

package wggateway

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/udpbatch"
)

// relayModeEnv selects what TestRelayProcess runs in a child process of the
// offload benchmark: plain, gateway-offload or gateway-no-offload.
const relayModeEnv = "TRELLIS_WG_GATEWAY_BENCH_RELAY"

// TestRelayProcess is not a test: it is the relay process of
// BenchmarkRelayOffload, run from the test binary itself (and skipped without
// its environment). It relays to the address on stdin's first line, prints its
// listening address, and answers every further line with its CPU time (user +
// system, ns) and heap allocations so far, until stdin closes. A process of its
// own lets the benchmark measure the relay's CPU time alone on a shared machine.
func TestRelayProcess(t *testing.T) {
	mode := os.Getenv(relayModeEnv)
	if mode == "" {
		t.Skip("the relay process of BenchmarkRelayOffload")
	}
	runtime.GOMAXPROCS(1) // one relay core
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		t.Fatal("no destination")
	}
	to := netip.MustParseAddrPort(strings.TrimSpace(in.Text()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var addr string
	switch mode {
	case "plain":
		rin, rout := benchConn(t), benchConn(t)
		go udpbatch.Forward(ctx, rin, rout, to, 64)
		addr = addrOf(rin).String()
	case "gateway-offload", "gateway-no-offload":
		cfg := DefaultConfig()
		cfg.ListenAddress = "127.0.0.1:0"
		cfg.Shards = 1
		cfg.UDPOffload = mode == "gateway-offload"
		gw, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		gw.SetBackends([]Backend{{Name: "bench", PublicKey: benchKey(), Endpoint: to}})
		if err := gw.Listen(ctx); err != nil {
			t.Fatal(err)
		}
		go gw.Serve(ctx)
		addr = gw.LocalAddr().String()
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	fmt.Printf("addr %s\n", addr)
	for in.Scan() {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("cpu %d %d\n", ru.Utime.Nano()+ru.Stime.Nano(), ms.Mallocs)
	}
}

func benchKey() [32]byte {
	var k [32]byte
	k[0] = 7
	return k
}

// relayProc is a running TestRelayProcess.
type relayProc struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Scanner
	addr netip.AddrPort
	// gsoSrc, src and sink are the load's ends: clients that send with GSO
	// and one datagram per message (no offload: a Conn with GSO on gathers
	// single datagrams too), and a backend reading with GRO; each client has
	// an established session for the gateway.
	gsoSrc, src, sink *udpbatch.Conn
}

func startRelay(b *testing.B, mode string) *relayProc {
	b.Helper()
	r := &relayProc{name: mode, gsoSrc: benchConn(b), src: benchConn(b), sink: benchConn(b)}
	if _, err := r.gsoSrc.EnableOffload(false, true); err != nil {
		b.Skipf("no UDP GSO here: %v", err)
	}
	if _, err := r.sink.EnableOffload(true, false); err != nil {
		b.Skipf("no UDP GRO here: %v", err)
	}
	r.cmd = exec.Command(os.Args[0], "-test.run=^TestRelayProcess$", "-test.count=1")
	r.cmd.Env = append(os.Environ(), relayModeEnv+"="+mode)
	r.cmd.Stderr = os.Stderr
	var err error
	if r.in, err = r.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	r.out = bufio.NewScanner(out)
	if err := r.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		r.in.Close()
		done := make(chan struct{})
		go func() { r.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-done
		}
	})
	fmt.Fprintln(r.in, addrOf(r.sink))
	f := r.line(b, "addr")
	r.addr = netip.MustParseAddrPort(f[0])
	if mode != "plain" {
		establish(b, r.gsoSrc, r.sink, r.addr, benchKey())
		establish(b, r.src, r.sink, r.addr, benchKey())
	}
	return r
}

// line reads the child's next line, which must start with word.
func (r *relayProc) line(b *testing.B, word string) []string {
	b.Helper()
	if !r.out.Scan() {
		b.Fatalf("relay %s ended: %v", r.name, r.out.Err())
	}
	f := strings.Fields(r.out.Text())
	if len(f) < 2 || f[0] != word {
		b.Fatalf("relay %s said %q", r.name, r.out.Text())
	}
	return f[1:]
}

// usage returns the child's CPU time and allocations so far.
func (r *relayProc) usage(b *testing.B) (time.Duration, uint64) {
	b.Helper()
	fmt.Fprintln(r.in, "cpu")
	f := r.line(b, "cpu")
	ns, err1 := strconv.ParseInt(f[0], 10, 64)
	mallocs, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("relay %s: %v %v", r.name, err1, err2)
	}
	return time.Duration(ns), mallocs
}

// relayRun is one relay's share of an iteration.
type relayRun struct {
	res     udpbatch.LoadResult
	cpu     time.Duration
	mallocs uint64
}

func (r *relayRun) add(o relayRun) {
	r.res.Sent += o.res.Sent
	r.res.Received += o.res.Received
	r.res.Bytes += o.res.Bytes
	r.res.Elapsed += o.res.Elapsed
	r.cpu += o.cpu
	r.mallocs += o.mallocs
}

// perCPU is the delivered datagrams per second of relay CPU time: the rate one
// relay core sustains.
func (r relayRun) perCPU() float64 {
	if r.cpu <= 0 {
		return 0
	}
	return float64(r.res.Received) / r.cpu.Seconds()
}

func (r *relayProc) run(b *testing.B, size, segments, n int) relayRun {
	b.Helper()
	header := make([]byte, 16)
	header[0] = 4
	binary.LittleEndian.PutUint32(header[4:8], 2) // the backend's index (establish)
	src, batch := r.src, 64
	if segments > 1 {
		// wireguard-go sends up to 128 packets per sendmmsg call.
		src, batch = r.gsoSrc, max(1, 128/segments)
	}
	l, err := udpbatch.NewLoad(src, r.sink, r.addr, udpbatch.LoadConfig{Size: size, Header: header, Segments: segments, Batch: batch, Window: 2048})
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Warmup(context.Background()); err != nil {
		b.Fatal(err)
	}
	cpu0, m0 := r.usage(b)
	res, err := l.Run(context.Background(), n)
	if err != nil {
		b.Fatal(err)
	}
	cpu1, m1 := r.usage(b)
	if res.Received == 0 {
		b.Fatalf("%s: nothing arrived: %+v", r.name, res)
	}
	return relayRun{res: res, cpu: cpu1 - cpu0, mallocs: m1 - m0}
}

// BenchmarkRelayOffload measures UDP offload: the gateway with offload, the
// gateway without, and the plain batched forwarder (udpbatch.Forward, recvmmsg
// and sendmmsg, no offload, no per-packet work), each in a process of its own
// with one core (GOMAXPROCS 1, one shard), all three in every iteration with the
// same datagram count. Senders send like wireguard-go (GSO runs of 1400-byte
// datagrams, up to 64 per message) or one datagram at a time.
//
// The figures are per relay CPU time (the child's user + system time from
// getrusage), not wall time, so other load on the machine does not skew them:
// dgrams/cpu-s is what one relay core delivers; x-plain is that against the plain
// forwarder; cpu-s/GB the relay CPU per GB of payload relayed; allocs/dgram the
// relay's heap allocations per delivered datagram. Loss (loopback drops when a
// relay falls behind) is reported; lost datagrams cost the relay nothing.
func BenchmarkRelayOffload(b *testing.B) {
	relays := []*relayProc{startRelay(b, "plain"), startRelay(b, "gateway-no-offload"), startRelay(b, "gateway-offload")}
	for _, c := range []struct {
		name           string
		size, segments int
	}{
		{"gso-sender/1400B", 1400, 64},
		{"single-sender/1400B", 1400, 1},
		{"single-sender/100B", 100, 1},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Rounds in rotating order, so that a change in the machine's
			// load during the run does not favour one relay.
			const rounds = 6
			runs := make([]relayRun, len(relays))
			per := max(b.N/rounds, 1000)
			b.ResetTimer()
			for round := range rounds {
				for j := range relays {
					i := (round + j) % len(relays)
					run := relays[i].run(b, c.size, c.segments, per)
					runs[i].add(run)
				}
			}
			b.StopTimer()
			plain := runs[0].perCPU()
			for i, r := range relays {
				short := map[string]string{"plain": "plain", "gateway-no-offload": "gw-off", "gateway-offload": "gw-on"}[r.name]
				run := runs[i]
				b.ReportMetric(run.perCPU(), short+"-dgrams/cpu-s")
				if i > 0 && plain > 0 {
					b.ReportMetric(run.perCPU()/plain, short+"-x-plain")
				}
				if run.res.Bytes > 0 {
					b.ReportMetric(run.cpu.Seconds()/(float64(run.res.Bytes)/1e9), short+"-cpu-s/GB")
				}
				b.ReportMetric(float64(run.mallocs)/float64(run.res.Received), short+"-allocs/dgram")
				b.ReportMetric(100*run.res.LossRatio(), short+"-loss-%")
			}
		})
	}
}
