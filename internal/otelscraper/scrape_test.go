package otelscraper

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// eachMetric calls fn with every metric of the chunks (encoded MetricsData).
func eachMetric(t *testing.T, chunks [][]byte, fn func(*metricspb.Metric)) {
	t.Helper()
	for _, c := range chunks {
		var md metricspb.MetricsData
		if err := proto.Unmarshal(c, &md); err != nil {
			t.Fatal(err)
		}
		for _, rm := range md.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					fn(m)
				}
			}
		}
	}
}

// sumStarts returns the start time of every Sum data point in the chunks,
// by metric name.
func sumStarts(t *testing.T, chunks [][]byte) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	eachMetric(t, chunks, func(m *metricspb.Metric) {
		for _, dp := range m.GetSum().GetDataPoints() {
			out[m.Name] = dp.StartTimeUnixNano
		}
	})
	return out
}

// TestPartialScrapeKeepsSeries checks that a scrape cut short by a malformed
// line or a broken connection exports what it read, counts as failed, and
// does not forget the series it did not reach: they keep their start time
// (forgetting them would make a backend see a counter reset).
func TestPartialScrapeKeepsSeries(t *testing.T) {
	// Counters that only grow: 1, 2, 3.
	const full = "# TYPE a_total counter\na_total %[1]d\n# TYPE b_total counter\nb_total %[1]d\n"
	for name, cut := range map[string]string{
		"malformed line": "# TYPE a_total counter\na_total %[1]d\nb_total{ %[1]d\n",
		"broken body":    "# TYPE a_total counter\na_total %[1]d\nb_to",
	} {
		t.Run(name, func(t *testing.T) {
			var n atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := n.Add(1)
				body := fmt.Sprintf(full, i)
				if i == 2 {
					body = fmt.Sprintf(cut, i)
					if name == "broken body" {
						// Promise more than is sent: the client sees an
						// unexpected EOF.
						w.Header().Set("Content-Length", "1000")
					}
				}
				_, _ = io.WriteString(w, body)
			}))
			defer srv.Close()
			var chunks [][]byte
			sink := func(b []byte, _ int) error {
				chunks = append(chunks, append([]byte(nil), b...))
				return nil
			}
			rules, err := ParseRules([]byte("default: {}\n"))
			if err != nil {
				t.Fatal(err)
			}
			m := newMetrics(nil, "test")
			s, err := newScraper(Target{Job: "j", URL: srv.URL, Interval: time.Minute, Timeout: 10 * time.Second},
				func() *Rules { return rules }, sink, m, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(1700000000, 0)
			ctx := context.Background()

			s.scrapeOnce(ctx, t0)
			first := sumStarts(t, chunks)
			chunks = nil
			s.scrapeOnce(ctx, t0.Add(time.Minute))
			partial := sumStarts(t, chunks)
			if _, ok := partial["a_total"]; !ok || len(partial) != 1 {
				t.Fatalf("partial scrape exported %v, want a_total only", partial)
			}
			result := "parse_error"
			if name == "broken body" {
				result = "error"
			}
			if got := testutilValue(t, m, result); got != 1 {
				t.Fatalf("scrapes_total{result=%q} = %v, want 1", result, got)
			}
			chunks = nil
			s.scrapeOnce(ctx, t0.Add(2*time.Minute))
			third := sumStarts(t, chunks)
			for _, name := range []string{"a_total", "b_total"} {
				if third[name] != first[name] || first[name] == 0 {
					t.Errorf("%s: start time %d after the partial scrape, %d before", name, third[name], first[name])
				}
			}
		})
	}
}

// testutilValue returns scrapes_total{job="j",result=result}.
func testutilValue(t *testing.T, m *metrics, result string) float64 {
	t.Helper()
	return testutil.ToFloat64(m.scrapes.WithLabelValues("j", result))
}

