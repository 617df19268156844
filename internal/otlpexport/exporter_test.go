package otlpexport_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

func TestDelivery(t *testing.T) {
	for _, p := range protocols {
		for _, compression := range []string{otlpexport.CompressionGzip, otlpexport.CompressionZstd, otlpexport.CompressionNone} {
			t.Run(p.name+"/"+compression, func(t *testing.T) {
				r := p.receiver(t)
				token := filepath.Join(t.TempDir(), "token")
				writeFileAtomic(t, token, "token-1\n")
				cfg := testConfig(r, p.protocol)
				cfg.Compression = compression
				cfg.Headers = map[string]string{"X-Scope-OrgID": "shoot--garden--a"}
				cfg.BearerTokenFile = token
				cfg.QueueDir = t.TempDir()
				e := newExporter(t, cfg)
				e.run(t)

				e.enqueue(t, batch(0, 10))
				r.WaitDataPoints(t, 10, waitFor)
				writeFileAtomic(t, token, "token-2") // rotated between sends
				e.enqueue(t, batch(1, 10))
				equalPoints(t, r.WaitDataPoints(t, 20, waitFor), expected(0, 2, 10))

				reqs := r.Requests()
				if len(reqs) != 2 {
					t.Fatalf("%d requests, want 2", len(reqs))
				}
				wantCompression := compression
				if compression == otlpexport.CompressionNone {
					wantCompression = ""
				}
				for i, req := range reqs {
					if got, want := req.Headers["authorization"], fmt.Sprintf("Bearer token-%d", i+1); got != want {
						t.Errorf("request %d: authorization %q, want %q", i, got, want)
					}
					if got := req.Headers["x-scope-orgid"]; got != "shoot--garden--a" {
						t.Errorf("request %d: x-scope-orgid %q", i, got)
					}
					if req.Compression != wantCompression {
						t.Errorf("request %d: compression %q, want %q", i, req.Compression, wantCompression)
					}
				}
				e.waitDrained(t)
				if got := e.metric(t, "export_requests_total", "result", "success"); got != 2 {
					t.Errorf("export_requests_total{success} = %v, want 2", got)
				}
				if got := e.metric(t, "export_data_points_total"); got != 20 {
					t.Errorf("export_data_points_total = %v, want 20", got)
				}
				if got := e.metric(t, "export_duration_seconds"); got != 2 {
					t.Errorf("export_duration_seconds count = %v, want 2", got)
				}
			})
		}
	}
}

func TestPartialSuccess(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t)
			r.SetPartialSuccess(3)
			e := newExporter(t, testConfig(r, p.protocol))
			e.run(t)
			e.enqueue(t, batch(0, 10))
			r.WaitDataPoints(t, 10, waitFor)
			e.waitDrained(t)
			eventually(t, "partial success counted", func() bool {
				return e.metric(t, "partial_success_rejected_data_points_total") == 3
			})
		})
	}
}

// TestOutage stops the receiver, enqueues 20 batches, restarts it on the same port
// and expects every batch once, in order.
func TestOutage(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t)
			cfg := testConfig(r, p.protocol)
			cfg.QueueDir = t.TempDir()
			e := newExporter(t, cfg)
			e.run(t)
			e.enqueue(t, batch(0, 5))
			r.WaitDataPoints(t, 5, waitFor)
			e.waitDrained(t) // the response arrived: stopping now cannot cause a resend

			r.Stop()
			for id := 1; id <= 20; id++ {
				e.enqueue(t, batch(id, 5))
			}
			eventually(t, "failed attempts during the outage", func() bool {
				return e.metric(t, "export_requests_total", "result", "retryable_error") >= 5
			})
			if n, _ := e.QueueLen(); n != 20 {
				t.Fatalf("queue holds %d records during the outage, want 20", n)
			}
			r.Restart()
			r.WaitDataPoints(t, 21*5, waitFor)
			e.waitDrained(t)
			equalPoints(t, r.DataPoints(), expected(0, 21, 5))
			if got := e.metric(t, "queue_oldest_age_seconds"); got != 0 {
				t.Errorf("queue_oldest_age_seconds = %v on an empty queue", got)
			}
		})
	}
}

// TestRestart closes an exporter with a non-empty queue; a new exporter on the same
// directory delivers the rest, and nothing twice.
func TestRestart(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t)
			cfg := testConfig(r, p.protocol)
			cfg.QueueDir = t.TempDir()
			first := newExporter(t, cfg)
			first.run(t)
			for id := range 5 {
				first.enqueue(t, batch(id, 5))
			}
			r.WaitDataPoints(t, 25, waitFor)
			first.waitDrained(t)
			r.Stop()
			for id := 5; id < 10; id++ {
				first.enqueue(t, batch(id, 5))
			}
			first.stop()
			if err := first.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			r.Restart()
			second := newExporter(t, cfg)
			if n, _ := second.QueueLen(); n != 5 {
				t.Fatalf("recovered queue holds %d records, want 5", n)
			}
			if got := second.metric(t, "queue_entries"); got != 5 {
				t.Errorf("queue_entries = %v, want 5", got)
			}
			if got := second.metric(t, "queue_oldest_age_seconds"); got <= 0 {
				t.Errorf("queue_oldest_age_seconds = %v, want > 0", got)
			}
			second.run(t)
			r.WaitDataPoints(t, 50, waitFor)
			second.waitDrained(t)
			equalPoints(t, r.DataPoints(), expected(0, 10, 5))
		})
	}
}

