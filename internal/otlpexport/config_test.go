package otlpexport_test

import (
	"crypto/tls"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/otlpexport"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  otlpexport.Config
		want string // substring of the error, "" for none
	}{
		{"grpc defaults", otlpexport.Config{Endpoint: "collector:4317"}, ""},
		{"http defaults", otlpexport.Config{Endpoint: "https://collector:4318/v1/metrics", Protocol: otlpexport.ProtocolHTTPProtobuf}, ""},
		{"grpc without port", otlpexport.Config{Endpoint: "collector"}, "host:port"},
		{"plain http without insecure", otlpexport.Config{Endpoint: "http://collector:4318/v1/metrics", Protocol: otlpexport.ProtocolHTTPProtobuf}, "insecure"},
		{"http without host", otlpexport.Config{Endpoint: "/v1/metrics", Protocol: otlpexport.ProtocolHTTPProtobuf}, "no host"},
		{"http odd scheme", otlpexport.Config{Endpoint: "ftp://collector/v1/metrics", Protocol: otlpexport.ProtocolHTTPProtobuf}, "scheme"},
		{"unknown protocol", otlpexport.Config{Endpoint: "collector:4317", Protocol: "http/json"}, "protocol"},
		{"zstd", otlpexport.Config{Endpoint: "collector:4317", Compression: "zstd"}, ""},
		{"unknown compression", otlpexport.Config{Endpoint: "collector:4317", Compression: "br"}, "compression"},
		{"insecure with TLS", otlpexport.Config{Endpoint: "collector:4317", Insecure: true, TLS: &tls.Config{}}, "exclusive"},
		{"retry max below initial", otlpexport.Config{Endpoint: "collector:4317", RetryInitial: 10e9, RetryMax: 1e9}, "retry max"},
		{"tiny batch", otlpexport.Config{Endpoint: "collector:4317", MaxBatchBytes: 100}, "max batch bytes"},
		{"queue below a batch", otlpexport.Config{Endpoint: "collector:4317", QueueMaxBytes: 1 << 20}, "queue max bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := otlpexport.New(tt.cfg, nil, nil, "")
			if err == nil {
				_ = e.Close()
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("New error %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// TestMetricNames lists every series the exporter registers (the daemon's doc page
// lists the same).
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := otlpexport.New(otlpexport.Config{Endpoint: "127.0.0.1:4317", Insecure: true}, nil, reg, "trellis_otel_shoot_scraper")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			got = append(got, name)
		}
	}
	sort.Strings(got)
	want := []string{
		"trellis_otel_shoot_scraper_export_data_points_total",
		"trellis_otel_shoot_scraper_export_duration_seconds",
		"trellis_otel_shoot_scraper_export_requests_total{result=permanent_error}",
		"trellis_otel_shoot_scraper_export_requests_total{result=retryable_error}",
		"trellis_otel_shoot_scraper_export_requests_total{result=success}",
		"trellis_otel_shoot_scraper_partial_success_rejected_data_points_total",
		"trellis_otel_shoot_scraper_queue_bytes",
		"trellis_otel_shoot_scraper_queue_corrupt_records_total",
		"trellis_otel_shoot_scraper_queue_dropped_data_points_total{reason=corrupt}",
		"trellis_otel_shoot_scraper_queue_dropped_data_points_total{reason=full}",
		"trellis_otel_shoot_scraper_queue_dropped_data_points_total{reason=permanent_error}",
		"trellis_otel_shoot_scraper_queue_entries",
		"trellis_otel_shoot_scraper_queue_oldest_age_seconds",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("series:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := otlpexport.New(otlpexport.Config{Endpoint: "127.0.0.1:4317", Insecure: true}, nil, reg, "trellis_otel_shoot_scraper"); err == nil {
		t.Error("registering the same metrics twice succeeded")
	}
}
