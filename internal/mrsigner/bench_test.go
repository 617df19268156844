package mrsigner

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/trellis-garden/trellis/internal/webhook"
)

// benchConcurrency bounds the client connections: the most concurrent clients
// of any sub-benchmark.
const benchConcurrency = 32

// serveTLS serves h over TLS on loopback with the reloading certificate path the
// daemon uses, and returns a client that trusts it (HTTP/2, as the API server's
// webhook client).
func serveTLS(b *testing.B, h http.Handler) (string, *http.Client) {
	b.Helper()
	certs := writeServingCert(b, b.TempDir())
	reloader, err := webhook.NewCertReloader(certs.CertFile, certs.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: reloader.TLSConfig()}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	b.Cleanup(func() { _ = srv.Close() })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.CA)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true, MaxIdleConnsPerHost: benchConcurrency}}
	b.Cleanup(client.CloseIdleConnections)
	return "https://" + ln.Addr().String(), client
}

// load posts body n times from benchConcurrency goroutines and returns the sorted
// latencies.
func load(b *testing.B, client *http.Client, url string, body []byte, n, concurrency int) []time.Duration {
	b.Helper()
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				start := time.Now()
				resp, err := client.Post(url, "application/json", bytes.NewReader(body))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return lat
}

func pct(lat []time.Duration, p float64) float64 {
	return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
}

// BenchmarkWebhookLatency measures /mutate under concurrent load: AdmissionReviews
// of a 64 KiB Secret written by a trusted user (decode, sign, JSONPatch) over TLS
// on loopback. The baseline is the same load against a TLS handler that only reads
// the body and answers a fixed allowed review, measured in the same run. Target:
// p99 under 5 ms.
func BenchmarkWebhookLatency(b *testing.B) {
	a, _ := testAdmitter(b, false)
	s := mrSecret("shoot--p--s", "managedresource-big", "")
	s.Data = map[string][]byte{"data.yaml.br": bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)}
	raw, _ := json.Marshal(s)
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}, Operation: admissionv1.Create,
			Namespace: s.Namespace, Name: s.Name, UserInfo: authenticationv1.UserInfo{Username: "alice"}, Object: runtimeRaw(raw)}})

	fixed := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"bench","allowed":true}}`)
	baseURL, baseClient := serveTLS(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(fixed)
	}))
	url, client := serveTLS(b, a.Handler())
	// Warm up connections and check the response signs.
	resp, err := client.Post(url+"/mutate", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	var out admissionv1.AdmissionReview
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out.Response == nil || out.Response.Patch == nil {
		b.Fatal("mutate did not sign")
	}
	for _, c := range []int{1, 4, benchConcurrency} {
		b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
			base := load(b, baseClient, baseURL, body, 100*c, c)
			b.ResetTimer()
			lat := load(b, client, url+"/mutate", body, max(b.N, c), c)
			b.StopTimer()
			b.SetBytes(int64(len(body)))
			b.ReportMetric(pct(lat, 0.50), "p50-ms")
			b.ReportMetric(pct(lat, 0.99), "p99-ms")
			b.ReportMetric(pct(base, 0.50), "baseline-p50-ms")
			b.ReportMetric(pct(base, 0.99), "baseline-p99-ms")
			b.ReportMetric(pct(lat, 0.99)/pct(base, 0.99), "p99-x-baseline")
			b.ReportMetric(pct(lat, 0.99)/5, "p99-x-target")
		})
	}
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }
