package otlpexport_test

import (
	"testing"

	"github.com/trellis-garden/trellis/internal/otlpexport"
)

// TestRecordsCompressedOnceAcrossRestart: records are compressed when queued
// and sent as stored; several merged records arrive as one request that the
// receiver decodes whole (joined gzip segments, consecutive zstd frames). After
// a restart with another compression, the queued records are sent in the new
// one. Nothing is lost or sent twice.
func TestRecordsCompressedOnceAcrossRestart(t *testing.T) {
	for _, p := range protocols {
		for _, c := range []struct{ from, to string }{
			{otlpexport.CompressionGzip, otlpexport.CompressionGzip},
			{otlpexport.CompressionGzip, otlpexport.CompressionZstd},
			{otlpexport.CompressionZstd, otlpexport.CompressionNone},
			{otlpexport.CompressionNone, otlpexport.CompressionGzip},
		} {
			t.Run(p.name+"/"+c.from+"-to-"+c.to, func(t *testing.T) {
				r := p.receiver(t)
				cfg := testConfig(r, p.protocol)
				cfg.QueueDir = t.TempDir()
				cfg.Compression = c.from
				first := newExporter(t, cfg)
				first.run(t)
				for id := range 4 {
					first.enqueue(t, batch(id, 50))
				}
				r.WaitDataPoints(t, 200, waitFor)
				first.waitDrained(t)
				for _, req := range r.Requests() {
					if want := wireName(c.from); req.Compression != want {
						t.Fatalf("request compressed %q, want %q", req.Compression, want)
					}
				}
				// Queued while the receiver is down: merged into one request after
				// the restart.
				r.Stop()
				for id := 4; id < 10; id++ {
					first.enqueue(t, batch(id, 50))
				}
				first.stop()
				if err := first.Close(); err != nil {
					t.Fatal(err)
				}
				seen := len(r.Requests())
				r.Restart()
				cfg.Compression = c.to
				second := newExporter(t, cfg)
				second.run(t)
				r.WaitDataPoints(t, 500, waitFor)
				second.waitDrained(t)
				equalPoints(t, r.DataPoints(), expected(0, 10, 50))
				reqs := r.Requests()[seen:]
				for _, req := range reqs {
					if want := wireName(c.to); req.Compression != want || req.Metrics == nil || !req.Accepted {
						t.Fatalf("request compressed %q (want %q), decoded %v, accepted %v", req.Compression, want, req.Metrics != nil, req.Accepted)
					}
				}
				if len(reqs) >= 6 {
					t.Errorf("%d requests for 6 queued records, want them merged", len(reqs))
				}
			})
		}
	}
}

func wireName(c string) string {
	if c == otlpexport.CompressionNone {
		return ""
	}
	return c
}
