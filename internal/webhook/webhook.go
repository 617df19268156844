// Package webhook serves Kubernetes admission webhooks over HTTPS: AdmissionReview
// decoding and encoding, JSONPatch responses, and a serving certificate re-read
// from its files when they change (a mounted Secret is updated in place). It knows
// nothing about any daemon.
package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// MaxRequestBytes bounds a request body: the API server's own limit for an object
// is 3 MiB (etcd's 1.5 MiB value limit, twice, plus the old object on UPDATE).
const MaxRequestBytes = 7 << 20

// Func decides on one admission request. It returns the response without UID
// (Serve sets it).
type Func func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Serve returns an http.Handler for one webhook path.
func Serve(fn Func) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		body, release, err := readBody(w, r)
		defer release()
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		review, err := DecodeReview(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := fn(r.Context(), review.Request)
		if resp == nil {
			resp = Allow()
		}
		resp.UID = review.Request.UID
		out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}

// bodies recycles request buffers: a 64 KiB Secret arrives as ~90 KiB of JSON, and
// allocating that anew per request drives the garbage collector.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readBody reads at most MaxRequestBytes into a pooled buffer; call release when
// the body (and nothing decoded from it that aliases it) is no longer used.
func readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), err error) {
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	if r.ContentLength > 0 && r.ContentLength <= MaxRequestBytes {
		buf.Grow(int(r.ContentLength) + 1)
	}
	_, err = buf.ReadFrom(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	release = func() {
		if buf.Cap() <= 1<<20 { // keep only common sizes
			bodies.Put(buf)
		}
	}
	return buf.Bytes(), release, err
}

// DecodeReview parses an AdmissionReview v1 request strictly: case-sensitive
// field names, apiVersion admission.k8s.io/v1, a request with a UID.
func DecodeReview(body []byte) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview: %s %s", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return nil, errors.New("AdmissionReview without request or request.uid")
	}
	return &review, nil
}

// Allow admits the request unchanged.
func Allow(warnings ...string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
}

// Deny refuses the request with an HTTP status code (403 for a policy decision,
// 500 when the webhook cannot decide) and a message shown to the writer.
func Deny(code int32, msg string) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: msg}}
}

// PatchOp is one RFC 6902 JSON Patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch admits the request with the given JSON Patch applied.
func Patch(ops []PatchOp, warnings ...string) (*admissionv1.AdmissionResponse, error) {
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: b, PatchType: &pt, Warnings: warnings}, nil
}

// CertReloader serves a certificate and key from files, re-reading them when
// their modification time or size changes (checked at most once per Interval),
// so a renewed certificate in a mounted Secret is used without a restart. A failed
// reload keeps the previous certificate.
type CertReloader struct {
	CertFile, KeyFile string
	Interval          time.Duration
	// OnReload, when set, is told about every reload attempt (nil: success).
	OnReload func(err error)

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

// NewCertReloader loads the pair once; it fails when the files are unusable.
func NewCertReloader(certFile, keyFile string) (*CertReloader, error) {
	r := &CertReloader{CertFile: certFile, KeyFile: keyFile, Interval: time.Second}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CertReloader) fileStamp() (string, error) {
	var s string
	for _, f := range []string{r.CertFile, r.KeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", err
		}
		s += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return s, nil
}

// reload must be called with mu held or before the reloader is shared.
func (r *CertReloader) reload() error {
	stamp, err := r.fileStamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.CertFile, r.KeyFile)
	if err != nil {
		return fmt.Errorf("load serving certificate: %w", err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.Interval {
		r.checked = time.Now()
		if stamp, err := r.fileStamp(); err == nil && stamp != r.stamp {
			err := r.reload()
			if r.OnReload != nil {
				r.OnReload(err)
			}
		}
	}
	return r.cert, nil
}

// TLSConfig returns a server TLS configuration (TLS 1.2 or newer) that serves the
// reloader's certificate.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}
