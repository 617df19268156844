package mrsigner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/webhook"
)

// Referencer tells whether a ManagedResource names a Secret.
type Referencer interface {
	Referenced(namespace, name string) bool
}

// Admitter decides admission requests for Secrets: /mutate signs writes by trusted
// identities and strips the signature from everyone else's; /validate optionally
// denies untrusted writes of in-scope Secrets outright.
type Admitter struct {
	Keys          *KeyStore
	Trust         Trust
	Selectors     []labels.Selector
	Refs          Referencer
	DenyUntrusted bool
	Log           *slog.Logger
	metrics       *metrics
}

// signaturePath is the JSON pointer of the signature annotation.
var signaturePath = "/metadata/annotations/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(secretsig.Annotation)

func (a *Admitter) inScope(s *corev1.Secret) bool {
	set := labels.Set(s.Labels)
	for _, sel := range a.Selectors {
		if sel.Matches(set) {
			return true
		}
	}
	return a.Refs != nil && a.Refs.Referenced(s.Namespace, s.Name)
}

// Request is an admission request for a Secret, decoded in one pass.
type Request = webhook.Request[corev1.Secret]

// decode returns the Secret of a CREATE or UPDATE of a core/v1 Secret, nil for
// any other request (which is allowed unchanged).
func decode(req *Request) (*corev1.Secret, error) {
	if req.Kind.Group != "" || req.Kind.Kind != "Secret" || req.SubResource != "" ||
		(req.Operation != admissionv1.Create && req.Operation != admissionv1.Update) {
		return nil, nil
	}
	if req.Object == nil {
		return nil, errors.New("request without object")
	}
	s := req.Object
	// The request's namespace and name are the API server's; the object's may be
	// empty on CREATE.
	s.Namespace = req.Namespace
	if s.Name == "" {
		s.Name = req.Name
	}
	return s, nil
}

// Mutate is the /mutate webhook.
func (a *Admitter) Mutate(_ context.Context, req *Request) *admissionv1.AdmissionResponse {
	start := time.Now()
	resp, action := a.mutate(req)
	a.metrics.admissions.WithLabelValues(webhookMutate, action).Inc()
	a.metrics.admissionTime.WithLabelValues(webhookMutate).Observe(time.Since(start).Seconds())
	return resp
}

func (a *Admitter) mutate(req *Request) (*admissionv1.AdmissionResponse, string) {
	s, err := decode(req)
	if err != nil {
		return webhook.Deny(http.StatusBadRequest, err.Error()), actionError
	}
	if s == nil {
		return webhook.Allow(), actionAllowed
	}
	_, signed := s.Annotations[secretsig.Annotation]
	strip := func(warning string) (*admissionv1.AdmissionResponse, string) {
		if !signed {
			return webhook.Allow(), actionAllowed
		}
		r, err := webhook.Patch([]webhook.PatchOp{{Op: "remove", Path: signaturePath}}, warning)
		if err != nil {
			return webhook.Deny(http.StatusInternalServerError, err.Error()), actionError
		}
		return r, actionStripped
	}
	if !a.Trust.Trusted(req.UserInfo) {
		if signed {
			a.Log.Info("signature stripped from an untrusted write", "secret", s.Namespace+"/"+s.Name, "user", req.UserInfo.Username, "operation", string(req.Operation))
		}
		return strip("mr-signer: " + secretsig.Annotation + " removed: only trusted identities' writes are signed")
	}
	if !a.inScope(s) && !signed {
		return webhook.Allow(), actionAllowed
	}
	if s.Name == "" {
		return strip("mr-signer: a Secret created with generateName cannot be signed (its name is not known yet); give it a name")
	}
	signer := a.Keys.Signer()
	if signer == nil {
		return webhook.Deny(http.StatusInternalServerError, "mr-signer has no signing key; retry later"), actionError
	}
	sig := signer.Sign(secretsig.FromSecret(s))
	var op webhook.PatchOp
	if s.Annotations == nil {
		op = webhook.PatchOp{Op: "add", Path: "/metadata/annotations", Value: map[string]string{secretsig.Annotation: sig}}
	} else {
		op = webhook.PatchOp{Op: "add", Path: signaturePath, Value: sig} // add replaces an existing member
	}
	r, err := webhook.Patch([]webhook.PatchOp{op})
	if err != nil {
		return webhook.Deny(http.StatusInternalServerError, err.Error()), actionError
	}
	return r, actionSigned
}

// Validate is the /validate webhook: with DenyUntrusted it refuses writes of
// in-scope Secrets by untrusted identities, else it allows everything.
func (a *Admitter) Validate(_ context.Context, req *Request) *admissionv1.AdmissionResponse {
	start := time.Now()
	resp, action := a.validate(req)
	a.metrics.admissions.WithLabelValues(webhookValidate, action).Inc()
	a.metrics.admissionTime.WithLabelValues(webhookValidate).Observe(time.Since(start).Seconds())
	return resp
}

