package otlpexport_test

import (
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/otlpexport"
	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
)

func TestTLS(t *testing.T) {
	for _, p := range protocols {
		for _, mutual := range []bool{false, true} {
			name := p.name + "/server-auth"
			if mutual {
				name = p.name + "/mutual"
			}
			t.Run(name, func(t *testing.T) {
				ca := otlptest.NewCA(t)
				r := p.receiver(t, otlptest.WithTLS(ca.ServerConfig(t, mutual)))
				var certFile, keyFile string
				if mutual {
					certFile, keyFile = ca.Issue(t, "client", false)
				}
				tc, err := otlpexport.TLSConfig(ca.CertFile(), certFile, keyFile, "", false)
				if err != nil {
					t.Fatalf("TLSConfig: %v", err)
				}
				cfg := testConfig(r, p.protocol)
				cfg.Insecure = false
				cfg.TLS = tc
				if p.protocol == otlpexport.ProtocolHTTPProtobuf && !strings.HasPrefix(cfg.Endpoint, "https://") {
					t.Fatalf("endpoint %s is not https", cfg.Endpoint)
				}
				e := newExporter(t, cfg)
				e.run(t)
				e.enqueue(t, batch(0, 5))
				equalPoints(t, r.WaitDataPoints(t, 5, waitFor), expected(0, 1, 5))
			})
		}
	}
}

// TestTLSUnknownCA: a server certificate from another CA is not trusted; the batch
// stays queued (a TLS failure is a transport error, retried).
func TestTLSUnknownCA(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			r := p.receiver(t, otlptest.WithTLS(otlptest.NewCA(t).ServerConfig(t, false)))
			tc, err := otlpexport.TLSConfig(otlptest.NewCA(t).CertFile(), "", "", "", false)
			if err != nil {
				t.Fatal(err)
			}
			cfg := testConfig(r, p.protocol)
			cfg.Insecure, cfg.TLS = false, tc
			e := newExporter(t, cfg)
			e.run(t)
			e.enqueue(t, batch(0, 5))
			eventually(t, "failed TLS attempts", func() bool {
				return e.metric(t, "export_requests_total", "result", "retryable_error") >= 2
			})
			if n, _ := e.QueueLen(); n != 1 {
				t.Errorf("queue holds %d records, want the batch kept", n)
			}
			if len(r.Requests()) != 0 {
				t.Errorf("receiver got a request over an untrusted connection")
			}
		})
	}
}

func TestTLSConfigErrors(t *testing.T) {
	ca := otlptest.NewCA(t)
	cert, key := ca.Issue(t, "client", false)
	tests := []struct {
		name, ca, cert, key string
	}{
		{"missing CA file", "/nonexistent/ca.pem", "", ""},
		{"CA file without PEM", cert + ".nope", "", ""},
		{"cert without key", "", cert, ""},
		{"key without cert", "", "", key},
		{"key is no certificate", "", key, key},
	}
	for _, tt := range tests {
		if _, err := otlpexport.TLSConfig(tt.ca, tt.cert, tt.key, "", false); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	tc, err := otlpexport.TLSConfig("", cert, key, "collector.example", false)
	if err != nil {
		t.Fatalf("TLSConfig: %v", err)
	}
	if tc.ServerName != "collector.example" || tc.RootCAs != nil || tc.GetClientCertificate == nil {
		t.Errorf("unexpected configuration %+v", tc)
	}
}