func TestFullQueueDropsOldest(t *testing.T) {
	for _, disk := range []bool{true, false} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			r := otlptest.NewGRPC(t)
			cfg := testConfig(r, otlpexport.ProtocolGRPC)
			// Uncompressed: every record has the same size.
			cfg.Compression = otlpexport.CompressionNone
			if disk {
				cfg.QueueDir = t.TempDir()
			}
			// Learn the size of one record from a scratch exporter.
			probe, err := otlpexport.New(otlpexport.Config{Endpoint: "127.0.0.1:1", Insecure: true, Compression: otlpexport.CompressionNone}, nil, nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := probe.Enqueue(batch(0, 20)); err != nil {
				t.Fatal(err)
			}
			_, recordBytes := probe.QueueLen()
			_ = probe.Close()

			cfg.MaxBatchBytes = 4096
			cfg.QueueMaxBytes = max(5*recordBytes+recordBytes/2, 4096+28)
			keep := int(cfg.QueueMaxBytes / recordBytes)
			e := newExporter(t, cfg)
			for id := range 12 {
				e.enqueue(t, batch(id, 20))
			}
			n, bytes := e.QueueLen()
			if n != keep || bytes > cfg.QueueMaxBytes {
				t.Fatalf("queue holds %d records / %d bytes, want %d records within %d bytes", n, bytes, keep, cfg.QueueMaxBytes)
			}
			if got, want := e.metric(t, "queue_dropped_data_points_total", "reason", "full"), float64((12-keep)*20); got != want {
				t.Errorf("dropped{full} = %v, want %v", got, want)
			}
			if got := e.metric(t, "queue_bytes"); got != float64(bytes) {
				t.Errorf("queue_bytes = %v, want %d", got, bytes)
			}
			e.run(t)
			r.WaitDataPoints(t, keep*20, waitFor)
			e.waitDrained(t)
			equalPoints(t, r.DataPoints(), expected(12-keep, 12, 20))
		})
	}
}

func TestCorruptTailRecord(t *testing.T) {
	r := otlptest.NewHTTP(t)
	cfg := testConfig(r, otlpexport.ProtocolHTTPProtobuf)
	cfg.QueueDir = t.TempDir()
	first := newExporter(t, cfg)
	for id := range 5 {
		first.enqueue(t, batch(id, 20))
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(cfg.QueueDir, "*.seg"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v; want one", segs, err)
	}
	info, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(segs[0], info.Size()-10); err != nil { // torn last record
		t.Fatal(err)
	}

	second := newExporter(t, cfg)
	if n, _ := second.QueueLen(); n != 4 {
		t.Fatalf("recovered %d records, want 4", n)
	}
	if got := second.metric(t, "queue_corrupt_records_total"); got != 1 {
		t.Errorf("queue_corrupt_records_total = %v, want 1", got)
	}
	if got := second.metric(t, "queue_dropped_data_points_total", "reason", "corrupt"); got != 20 {
		t.Errorf("dropped{corrupt} = %v, want 20", got)
	}
	second.run(t)
	r.WaitDataPoints(t, 80, waitFor)
	second.waitDrained(t)
	equalPoints(t, r.DataPoints(), expected(0, 4, 20))
}

func TestPermanentErrorDropsBatch(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t)
			r.FailNext(1, p.permanent)
			e := newExporter(t, testConfig(r, p.protocol))
			e.run(t)
			e.enqueue(t, batch(0, 10))
			r.WaitRequests(t, 1, waitFor)
			e.enqueue(t, batch(1, 10))
			r.WaitDataPoints(t, 10, waitFor)
			e.waitDrained(t)
			equalPoints(t, r.DataPoints(), expected(1, 2, 10))
			if got := e.metric(t, "export_requests_total", "result", "permanent_error"); got != 1 {
				t.Errorf("export_requests_total{permanent_error} = %v, want 1", got)
			}
			if got := e.metric(t, "queue_dropped_data_points_total", "reason", "permanent_error"); got != 10 {
				t.Errorf("dropped{permanent_error} = %v, want 10", got)
			}
		})
	}
}

