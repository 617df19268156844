package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// Request is an AdmissionRequest whose object and oldObject are decoded into T in
// the same pass as the review (a large Secret is scanned twice, not four times).
// The embedded request's Object and OldObject stay empty.
type Request[T any] struct {
	admissionv1.AdmissionRequest
	Object    *T `json:"object,omitempty"`
	OldObject *T `json:"oldObject,omitempty"`
}

type typedReview[T any] struct {
	metav1.TypeMeta `json:",inline"`
	Request         *Request[T] `json:"request,omitempty"`
}

// DecodeTypedReview is DecodeReview with the objects decoded into T.
func DecodeTypedReview[T any](body []byte) (metav1.TypeMeta, *Request[T], error) {
	var review typedReview[T]
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &review); err != nil {
		return metav1.TypeMeta{}, nil, fmt.Errorf("decode AdmissionReview: %w", err)
	}
	if review.APIVersion != admissionv1.SchemeGroupVersion.String() || review.Kind != "AdmissionReview" {
		return metav1.TypeMeta{}, nil, fmt.Errorf("not an admission.k8s.io/v1 AdmissionReview: %s %s", review.APIVersion, review.Kind)
	}
	if review.Request == nil || review.Request.UID == "" {
		return metav1.TypeMeta{}, nil, errors.New("AdmissionReview without request or request.uid")
	}
	return review.TypeMeta, review.Request, nil
}

// TypedFunc decides on one admission request with its objects decoded.
type TypedFunc[T any] func(ctx context.Context, req *Request[T]) *admissionv1.AdmissionResponse

// ServeTyped is Serve for webhooks that receive one kind of object, decoded as T.
func ServeTyped[T any](fn TypedFunc[T]) http.Handler {
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
		tm, req, err := DecodeTypedReview[T](body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := fn(r.Context(), req)
		if resp == nil {
			resp = Allow()
		}
		resp.UID = req.UID
		out, err := json.Marshal(admissionv1.AdmissionReview{TypeMeta: tm, Response: resp})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
}
