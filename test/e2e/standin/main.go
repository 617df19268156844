// Command standin serves, as a pod of the e2e cluster, what a cloud or a control
// plane would around trellis, so that nothing leaves the machine:
//
//	standin metadata  Azure Scheduled Events (internal/imds/imdsfake) on :8080, plus
//	                  POST /e2e/schedule?type=Reboot&resource=NAME to announce an
//	                  event and GET /e2e/approvals to read the approvals.
//	standin stun      STUN Binding responder on :3478/udp answering with
//	                  --mapped (a NAT gateway's public address), and an HTTP echo
//	                  answering the same on :8080.
//	standin otlp      OTLP/HTTP metrics receiver on :4318 (/v1/metrics); GET
//	                  :8080/stats answers the data points received, by metric.
//	standin sink      TCP server on :9000 that reads and counts bytes; GET
//	                  :8080/stats answers the count.
//	standin send      connect to --to and send --bytes bytes, then wait forever
//	                  (a pod whose flow zone-flow-tracer counts).
//	standin wgserver  a WireGuard server (wireguard-go on a userspace netstack) on
//	                  :51820/udp with private key --key and one peer --peer (hex),
//	                  tunnel address --tunnel-ip, peer address --peer-ip; serves
//	                  its --name over HTTP on the tunnel address, port 80.
//
// Every mode answers GET :8080/healthz.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v3"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"google.golang.org/protobuf/proto"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"

	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: standin metadata|stun|otlp|sink|send [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	mapped := fs.String("mapped", "203.0.113.50", "stun: address reported to callers.")
	to := fs.String("to", "", "send: host:port to send to.")
	n := fs.Int64("bytes", 1<<20, "send: bytes to send.")
	key := fs.String("key", "", "wgserver: private key (hex).")
	peer := fs.String("peer", "", "wgserver: the client's public key (hex).")
	tunnelIP := fs.String("tunnel-ip", "10.99.0.1", "wgserver: tunnel address.")
	peerIP := fs.String("peer-ip", "10.99.0.2", "wgserver: the client's tunnel address.")
	name := fs.String("name", "", "wgserver: name served over the tunnel.")
	_ = fs.Parse(os.Args[2:])
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	var err error
	switch os.Args[1] {
	case "metadata":
		err = metadata(log)
	case "stun":
		err = stunServer(log, *mapped)
	case "otlp":
		err = otlp(log)
	case "sink":
		err = sink(log)
	case "send":
		err = send(log, *to, *n)
	case "wgserver":
		err = wgServer(log, *key, *peer, *tunnelIP, *peerIP, *name)
	case "pause":
		waitSignal()
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		log.Error("standin failed", "err", err)
		os.Exit(1)
	}
}

func waitSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	<-ch
}

func serveHTTP(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		waitSignal()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func healthz(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func metadata(log *slog.Logger) error {
	az := imdsfake.NewAzure()
	az.SetRateLimit(0)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("POST /e2e/schedule", func(w http.ResponseWriter, r *http.Request) {
		typ := r.URL.Query().Get("type")
		if typ == "" {
			typ = "Reboot"
		}
		ev := imdsfake.AzureEvent{EventType: typ, Resources: r.URL.Query()["resource"], DurationInSeconds: -1,
			NotBefore: imdsfake.AzureTime(time.Now().Add(10 * time.Minute))}
		id := az.Schedule(ev)
		log.Info("event scheduled", "id", id, "type", typ, "resources", ev.Resources)
		writeJSON(w, map[string]string{"eventId": id})
	})
	mux.HandleFunc("GET /e2e/approvals", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, az.Approvals()) })
	mux.Handle("/", az)
	log.Info("serving Azure metadata", "addr", ":8080")
	return serveHTTP(":8080", mux)
}

func stunServer(log *slog.Logger, mapped string) error {
	addr, err := netip.ParseAddr(mapped)
	if err != nil {
		return err
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{Port: 3478})
	if err != nil {
		return err
	}
	var requests atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if req.Decode() != nil || req.Type != stun.BindingRequest {
				continue
			}
			requests.Add(1)
			m, err := stun.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
				&stun.XORMappedAddress{IP: addr.AsSlice(), Port: from.Port}, stun.Fingerprint)
			if err == nil {
				_, _ = conn.WriteToUDP(m.Raw, from)
			}
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int64{"stunRequests": requests.Load()})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, mapped+"\n") })
	log.Info("serving STUN and HTTP echo", "stun", ":3478", "http", ":8080", "mapped", mapped)
	defer conn.Close()
	return serveHTTP(":8080", mux)
}

// otlpStats is what the OTLP stand-in received.
type otlpStats struct {
	mu       sync.Mutex
	Requests int64            `json:"requests"`
	Points   int64            `json:"points"`
	ByMetric map[string]int64 `json:"byMetric"`
	// Resource attribute values seen, by key (first 20 values each).
	Resource map[string][]string `json:"resource"`
	// times: the distinct data point timestamps (ms) received per metric, for
	// the gap analysis of the queue proof (GET /times?metric=NAME).
	times map[string]map[int64]bool
}

