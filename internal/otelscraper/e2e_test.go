package otelscraper

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// app is a real HTTP target serving Prometheus text; its counter grows by 10 per
// scrape and can be reset.
type app struct {
	mu      sync.Mutex
	counter int
	created float64
	scrapes atomic.Int64
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.counter += 10
	c, created := a.counter, a.created
	a.mu.Unlock()
	a.scrapes.Add(1)
	w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
	fmt.Fprintf(w, `# HELP requests Requests served.
# TYPE requests counter
requests_total{code="200"} %d
requests_created{code="200"} %g
# TYPE temperature_celsius gauge
temperature_celsius 21.5
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 1
latency_seconds_bucket{le="1"} 3
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_sum 2.5
latency_seconds_count 4
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds{quantile="0.99"} 0.9
rpc_seconds_sum 7
rpc_seconds_count 20
# EOF
`, c, created)
}

// reset restarts the counter, as a restarted process would (new _created).
func (a *app) reset() {
	a.mu.Lock()
	a.counter = 0
	a.created = float64(time.Now().Unix())
	a.mu.Unlock()
}

// runDaemon runs the otel-shoot-scraper command in-process with args.
func runDaemon(t *testing.T, args ...string) (stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := NewCommand()
	cmd.SetArgs(args)
	var logs testkit.SyncBuffer
	cmd.SetErr(&logs)
	cmd.SetOut(io.Discard)
	done := make(chan int, 1)
	go func() { done <- daemon.Execute(ctx, cmd) }()
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("daemon did not stop")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestScrapeToOTLP(t *testing.T) {
	target := &app{created: 1700000000}
	srv := httptest.NewServer(target)
	defer srv.Close()
	recv := otlptest.NewGRPC(t)
	stop := runDaemon(t, "--discovery.kubernetes=false", "--node.name=node-1",
		"--target.static=job=app,url="+srv.URL+"/metrics,interval=1s",
		"--otlp.endpoint="+recv.Addr(), "--otlp.insecure", "--otlp.retry.initial=100ms", "--otlp.retry.max=200ms",
		"--queue.dir="+t.TempDir(), "--resource.attribute=shoot.name=my-shoot",
		// One data point per queue record: every scrape is several records.
		"--queue.record-max-data-points=1",
		"--web.listen-address=127.0.0.1:0", "--log.level=warn")

	// Two scrapes' worth of points: 1 counter + 1 gauge + 1 histogram + 1 summary
	// and the 4 report series (up, ...) each.
	points := recv.WaitDataPoints(t, 16, 30*time.Second)
	byMetric := map[string][]otlptest.DataPoint{}
	for _, p := range points {
		byMetric[p.Metric] = append(byMetric[p.Metric], p)
	}
	if len(byMetric["requests"]) == 0 {
		names := []string{}
		for n := range byMetric {
			names = append(names, n)
		}
		t.Fatalf("no requests; metrics: %v", names)
	}
	c := byMetric["requests"]
	if len(c) < 2 || c[0].Type != "sum" || !c[0].Monotonic || c[0].Attributes["code"] != "200" {
		t.Fatalf("counter points = %+v", c)
	}
	if c[0].StartTimeUnixNano != uint64(1700000000)*1e9 || c[1].StartTimeUnixNano != c[0].StartTimeUnixNano {
		t.Fatalf("counter start time %d/%d, want _created", c[0].StartTimeUnixNano, c[1].StartTimeUnixNano)
	}
	if c[1].Value <= c[0].Value || c[1].TimeUnixNano <= c[0].TimeUnixNano {
		t.Fatalf("counter not increasing: %v then %v", c[0].Value, c[1].Value)
	}
	res := c[0].Resource
	if res["service.name"] != "app" || res["shoot.name"] != "my-shoot" || res["k8s.node.name"] != "node-1" || res["service.instance.id"] == "" {
		t.Fatalf("resource = %v", res)
	}
	if g := byMetric["temperature_celsius"]; len(g) == 0 || g[0].Type != "gauge" || g[0].Value != 21.5 {
		t.Fatalf("gauge = %+v", g)
	}
	h := byMetric["latency_seconds"]
	if len(h) == 0 || h[0].Type != "histogram" || h[0].Count != 4 || h[0].Sum != 2.5 ||
		fmt.Sprint(h[0].ExplicitBounds) != "[0.1 1]" || fmt.Sprint(h[0].BucketCounts) != "[1 2 1]" {
		t.Fatalf("histogram = %+v", h)
	}
	if s := byMetric["rpc_seconds"]; len(s) == 0 || s[0].Type != "summary" || s[0].Count != 20 || len(s[0].Quantiles) != 2 {
		t.Fatalf("summary = %+v", s)
	}

	// Outage: the receiver goes away, scraping goes on, then it comes back:
	// every scrape arrives, none twice but a request that was in flight when
	// the receiver stopped (it may have stored it and died before answering:
	// delivery is at least once).
	stopped := uint64(time.Now().UnixNano())
	recv.Stop()
	before := target.scrapes.Load()
	testkit.Eventually(t, "three scrapes during the outage", func() bool { return target.scrapes.Load() >= before+3 })
	// A counter reset during the outage gets a new start time.
	target.reset()
	scraped := int(target.scrapes.Load()) + 1 // at least one scrape after the reset
	recv.Restart()
	var counters []otlptest.DataPoint
	testkit.EventuallyNil(t, "the counter points of the outage", func() error {
		counters = counters[:0]
		for _, p := range recv.DataPoints() {
			if p.Metric == "requests" {
				counters = append(counters, p)
			}
		}
		if len(counters) < scraped {
			return fmt.Errorf("%d counter points after the outage, want at least %d (one per scrape)", len(counters), scraped)
		}
		return nil
	})
	seen := map[uint64]bool{}
	resets := 0
	for i, p := range counters {
		if seen[p.TimeUnixNano] {
			if p.TimeUnixNano >= stopped {
				t.Fatalf("scrape at %d (after the receiver stopped) delivered twice", p.TimeUnixNano)
			}
			t.Logf("scrape at %d, in flight when the receiver stopped, delivered twice", p.TimeUnixNano)
			continue
		}
		seen[p.TimeUnixNano] = true
		if i > 0 && p.Value < counters[i-1].Value {
			resets++
			if p.StartTimeUnixNano <= counters[i-1].StartTimeUnixNano {
				t.Fatal("reset not reflected in the start time")
			}
		}
	}
	if resets != 1 {
		t.Fatalf("%d resets seen, want 1", resets)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code %d", code)
	}
}
