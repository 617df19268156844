package otlpexport_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc/codes"

	"github.com/trellis-garden/trellis/internal/otlpexport"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/testkit"
)

const (
	namespace = "test"
	waitFor   = 20 * time.Second // generous for -race on two shared cores
)

// protocols are the two transports with their receivers and typical failure codes.
var protocols = []struct {
	name      string
	protocol  otlpexport.Protocol
	receiver  func(testing.TB, ...otlptest.Option) *otlptest.Receiver
	retryable int
	permanent int
}{
	{"grpc", otlpexport.ProtocolGRPC, otlptest.NewGRPC, int(codes.Unavailable), int(codes.InvalidArgument)},
	{"http", otlpexport.ProtocolHTTPProtobuf, otlptest.NewHTTP, 503, 400},
}

func kv(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

// batch is scrape batch id with n gauge data points; all batches with the same n
// have the same encoded size.
func batch(id, n int) []*metricspb.ResourceMetrics {
	return producerBatch(0, id, n)
}

func producerBatch(producer, id, n int) []*metricspb.ResourceMetrics {
	points := make([]*metricspb.NumberDataPoint, n)
	for j := range points {
		points[j] = &metricspb.NumberDataPoint{
			Attributes: []*commonpb.KeyValue{
				kv("producer", fmt.Sprintf("%02d", producer)), kv("batch", fmt.Sprintf("%05d", id)), kv("series", fmt.Sprintf("%05d", j)),
			},
			StartTimeUnixNano: 1_700_000_000_000_000_000,
			TimeUnixNano:      1_700_000_000_000_000_000 + uint64(id)*15_000_000_000,
			Value:             &metricspb.NumberDataPoint_AsDouble{AsDouble: float64(id*1000 + j)},
		}
	}
	return []*metricspb.ResourceMetrics{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("k8s.node.name", "node-a")}},
		ScopeMetrics: []*metricspb.ScopeMetrics{{
			Scope:   &commonpb.InstrumentationScope{Name: "otel-shoot-scraper"},
			Metrics: []*metricspb.Metric{{Name: "test_value", Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: points}}}},
		}},
	}}
}

// expected flattens batches from..to-1 of n points.
func expected(from, to, n int) []otlptest.DataPoint {
	var out []otlptest.DataPoint
	for id := from; id < to; id++ {
		out = append(out, otlptest.Flatten(batch(id, n))...)
	}
	return out
}

// testConfig is a configuration with fast retries for receiver r.
func testConfig(r *otlptest.Receiver, p otlpexport.Protocol) otlpexport.Config {
	return otlpexport.Config{
		Endpoint:     r.URL(),
		Protocol:     p,
		Insecure:     true,
		Timeout:      30 * time.Second, // a loaded CI machine must not turn a slow answer into a resend
		RetryInitial: 10 * time.Millisecond,
		RetryMax:     200 * time.Millisecond,
	}
}

type testExporter struct {
	*otlpexport.Exporter
	reg  *prometheus.Registry
	stop func() // cancels Run and waits for it
}

func newExporter(t *testing.T, cfg otlpexport.Config) *testExporter {
	t.Helper()
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := otlpexport.New(cfg, log, reg, namespace)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	te := &testExporter{Exporter: e, reg: reg, stop: func() {}}
	t.Cleanup(func() {
		te.stop()
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return te
}

// run starts Run; stop (also at cleanup) ends it.
func (e *testExporter) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	e.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return after its context ended")
		}
		e.stop = func() {}
	}
}

func (e *testExporter) enqueue(t *testing.T, rms []*metricspb.ResourceMetrics) {
	t.Helper()
	if err := e.Enqueue(rms); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

// metric returns the value of a counter or gauge series (a histogram's count);
// labels are name=value pairs.
func (e *testExporter) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := testkit.Metric(t, e.reg, namespace+"_"+name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.EventuallyWithin(t, waitFor, what, cond)
}

// waitDrained waits until the exporter's queue is empty.
func (e *testExporter) waitDrained(t *testing.T) {
	t.Helper()
	eventually(t, "an empty queue", func() bool { n, _ := e.QueueLen(); return n == 0 })
}

// equalPoints fails the test if got differs from want, naming the first difference.
func equalPoints(t *testing.T, got, want []otlptest.DataPoint) {
	t.Helper()
	if reflect.DeepEqual(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("data point %d (of %d, want %d):\n got %+v\nwant %+v", i, len(got), len(want), got[i], want[i])
		}
	}
	t.Fatalf("got %d data points, want %d", len(got), len(want))
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(b[:len(b)-1]))
	return len(b), nil
}

// writeFileAtomic replaces a file the way the kubelet updates projected volumes.
func writeFileAtomic(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