func (a *Admitter) validate(req *Request) (*admissionv1.AdmissionResponse, string) {
	if !a.DenyUntrusted || req.Kind.Group != "" || req.Kind.Kind != "Secret" || req.SubResource != "" {
		return webhook.Allow(), actionAllowed
	}
	if a.Trust.Trusted(req.UserInfo) {
		return webhook.Allow(), actionAllowed
	}
	// The request's namespace and name are the API server's.
	named := func(s *corev1.Secret) *corev1.Secret {
		if s == nil {
			return nil
		}
		c := *s
		c.Namespace = req.Namespace
		if req.Name != "" {
			c.Name = req.Name
		}
		return &c
	}
	obj, old := named(req.Object), named(req.OldObject)
	referenced := a.Refs != nil && a.Refs.Referenced(req.Namespace, req.Name)
	var deny bool
	switch req.Operation {
	case admissionv1.Delete:
		// Only a Secret a ManagedResource names: the resource manager's garbage
		// collector deletes unreferenced ones, and deleting a referenced one is the
		// first half of a delete-and-recreate.
		deny = referenced
	case admissionv1.Create, admissionv1.Update:
		if obj == nil {
			return webhook.Deny(http.StatusBadRequest, "request without object"), actionError
		}
		signedBefore := false
		if old != nil {
			_, signedBefore = old.Annotations[secretsig.Annotation]
		}
		// In scope by its new or old labels (removing the label does not help),
		// signed before, or named by a ManagedResource.
		deny = referenced || a.inScope(obj) || (old != nil && (a.inScope(old) || signedBefore))
	default:
		return webhook.Allow(), actionAllowed
	}
	if !deny {
		return webhook.Allow(), actionAllowed
	}
	a.Log.Info("untrusted write denied", "secret", req.Namespace+"/"+req.Name, "user", req.UserInfo.Username, "operation", string(req.Operation))
	return webhook.Deny(http.StatusForbidden, fmt.Sprintf("mr-signer: %s may not %s Secret %s/%s: it belongs to a ManagedResource and only trusted identities may write it",
		req.UserInfo.Username, strings.ToLower(string(req.Operation)), req.Namespace, req.Name)), actionDenied
}

// mrObject is the part of a ManagedResource the webhook reads.
type mrObject struct {
	Spec map[string]any `json:"spec"`
}

// MRRequest is an admission request for a ManagedResource.
type MRRequest = webhook.Request[mrObject]

// ValidateManagedResource is the /validate-managedresource webhook: with
// DenyUntrusted, an untrusted identity may not create a ManagedResource or change
// its spec (secretRefs pointing at a Secret it controls, injectLabels, class, ...).
// Metadata, finalizers and status stay writable (the resource manager's own
// writes).
func (a *Admitter) ValidateManagedResource(_ context.Context, req *MRRequest) *admissionv1.AdmissionResponse {
	start := time.Now()
	resp, action := a.validateMR(req)
	a.metrics.admissions.WithLabelValues(webhookValidateManagedResource, action).Inc()
	a.metrics.admissionTime.WithLabelValues(webhookValidateManagedResource).Observe(time.Since(start).Seconds())
	return resp
}

func (a *Admitter) validateMR(req *MRRequest) (*admissionv1.AdmissionResponse, string) {
	if !a.DenyUntrusted || req.Kind.Group != "resources.gardener.cloud" || req.Kind.Kind != "ManagedResource" || req.SubResource != "" ||
		a.Trust.Trusted(req.UserInfo) {
		return webhook.Allow(), actionAllowed
	}
	switch req.Operation {
	case admissionv1.Create:
	case admissionv1.Update:
		if req.Object == nil || req.OldObject == nil {
			return webhook.Deny(http.StatusBadRequest, "request without object or oldObject"), actionError
		}
		if reflect.DeepEqual(req.Object.Spec, req.OldObject.Spec) {
			return webhook.Allow(), actionAllowed
		}
	default:
		return webhook.Allow(), actionAllowed
	}
	a.Log.Info("untrusted ManagedResource spec write denied", "mrObject", req.Namespace+"/"+req.Name, "user", req.UserInfo.Username, "operation", string(req.Operation))
	return webhook.Deny(http.StatusForbidden, fmt.Sprintf("mr-signer: %s may not %s the spec of ManagedResource %s/%s: only trusted identities may decide what the resource manager applies",
		req.UserInfo.Username, strings.ToLower(string(req.Operation)), req.Namespace, req.Name)), actionDenied
}

// Handler returns the webhook server's handler: /mutate and /validate.
func (a *Admitter) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/mutate", webhook.ServeTyped(a.Mutate))
	mux.Handle("/validate", webhook.ServeTyped(a.Validate))
	mux.Handle("/validate-managedresource", webhook.ServeTyped(a.ValidateManagedResource))
	return mux
}
