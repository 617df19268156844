package demo

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

// otelScenario: a small application serving Prometheus text on loopback is a
// static target of otel-shoot-scraper, which pushes OTLP/gRPC to a real OTLP
// receiver (otlptest) standing in for the control plane's collector.
type otelScenario struct {
	scraper *proc
	recv    *otlptest.Receiver
	app     string
	scrapes atomic.Int64
	started atomic.Bool
	proven  atomic.Bool
}

func (s *otelScenario) name() string { return "otel-shoot-scraper" }

func (s *otelScenario) start(ctx context.Context, d *Demo) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	begin := time.Now()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.scrapes.Add(1)
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP shop_http_requests_total Requests served.\n# TYPE shop_http_requests_total counter\n")
		fmt.Fprintf(w, "shop_http_requests_total{code=\"200\",path=\"/cart\"} %d\n", 17*n)
		fmt.Fprintf(w, "shop_http_requests_total{code=\"500\",path=\"/cart\"} %d\n", n/5)
		fmt.Fprintf(w, "# HELP shop_queue_length Items waiting.\n# TYPE shop_queue_length gauge\nshop_queue_length %d\n", n%7)
		fmt.Fprintf(w, "# HELP shop_uptime_seconds Seconds since start.\n# TYPE shop_uptime_seconds gauge\nshop_uptime_seconds %.1f\n", time.Since(begin).Seconds())
	})}
	go func() { _ = srv.Serve(ln) }()
	d.tb.Cleanup(func() { _ = srv.Close() })
	s.app = "http://" + ln.Addr().String() + "/metrics"

	if err := try(func() { s.recv = otlptest.NewGRPC(d.tb) }); err != nil {
		return err
	}
	p, err := d.launch(ctx, "otel-shoot-scraper", d.bin("otel-shoot-scraper"), []string{
		"--discovery.kubernetes=false", "--node.name=shoot-worker-azure-3",
		"--target.static=job=shop,url=" + s.app + ",interval=1s",
		"--resource.attribute=shoot=garden--alpha",
		"--otlp.protocol=grpc", "--otlp.endpoint=" + s.recv.Addr(), "--otlp.insecure",
		"--otlp.retry.initial=200ms", "--otlp.retry.max=2s",
		"--queue.dir=" + filepath.Join(d.dir, "otel-queue"),
		"--web.listen-address=127.0.0.1:0",
	}, nil, "serving web endpoints")
	if err != nil {
		return err
	}
	s.scraper = p
	s.started.Store(true)
	return nil
}

func (s *otelScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	st.Endpoints = []string{endpoint("otel-shoot-scraper", s.scraper),
		fmt.Sprintf("%-22s %s", "target (static)", s.app),
		fmt.Sprintf("%-22s grpc://%s", "OTLP receiver", s.recv.Addr())}
	m := scrape(ctx, s.scraper.addr("serving web endpoints"))
	points := s.recv.DataPoints()
	ours := 0
	metricsSeen := map[string]bool{}
	for _, p := range points {
		if p.Resource["service.name"] == "shop" {
			ours++
			metricsSeen[p.Metric] = true
		}
	}
	st.Lines = append(st.Lines,
		fmt.Sprintf("target scraped %d times  scrapes ok %.0f  samples kept %.0f",
			s.scrapes.Load(), m.sum("trellis_otel_shoot_scraper_scrapes_total", "job", "shop", "result", "success"),
			m.sum("trellis_otel_shoot_scraper_samples_kept_total", "job", "shop")),
		fmt.Sprintf("OTLP receiver: %d export requests, %d data points (%d from job shop, %d metric names)  queue entries %.0f",
			len(s.recv.Requests()), len(points), ours, len(metricsSeen), m.sum("trellis_otel_shoot_scraper_queue_entries")),
	)
	if ours > 0 && metricsSeen["shop_http_requests_total"] {
		s.proven.Store(true)
	}
	st.Proven = s.proven.Load()
	st.Proof = "data points of the scraped target (service.name=shop) arrived at the OTLP receiver"
	return st
}