// TestConstLabelsDoNotOverwrite: a constLabel is added to a series that lacks
// the label (or has it empty) and never replaces one it has, as the rules doc
// says: no handler="overridden", no exported_handler.
func TestConstLabelsDoNotOverwrite(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "# TYPE req_total counter\nreq_total{handler=\"/api\"} 1\nreq_total{handler=\"\",code=\"200\"} 2\nreq_total{code=\"500\"} 3\n")
	}))
	defer srv.Close()
	rules, err := ParseRules([]byte("default:\n  constLabels: {handler: overridden, cluster: shoot-a}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	sink := func(b []byte, _ int) error { chunks = append(chunks, append([]byte(nil), b...)); return nil }
	s, err := newScraper(Target{Job: "j", URL: srv.URL, Interval: time.Minute, Timeout: 10 * time.Second},
		func() *Rules { return rules }, sink, newMetrics(nil, "test"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.scrapeOnce(context.Background(), time.Unix(1700000000, 0))
	var got []string
	for _, c := range chunks {
		var md metricspb.MetricsData
		if err := proto.Unmarshal(c, &md); err != nil {
			t.Fatal(err)
		}
		for _, rm := range md.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					for _, dp := range m.GetSum().GetDataPoints() {
						var kv []string
						for _, a := range dp.Attributes {
							kv = append(kv, a.Key+"="+a.Value.GetStringValue())
						}
						got = append(got, strings.Join(kv, ","))
					}
				}
			}
		}
	}
	want := []string{
		"handler=/api,cluster=shoot-a",
		"code=200,cluster=shoot-a,handler=overridden",
		"code=500,cluster=shoot-a,handler=overridden",
	}
	if !slices.Equal(got, want) {
		t.Errorf("attributes:\n got %q\nwant %q", got, want)
	}
}

// gauges returns the Gauge data points of the chunks as name -> value, and
// whether each had attributes.
func gauges(t *testing.T, chunks [][]byte) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, c := range chunks {
		var md metricspb.MetricsData
		if err := proto.Unmarshal(c, &md); err != nil {
			t.Fatal(err)
		}
		for _, rm := range md.ResourceMetrics {
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					for _, dp := range m.GetGauge().GetDataPoints() {
						out[m.Name] = dp.GetAsDouble()
					}
				}
			}
		}
	}
	return out
}

// TestReportSeries: every scrape exports up, scrape_duration_seconds,
// scrape_samples_scraped, scrape_samples_post_metric_relabeling and
// scrape_series_added like a direct Prometheus scrape, up 0 when the scrape
// fails; OpenMetrics info families keep their _info name.
func TestReportSeries(t *testing.T) {
	var fail atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
		_, _ = io.WriteString(w, "# TYPE build info\nbuild_info{version=\"1.2\"} 1\n# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n# EOF\n")
	}))
	defer srv.Close()
	rules, err := ParseRules([]byte("default: {drop: [b]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	sink := func(b []byte, _ int) error { chunks = append(chunks, append([]byte(nil), b...)); return nil }
	s, err := newScraper(Target{Job: "j", URL: srv.URL, Interval: time.Minute, Timeout: 10 * time.Second},
		func() *Rules { return rules }, sink, newMetrics(nil, "test"), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.report = true
	s.scrapeOnce(context.Background(), time.Unix(1700000000, 0))
	got := gauges(t, chunks)
	for name, want := range map[string]float64{"up": 1, "scrape_samples_scraped": 3, "scrape_samples_post_metric_relabeling": 2,
		"scrape_series_added": 2, "build_info": 1, "a": 1} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (exported: %v), want %v", name, v, ok, want)
		}
	}
	chunks = nil
	s.scrapeOnce(context.Background(), time.Unix(1700000030, 0))
	if v, ok := gauges(t, chunks)["scrape_series_added"]; !ok || v != 0 {
		t.Errorf("second scrape: scrape_series_added = %v (exported: %v), want 0", v, ok)
	}
	if _, ok := got["scrape_duration_seconds"]; !ok {
		t.Error("no scrape_duration_seconds")
	}
	if _, ok := got["build"]; ok {
		t.Error("info family exported as build, want build_info")
	}
	chunks = nil
	fail.Store(true)
	s.scrapeOnce(context.Background(), time.Unix(1700000060, 0))
	got = gauges(t, chunks)
	if v, ok := got["up"]; !ok || v != 0 {
		t.Errorf("failed scrape: up = %v (exported: %v), want 0", v, ok)
	}
	if v := got["scrape_samples_scraped"]; v != 0 {
		t.Errorf("failed scrape: scrape_samples_scraped = %v", v)
	}
}
