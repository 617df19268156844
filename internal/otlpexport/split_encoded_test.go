package otlpexport

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

func TestSplitEncoded(t *testing.T) {
	rms := mixedMetrics(3, 200)
	// A metric and a scope without data points must survive too.
	rms[1].ScopeMetrics[0].Metrics = append(rms[1].ScopeMetrics[0].Metrics, &metricspb.Metric{Name: "empty"})
	rms[2].ScopeMetrics = append(rms[2].ScopeMetrics, &metricspb.ScopeMetrics{})
	payload, err := proto.Marshal(&metricspb.MetricsData{ResourceMetrics: rms})
	if err != nil {
		t.Fatal(err)
	}
	total := len(payload)
	for _, maxBytes := range []int{2 * total, total, total / 2, 4096, 700, 100} {
		t.Run(fmt.Sprint(maxBytes), func(t *testing.T) {
			chunks, err := splitEncoded(payload, maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var merged []*metricspb.ResourceMetrics
			var points uint64
			for _, c := range chunks {
				enc := appendChunk(nil, c)
				if parts := bytes.Join(chunkParts(c), nil); !bytes.Equal(parts, enc) {
					t.Errorf("chunkParts differs from appendChunk")
				}
				var md metricspb.MetricsData
				if err := proto.Unmarshal(enc, &md); err != nil {
					t.Fatalf("chunk does not unmarshal: %v", err)
				}
				if n := countPoints(md.ResourceMetrics); n != c.points {
					t.Errorf("chunk has %d points, says %d", n, c.points)
				}
				if len(enc) > maxBytes && c.points > 1 {
					t.Errorf("chunk of %d bytes (%d points) exceeds %d", len(enc), c.points, maxBytes)
				}
				if len(enc) > c.est {
					t.Errorf("chunk of %d bytes above its estimate %d", len(enc), c.est)
				}
				points += c.points
				merged = append(merged, md.ResourceMetrics...)
			}
			if got, want := pointKeys(merged), pointKeys(rms); !equalSlices(got, want) {
				t.Fatalf("split lost or reordered points: %d keys, want %d", len(got), len(want))
			}
			if got, want := otlptest.Flatten(merged), otlptest.Flatten(rms); !reflect.DeepEqual(got, want) {
				t.Fatalf("split changed data points")
			}
			if want := countPoints(rms); points != want {
				t.Errorf("%d points, want %d", points, want)
			}
			if maxBytes == 2*total { // the estimate is conservative: EnqueueEncoded only splits beyond MaxBatchBytes
				if len(chunks) != 1 {
					t.Fatalf("%d chunks, want 1", len(chunks))
				}
				var md metricspb.MetricsData
				if err := proto.Unmarshal(appendChunk(nil, chunks[0]), &md); err != nil || !proto.Equal(&md, &metricspb.MetricsData{ResourceMetrics: rms}) {
					t.Errorf("one chunk differs from the input (%v)", err)
				}
			}
		})
	}
}

func TestSplitEncodedMalformed(t *testing.T) {
	for _, b := range [][]byte{{0x0a, 0x05, 0x12}, {0x0a, 0x02, 0x12, 0x09}, {0xff}} {
		if _, err := splitEncoded(b, 10); err == nil {
			t.Errorf("%x: no error", b)
		}
	}
}
