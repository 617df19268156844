package otelscraper

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
)

// encodingScraper returns a scraper of url that keeps every series, and the
// names of the metrics its scrapes exported (report series included).
func encodingScraper(t *testing.T, url string, acceptGzip bool) (*scraper, *metrics, func() map[string]bool) {
	t.Helper()
	rules, err := ParseRules([]byte("default: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	sink := func(b []byte, _ int) error { chunks = append(chunks, append([]byte(nil), b...)); return nil }
	m := newMetrics(nil, "test")
	s, err := newScraper(Target{Job: "j", URL: url, Interval: time.Minute, Timeout: 10 * time.Second},
		func() *Rules { return rules }, sink, m, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.acceptGzip = acceptGzip
	s.report = true
	names := func() map[string]bool {
		out := map[string]bool{}
		eachMetric(t, chunks, func(m *metricspb.Metric) { out[m.Name] = true })
		chunks = nil
		return out
	}
	return s, m, names
}

// TestScrapeContentEncoding scrapes a real promhttp handler (what the kubelet
// and node-exporter serve /metrics with: it gzips a response when asked): by
// default the scraper asks for identity, so the target compresses nothing;
// with --scrape.accept-gzip it asks for gzip and reads the compressed
// response. Both export the same series.
func TestScrapeContentEncoding(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "requests_total", Help: "Requests."}, []string{"code"})
	reg.MustRegister(c)
	c.WithLabelValues("200").Add(3)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	var mu sync.Mutex
	var asked, got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		mu.Lock()
		asked = append(asked, r.Header.Get("Accept-Encoding"))
		got = append(got, rec.Header().Get("Content-Encoding"))
		mu.Unlock()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}))
	defer srv.Close()
	for _, tc := range []struct {
		acceptGzip bool
		asked, got string
	}{
		{false, "identity", ""},
		{true, "gzip", "gzip"},
	} {
		s, m, names := encodingScraper(t, srv.URL, tc.acceptGzip)
		s.scrapeOnce(context.Background(), time.Unix(1700000000, 0))
		mu.Lock()
		a, g := asked[len(asked)-1], got[len(got)-1]
		mu.Unlock()
		if a != tc.asked || g != tc.got {
			t.Errorf("acceptGzip=%v: asked Accept-Encoding %q, target answered Content-Encoding %q; want %q, %q", tc.acceptGzip, a, g, tc.asked, tc.got)
		}
		if n := names(); !n["requests_total"] {
			t.Errorf("acceptGzip=%v: exported %v, want requests_total", tc.acceptGzip, n)
		}
		if v := testutilValue(t, m, "success"); v != 1 {
			t.Errorf("acceptGzip=%v: successful scrapes = %v", tc.acceptGzip, v)
		}
	}
}

// TestScrapeUnaskedEncoding: a gzip response sent although identity was asked
// for is read; an encoding the scraper cannot read and a corrupt gzip body are
// a failed scrape (up 0, result error), never a parse of compressed bytes; a
// gzip body that expands beyond the response limit is cut off there.
func TestScrapeUnaskedEncoding(t *testing.T) {
	gz := func(s string) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		_, _ = io.WriteString(zw, s)
		_ = zw.Close()
		return b.Bytes()
	}
	payload := "# TYPE a_total counter\na_total 1\n"
	for _, tc := range []struct {
		name, encoding string
		body           []byte
		ok             bool
	}{
		{"gzip unasked", "gzip", gz(payload), true},
		{"x-gzip", "x-gzip", gz(payload), true},
		{"brotli", "br", []byte(payload), false},
		{"corrupt gzip", "gzip", append(gz(payload)[:12], "not deflate at all"...), false},
		{"not gzip at all", "gzip", []byte(payload), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Encoding", tc.encoding)
				_, _ = w.Write(tc.body)
			}))
			defer srv.Close()
			s, m, names := encodingScraper(t, srv.URL, false)
			s.scrapeOnce(context.Background(), time.Unix(1700000000, 0))
			n := names()
			if tc.ok {
				if !n["a_total"] || testutilValue(t, m, "success") != 1 {
					t.Errorf("exported %v, successful scrapes %v; want a_total, 1", n, testutilValue(t, m, "success"))
				}
				return
			}
			if n["a_total"] || testutilValue(t, m, "error") != 1 {
				t.Errorf("exported %v, failed scrapes %v; want no a_total, 1 error", n, testutilValue(t, m, "error"))
			}
			if !n["up"] {
				t.Errorf("no up series for a failed scrape: %v", n)
			}
		})
	}

	// A gzip bomb: 2 KiB lines, compressed to a few hundred KiB, expanding
	// past maxBody.
	line := "a_total{l=\"" + strings.Repeat("x", 2000) + "\"} 1\n"
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	_, _ = io.WriteString(zw, "# TYPE a_total counter\n")
	for n := 0; n <= maxBody/len(line)+1; n++ {
		_, _ = io.WriteString(zw, line)
	}
	_ = zw.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write(bomb.Bytes())
	}))
	defer srv.Close()
	s, m, _ := encodingScraper(t, srv.URL, true)
	s.scrapeOnce(context.Background(), time.Unix(1700000000, 0))
	if v := testutilValue(t, m, "error"); v != 1 {
		t.Errorf("a %d-byte gzip body expanding past %d bytes: failed scrapes = %v, want 1", bomb.Len(), maxBody, v)
	}
}
