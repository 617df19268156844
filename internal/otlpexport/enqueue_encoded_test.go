package otlpexport_test

import (
	"testing"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/otlpexport"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

// encoded is batch id of n points as EnqueueEncoded takes it.
func encoded(t *testing.T, rms []*metricspb.ResourceMetrics) []byte {
	t.Helper()
	b, err := proto.Marshal(&metricspb.MetricsData{ResourceMetrics: rms})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnqueueEncodedDelivery(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t)
			cfg := testConfig(r, p.protocol)
			cfg.QueueDir = t.TempDir()
			e := newExporter(t, cfg)
			e.run(t)
			buf := encoded(t, batch(0, 10))
			if err := e.EnqueueEncoded(buf, 10); err != nil {
				t.Fatal(err)
			}
			clear(buf) // the exporter must have copied it
			if err := e.EnqueueEncoded(encoded(t, batch(1, 10)), 10); err != nil {
				t.Fatal(err)
			}
			if err := e.EnqueueEncoded(nil, 0); err != nil {
				t.Fatal(err)
			}
			equalPoints(t, r.WaitDataPoints(t, 20, waitFor), expected(0, 2, 10))
			e.waitDrained(t)
			if got := e.metric(t, "export_data_points_total"); got != 20 {
				t.Errorf("export_data_points_total = %v, want 20", got)
			}
		})
	}
}

// TestEnqueueEncodedEqualsEnqueue queues the same batches with Enqueue and
// EnqueueEncoded: the queues hold as many records and bytes, and the receivers
// get the same data points.
func TestEnqueueEncodedEqualsEnqueue(t *testing.T) {
	for _, maxBatch := range []int{0, 8 << 10} {
		ra, rb := otlptest.NewHTTP(t), otlptest.NewHTTP(t)
		cfgA, cfgB := testConfig(ra, otlpexport.ProtocolHTTPProtobuf), testConfig(rb, otlpexport.ProtocolHTTPProtobuf)
		cfgA.MaxBatchBytes, cfgB.MaxBatchBytes = maxBatch, maxBatch
		cfgA.QueueDir, cfgB.QueueDir = t.TempDir(), t.TempDir()
		a, b := newExporter(t, cfgA), newExporter(t, cfgB)
		total := 0
		for id, n := range []int{5, 2000, 1} {
			a.enqueue(t, batch(id, n))
			if err := b.EnqueueEncoded(encoded(t, batch(id, n)), n); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		na, ba := a.QueueLen()
		nb, bb := b.QueueLen()
		if maxBatch == 0 && (na != nb || ba != bb) {
			t.Errorf("Enqueue queued %d records of %d bytes, EnqueueEncoded %d of %d", na, ba, nb, bb)
		}
		if maxBatch != 0 && nb < 10 {
			t.Errorf("a 2000-point batch became %d records, want many of at most 8 KiB", nb)
		}
		a.run(t)
		b.run(t)
		want := ra.WaitDataPoints(t, total, waitFor)
		equalPoints(t, rb.WaitDataPoints(t, total, waitFor), want)
		a.waitDrained(t)
		b.waitDrained(t)
		if got := b.metric(t, "export_data_points_total"); got != float64(total) {
			t.Errorf("export_data_points_total = %v, want %d", got, total)
		}
	}
}