// TestPermanentErrorInMergedBatch: a rejected merged request is resent record by
// record, so only the rejected record is dropped.
func TestPermanentErrorInMergedBatch(t *testing.T) {
	r := otlptest.NewHTTP(t)
	e := newExporter(t, testConfig(r, otlpexport.ProtocolHTTPProtobuf))
	for id := range 3 {
		e.enqueue(t, batch(id, 10))
	}
	r.FailNext(2, 400) // the merged request, then record 0 alone
	e.run(t)
	r.WaitDataPoints(t, 20, waitFor)
	e.waitDrained(t)
	equalPoints(t, r.DataPoints(), expected(1, 3, 10))
	reqs := r.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4 (merged, then one per record)", len(reqs))
	}
	if got := len(otlptest.Flatten(reqs[0].Metrics.ResourceMetrics)); got != 30 {
		t.Errorf("first request carried %d points, want 30 (three merged records)", got)
	}
	if got := e.metric(t, "queue_dropped_data_points_total", "reason", "permanent_error"); got != 10 {
		t.Errorf("dropped{permanent_error} = %v, want 10", got)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, p := range protocols {
		retryCode := p.retryable
		if p.name == "http" {
			retryCode = 429
		}
		t.Run(p.name+"/honoured", func(t *testing.T) {
			r := p.receiver(t)
			r.FailNextRetryAfter(1, retryCode, time.Second)
			cfg := testConfig(r, p.protocol)
			cfg.RetryMax = 10 * time.Second
			e := newExporter(t, cfg)
			e.run(t)
			e.enqueue(t, batch(0, 5))
			r.WaitDataPoints(t, 5, waitFor)
			reqs := r.Requests()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want 2", len(reqs))
			}
			if gap := reqs[1].Received.Sub(reqs[0].Received); gap < 950*time.Millisecond {
				t.Errorf("retried after %s, receiver asked for 1s", gap)
			}
		})
		t.Run(p.name+"/bounded", func(t *testing.T) {
			r := p.receiver(t)
			r.FailNextRetryAfter(1, retryCode, time.Hour)
			cfg := testConfig(r, p.protocol)
			cfg.RetryMax = 300 * time.Millisecond
			e := newExporter(t, cfg)
			e.run(t)
			e.enqueue(t, batch(0, 5))
			r.WaitDataPoints(t, 5, waitFor)
			reqs := r.Requests()
			if gap := reqs[1].Received.Sub(reqs[0].Received); gap > 5*time.Second {
				t.Errorf("retried after %s, RetryMax is 300ms", gap)
			}
		})
	}
}

// TestConcurrentEnqueueAndRun runs producers against Run under -race, with a few
// retryable failures; every batch arrives once and each producer's batches in order.
func TestConcurrentEnqueueAndRun(t *testing.T) {
	const producers, perProducer, points = 4, 25, 3
	r := otlptest.NewGRPC(t)
	r.FailNext(3, protocols[0].retryable)
	cfg := testConfig(r, otlpexport.ProtocolGRPC)
	cfg.QueueDir = t.TempDir()
	cfg.MaxBatchBytes = 4096 // several requests
	e := newExporter(t, cfg)
	e.run(t)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for id := range perProducer {
				if err := e.Enqueue(producerBatch(p, id, points)); err != nil {
					t.Errorf("Enqueue: %v", err)
				}
				e.QueueLen()
			}
		})
	}
	wg.Go(func() {
		for range 50 {
			if _, err := e.reg.Gather(); err != nil {
				t.Errorf("Gather: %v", err)
			}
		}
	})
	wg.Wait()
	dps := r.WaitDataPoints(t, producers*perProducer*points, waitFor)
	e.waitDrained(t)
	if len(r.DataPoints()) != producers*perProducer*points {
		t.Fatalf("%d data points, want %d", len(r.DataPoints()), producers*perProducer*points)
	}
	last := map[string]string{}
	seen := map[string]bool{}
	for _, dp := range dps {
		key := dp.Attributes["producer"] + "/" + dp.Attributes["batch"] + "/" + dp.Attributes["series"]
		if seen[key] {
			t.Fatalf("data point %s delivered twice", key)
		}
		seen[key] = true
		prod, b := dp.Attributes["producer"], dp.Attributes["batch"]
		if b < last[prod] {
			t.Fatalf("producer %s: batch %s after %s", prod, b, last[prod])
		}
		last[prod] = b
	}
}

func TestCloseEndsRunAndEnqueue(t *testing.T) {
	r := otlptest.NewGRPC(t)
	e := newExporter(t, testConfig(r, otlpexport.ProtocolGRPC))
	e.run(t)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Enqueue(batch(0, 1)); !errors.Is(err, otlpexport.ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	e.stop()
}

func TestLargeBatchIsSplit(t *testing.T) {
	r := otlptest.NewHTTP(t)
	cfg := testConfig(r, otlpexport.ProtocolHTTPProtobuf)
	cfg.MaxBatchBytes = 8 << 10
	e := newExporter(t, cfg)
	e.enqueue(t, batch(0, 2000))
	if n, _ := e.QueueLen(); n < 10 {
		t.Fatalf("a 2000-point batch became %d records, want many of at most 8 KiB", n)
	}
	e.run(t)
	r.WaitDataPoints(t, 2000, waitFor)
	e.waitDrained(t)
	equalPoints(t, r.DataPoints(), expected(0, 1, 2000))
}
