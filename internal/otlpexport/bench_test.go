package otlpexport_test

import (
	"fmt"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/otlpexport"
)

// scrapeBatch looks like one node's cAdvisor/kubelet/node-exporter scrape: 300
// metrics of 100 series with four labels each, 30k data points.
func scrapeBatch() []*metricspb.ResourceMetrics {
	var ms []*metricspb.Metric
	for m := range 300 {
		points := make([]*metricspb.NumberDataPoint, 100)
		for s := range points {
			points[s] = &metricspb.NumberDataPoint{
				Attributes: []*commonpb.KeyValue{
					kv("namespace", fmt.Sprintf("shoot--project--cluster-%d", s%7)),
					kv("pod", fmt.Sprintf("workload-%d-7c9f8d6b5-x2k4p", s)),
					kv("container", "app"),
					kv("id", fmt.Sprintf("/kubepods/burstable/pod%08d", s)),
				},
				StartTimeUnixNano: 1_700_000_000_000_000_000,
				TimeUnixNano:      1_700_000_015_000_000_000,
				Value:             &metricspb.NumberDataPoint_AsDouble{AsDouble: float64(m*s) + 0.5},
			}
		}
		ms = append(ms, &metricspb.Metric{
			Name: fmt.Sprintf("container_metric_%03d_total", m),
			Data: &metricspb.Metric_Sum{Sum: &metricspb.Sum{
				DataPoints: points, IsMonotonic: true,
				AggregationTemporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE,
			}},
		})
	}
	return []*metricspb.ResourceMetrics{{
		Resource:     &resourcepb.Resource{Attributes: []*commonpb.KeyValue{kv("k8s.node.name", "node-a")}},
		ScopeMetrics: []*metricspb.ScopeMetrics{{Scope: &commonpb.InstrumentationScope{Name: "otel-shoot-scraper"}, Metrics: ms}},
	}}
}

// BenchmarkEnqueue30k measures Enqueue of a 30k-data-point scrape: marshalling,
// splitting into 3 MiB records, CRC and (disk) one write and fsync.
func BenchmarkEnqueue30k(b *testing.B) {
	rms := scrapeBatch()
	size := proto.Size(&metricspb.MetricsData{ResourceMetrics: rms})
	for _, disk := range []bool{false, true} {
		b.Run(fmt.Sprintf("disk=%v", disk), func(b *testing.B) {
			cfg := otlpexport.Config{Endpoint: "127.0.0.1:4317", Insecure: true, QueueMaxBytes: 64 << 20}
			if disk {
				cfg.QueueDir = b.TempDir()
			}
			e, err := otlpexport.New(cfg, nil, nil, "")
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := e.Enqueue(rms); err != nil {
					b.Fatal(err)
				}
			}
			n, _ := e.QueueLen()
			b.ReportMetric(float64(n), "queued-records")
		})
	}
}
