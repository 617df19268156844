package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

func review(uid string) []byte {
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1TypeMeta(),
		Request:  &admissionv1.AdmissionRequest{UID: "u-" + typesUID(uid), Operation: admissionv1.Create},
	})
	return b
}

func TestServe(t *testing.T) {
	h := Serve(func(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		r, _ := Patch([]PatchOp{{Op: "add", Path: "/x", Value: "y"}})
		return r
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(review("1"))))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil || out.Response.UID != "u-1" || !out.Response.Allowed ||
		string(out.Response.Patch) != `[{"op":"add","path":"/x","value":"y"}]` || out.Kind != "AdmissionReview" {
		t.Fatalf("response %s (%v)", rec.Body, err)
	}
	for _, bad := range []string{``, `{}`, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
		`{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}`,
		`{"APIVERSION":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x"}}`} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte(bad))))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", bad, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", rec.Code)
	}
}

// FuzzDecodeReview: the decoder never panics, and whatever it accepts has a request
// with a UID.
func FuzzDecodeReview(f *testing.F) {
	f.Add(review("1"))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":{"kind":"Secret","data":{"a":"YQ=="}}}}`))
	f.Add([]byte(`{"request":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReview(b)
		if err != nil {
			return
		}
		if r.Request == nil || r.Request.UID == "" {
			t.Fatal("accepted a review without request UID")
		}
	})
}

// WriteTestCert writes a self-signed certificate for 127.0.0.1 into dir.
func writeCert(t *testing.T, dir, cn string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	// Write to temporary files and rename, as the kubelet swaps a mounted Secret.
	for name, data := range map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}),
	} {
		tmp := filepath.Join(dir, name+".tmp")
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, dir, "first")
	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	r.Interval = 0
	reloads := 0
	r.OnReload = func(err error) {
		if err == nil {
			reloads++
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{TLSConfig: r.TLSConfig(), Handler: http.NotFoundHandler()}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	cn := func() string {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := cn(); got != "first" {
		t.Fatalf("served %q", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	// The stamp includes the modification time in nanoseconds; poll in case the
	// file system's clock granularity hides the change.
	for i := 0; cn() != "second-"+itoa(i); i++ {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not served")
		}
		writeCert(t, dir, "second-"+itoa(i+1))
		if cn() == "second-"+itoa(i+1) {
			break
		}
	}
	if reloads == 0 {
		t.Fatal("OnReload not told")
	}
	// A broken pair keeps the last good one.
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := cn(); got == "" {
		t.Fatal("no certificate after a broken reload")
	}
}

type obj struct {
	Name string `json:"name"`
}

func TestServeTyped(t *testing.T) {
	var got *Request[obj]
	h := ServeTyped(func(_ context.Context, req *Request[obj]) *admissionv1.AdmissionResponse {
		got = req
		return Deny(403, "no")
	})
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","object":{"name":"new"},"oldObject":{"name":"old"}}}`
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", bytes.NewReader([]byte(body))))
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response.UID != "u" || out.Response.Allowed || out.Response.Result.Code != 403 {
		t.Fatalf("response %s", rec.Body)
	}
	if got.Object.Name != "new" || got.OldObject.Name != "old" || got.Operation != admissionv1.Update || got.AdmissionRequest.Object.Raw != nil {
		t.Fatalf("decoded %+v", got)
	}
}

// FuzzDecodeTypedReview: never panics; what it accepts has a request UID.
func FuzzDecodeTypedReview(f *testing.F) {
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"name":"n"}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":null,"oldObject":7}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, r, err := DecodeTypedReview[obj](b)
		if err == nil && (r == nil || r.UID == "") {
			t.Fatal("accepted a review without request UID")
		}
	})
}