func otlp(log *slog.Logger) error {
	st := &otlpStats{ByMetric: map[string]int64{}, Resource: map[string][]string{}, times: map[string]map[int64]bool{}}
	recv := http.NewServeMux()
	recv.HandleFunc("POST /v1/metrics", func(w http.ResponseWriter, r *http.Request) {
		m, err := decode(r)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, err.Error())
			return
		}
		pts := otlptest.Flatten(m.ResourceMetrics)
		st.mu.Lock()
		st.Requests++
		st.Points += int64(len(pts))
		for _, p := range pts {
			st.ByMetric[p.Metric]++
			ts := st.times[p.Metric]
			if ts == nil {
				ts = map[int64]bool{}
				st.times[p.Metric] = ts
			}
			ts[int64(p.TimeUnixNano/1e6)] = true
			for k, v := range p.Resource {
				vs := st.Resource[k]
				if len(vs) < 20 && !contains(vs, v) {
					st.Resource[k] = append(vs, v)
				}
			}
		}
		st.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	})
	go func() {
		if err := serveHTTP(":4318", recv); err != nil {
			log.Error("OTLP receiver failed", "err", err)
			os.Exit(1)
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		st.mu.Lock()
		defer st.mu.Unlock()
		writeJSON(w, st)
	})
	mux.HandleFunc("/times", func(w http.ResponseWriter, r *http.Request) {
		st.mu.Lock()
		ts := make([]int64, 0, len(st.times[r.URL.Query().Get("metric")]))
		for t := range st.times[r.URL.Query().Get("metric")] {
			ts = append(ts, t)
		}
		st.mu.Unlock()
		slices.Sort(ts)
		writeJSON(w, ts)
	})
	log.Info("serving OTLP/HTTP", "addr", ":4318")
	return serveHTTP(":8080", mux)
}

func contains(vs []string, v string) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

const maxBody = 64 << 20

func decode(r *http.Request) (*metricspb.MetricsData, error) {
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		return nil, fmt.Errorf("content type %q, want application/x-protobuf", ct)
	}
	zr, release, err := otlpcompress.NewReader(r.Header.Get("Content-Encoding"), http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, err
	}
	defer release()
	b, err := io.ReadAll(io.LimitReader(zr, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, errors.New("body too large")
	}
	var m metricspb.MetricsData
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

func sink(log *slog.Logger) error {
	ln, err := net.Listen("tcp", ":9000")
	if err != nil {
		return err
	}
	var total atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				total.Add(n)
				log.Info("connection done", "from", c.RemoteAddr().String(), "bytes", n)
			}()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]int64{"bytes": total.Load()})
	})
	return serveHTTP(":8080", mux)
}

func send(log *slog.Logger, to string, n int64) error {
	if to == "" {
		return errors.New("--to is required")
	}
	var c net.Conn
	var err error
	for i := 0; i < 60; i++ {
		if c, err = net.DialTimeout("tcp", to, 2*time.Second); err == nil {
			break
		}
		time.Sleep(time.Second)
	}
	if err != nil {
		return err
	}
	chunk := []byte(strings.Repeat("trellis-e2e ", 1024))
	var sent int64
	for sent < n {
		k := int64(len(chunk))
		if n-sent < k {
			k = n - sent
		}
		m, err := c.Write(chunk[:k])
		sent += int64(m)
		if err != nil {
			return err
		}
	}
	_ = c.Close()
	log.Info("sent", "to", to, "bytes", sent)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, map[string]int64{"bytes": sent}) })
	return serveHTTP(":8080", mux)
}

func wgServer(log *slog.Logger, key, peer, tunnelIP, peerIP, name string) error {
	ip, err := netip.ParseAddr(tunnelIP)
	if err != nil {
		return err
	}
	tunDev, tnet, err := netstack.CreateNetTUN([]netip.Addr{ip}, nil, 1420)
	if err != nil {
		return err
	}
	dev := device.NewDevice(tunDev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "wireguard: "))
	defer dev.Close()
	cfg := "private_key=" + key + "\nlisten_port=51820\npublic_key=" + peer + "\nallowed_ip=" + peerIP + "/32\n"
	if err := dev.IpcSet(cfg); err != nil {
		return err
	}
	if err := dev.Up(); err != nil {
		return err
	}
	ln, err := tnet.ListenTCP(&net.TCPAddr{Port: 80})
	if err != nil {
		return err
	}
	var served atomic.Int64
	tsrv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, name)
	})}
	go func() { _ = tsrv.Serve(ln) }()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", healthz)
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, map[string]int64{"served": served.Load()}) })
	log.Info("serving WireGuard", "udp", ":51820", "tunnel", tunnelIP, "name", name)
	return serveHTTP(":8080", mux)
}
