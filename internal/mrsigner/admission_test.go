package mrsigner

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/trellis-garden/trellis/internal/secretsig"
	"github.com/trellis-garden/trellis/internal/webhook"
)

type fakeRefs map[string]bool

func (f fakeRefs) Referenced(ns, name string) bool { return f[ns+"/"+name] }

func testAdmitter(t testing.TB, deny bool) (*Admitter, *secretsig.KeySet) {
	t.Helper()
	m := newMetrics("test")
	ks := NewKeyStore(nil, "keys", "sign", "", slog.New(slog.DiscardHandler), m)
	key := newEd25519(t)
	ks.setSigningSecret(&corev1.Secret{Data: map[string][]byte{"key.pem": privPEM(t, key)}})
	sel, _ := labels.Parse(GardenerReferenceLabel)
	a := &Admitter{Keys: ks, Trust: NewTrust([]string{"alice"}, []string{"trusted"}, [][2]string{{"garden", "gardenlet"}}),
		Selectors: []labels.Selector{sel}, Refs: fakeRefs{"ns/referenced": true}, DenyUntrusted: deny, Log: slog.New(slog.DiscardHandler), metrics: m}
	return a, ks.Keys()
}

func rawRequest(t testing.TB, op admissionv1.Operation, user authenticationv1.UserInfo, s *corev1.Secret) *admissionv1.AdmissionRequest {
	t.Helper()
	raw, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return &admissionv1.AdmissionRequest{UID: "1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Secret"}, Operation: op,
		Namespace: s.Namespace, Name: s.Name, UserInfo: user, Object: runtime.RawExtension{Raw: raw}}
}

// request round-trips through JSON as the server decodes it.
func request(t testing.TB, op admissionv1.Operation, user authenticationv1.UserInfo, s *corev1.Secret) *Request {
	t.Helper()
	body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: rawRequest(t, op, user, s)})
	_, req, err := webhook.DecodeTypedReview[corev1.Secret](body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// applyPatch applies the response's JSON Patch (only the ops the Admitter emits)
// to s.
func applyPatch(t testing.TB, s *corev1.Secret, resp *admissionv1.AdmissionResponse) *corev1.Secret {
	t.Helper()
	out := s.DeepCopy()
	if resp.Patch == nil {
		return out
	}
	var ops []struct {
		Op, Path string
		Value    json.RawMessage
	}
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		switch {
		case op.Op == "add" && op.Path == "/metadata/annotations":
			_ = json.Unmarshal(op.Value, &out.Annotations)
		case op.Op == "add" && op.Path == signaturePath:
			var v string
			_ = json.Unmarshal(op.Value, &v)
			out.Annotations[secretsig.Annotation] = v
		case op.Op == "remove" && op.Path == signaturePath:
			delete(out.Annotations, secretsig.Annotation)
		default:
			t.Fatalf("unexpected patch op %+v", op)
		}
	}
	return out
}

func TestMutate(t *testing.T) {
	a, keys := testAdmitter(t, false)
	labelled := func(name string, ann map[string]string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Annotations: ann,
			Labels: map[string]string{"resources.gardener.cloud/garbage-collectable-reference": "true"}}, Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"data.yaml": []byte("x")}}
	}
	alice := authenticationv1.UserInfo{Username: "alice"}
	group := authenticationv1.UserInfo{Username: "bob", Groups: []string{"system:authenticated", "trusted"}}
	sa := authenticationv1.UserInfo{Username: "system:serviceaccount:garden:gardenlet"}
	mallory := authenticationv1.UserInfo{Username: "mallory", Groups: []string{"system:masters"}}
	cases := []struct {
		name       string
		user       authenticationv1.UserInfo
		op         admissionv1.Operation
		secret     *corev1.Secret
		wantSigned bool
		wantAnn    bool // annotation present after the patch
	}{
		{"trusted user create", alice, admissionv1.Create, labelled("a", nil), true, true},
		{"trusted group update with annotations", group, admissionv1.Update, labelled("a", map[string]string{"x": "y"}), true, true},
		{"trusted service account", sa, admissionv1.Create, labelled("a", nil), true, true},
		{"trusted, referenced but unlabelled", alice, admissionv1.Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "referenced"}}, true, true},
		{"trusted, out of scope", alice, admissionv1.Create, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other"}}, false, false},
		{"trusted re-signs a stale signature", alice, admissionv1.Update, labelled("a", map[string]string{secretsig.Annotation: "v1.stale"}), true, true},
		{"untrusted admin, signature stripped", mallory, admissionv1.Update, labelled("a", map[string]string{secretsig.Annotation: "v1.x.y"}), false, false},
		{"untrusted without signature", mallory, admissionv1.Create, labelled("a", nil), false, false},
		{"generateName cannot be signed", alice, admissionv1.Create, labelled("", map[string]string{secretsig.Annotation: "v1.x"}), false, false},
		{"delete ignored", mallory, admissionv1.Delete, labelled("a", map[string]string{secretsig.Annotation: "v1.x.y"}), false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := a.Mutate(context.Background(), request(t, tc.op, tc.user, tc.secret))
			if !resp.Allowed {
				t.Fatalf("denied: %v", resp.Result)
			}
			got := applyPatch(t, tc.secret, resp)
			_, has := got.Annotations[secretsig.Annotation]
			if has != tc.wantAnn {
				t.Fatalf("annotation present %v, want %v (patch %s)", has, tc.wantAnn, resp.Patch)
			}
			_, err := keys.Verify(secretsig.FromSecret(got), secretsig.AnnotationOf(got))
			if (err == nil) != tc.wantSigned {
				t.Fatalf("verify after patch: %v, want signed %v", err, tc.wantSigned)
			}
			if got.Annotations["x"] != tc.secret.Annotations["x"] {
				t.Fatal("other annotations changed")
			}
		})
	}

	// No signing key: a trusted write is refused rather than stored unsigned.
	a.Keys.setSigningSecret(nil)
	if resp := a.Mutate(context.Background(), request(t, admissionv1.Create, alice, labelled("a", nil))); resp.Allowed || resp.Result.Code != 500 {
		t.Fatalf("without a key: %+v", resp)
	}
}

func TestValidate(t *testing.T) {
	a, _ := testAdmitter(t, true)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", Labels: map[string]string{"resources.gardener.cloud/garbage-collectable-reference": "true"}}}
	if resp := a.Validate(context.Background(), request(t, admissionv1.Update, authenticationv1.UserInfo{Username: "mallory"}, s)); resp.Allowed || resp.Result.Code != 403 {
		t.Fatalf("untrusted write allowed: %+v", resp)
	}
	if resp := a.Validate(context.Background(), request(t, admissionv1.Update, authenticationv1.UserInfo{Username: "alice"}, s)); !resp.Allowed {
		t.Fatal("trusted write denied")
	}
	// Dropping the label as untrusted is still a write to an in-scope Secret.
	req := request(t, admissionv1.Update, authenticationv1.UserInfo{Username: "mallory"}, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}})
	req.OldObject = s.DeepCopy()
	if resp := a.Validate(context.Background(), req); resp.Allowed {
		t.Fatal("unlabelling allowed")
	}
	out := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b"}}
	if resp := a.Validate(context.Background(), request(t, admissionv1.Update, authenticationv1.UserInfo{Username: "mallory"}, out)); !resp.Allowed {
		t.Fatal("out-of-scope write denied")
	}
	// Deletes: denied only while a ManagedResource names the Secret.
	del := request(t, admissionv1.Delete, authenticationv1.UserInfo{Username: "mallory"}, s)
	del.Object, del.OldObject = nil, s.DeepCopy()
	if resp := a.Validate(context.Background(), del); !resp.Allowed {
		t.Fatal("delete of an unreferenced Secret denied (the resource manager's garbage collector does that)")
	}
	a.Refs = refsFunc(func(ns, name string) bool { return ns == "ns" && name == "a" })
	if resp := a.Validate(context.Background(), del); resp.Allowed {
		t.Fatal("delete of a referenced Secret allowed")
	}
	// A referenced Secret without labels is in scope too.
	if resp := a.Validate(context.Background(), request(t, admissionv1.Create, authenticationv1.UserInfo{Username: "mallory"}, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a"}})); resp.Allowed {
		t.Fatal("create of a referenced, unlabelled Secret allowed")
	}
	// ManagedResources: untrusted creates and spec changes are denied, metadata changes allowed.
	mrReq := func(op admissionv1.Operation, user string, spec, oldSpec map[string]any) *MRRequest {
		r := &MRRequest{}
		r.UID, r.Operation, r.UserInfo = "u", op, authenticationv1.UserInfo{Username: user}
		r.Kind = metav1.GroupVersionKind{Group: "resources.gardener.cloud", Version: "v1alpha1", Kind: "ManagedResource"}
		r.Object = &mrObject{Spec: spec}
		if oldSpec != nil {
			r.OldObject = &mrObject{Spec: oldSpec}
		}
		return r
	}
	refs := func(names ...string) map[string]any {
		var l []any
		for _, n := range names {
			l = append(l, map[string]any{"name": n})
		}
		return map[string]any{"class": "seed", "secretRefs": l}
	}
	for _, tc := range []struct {
		name    string
		req     *MRRequest
		allowed bool
	}{
		{"untrusted create", mrReq(admissionv1.Create, "mallory", refs("x"), nil), false},
		{"untrusted secretRefs change", mrReq(admissionv1.Update, "mallory", refs("evil"), refs("a")), false},
		{"untrusted secretRefs extended", mrReq(admissionv1.Update, "mallory", refs("a", "evil"), refs("a")), false},
		{"untrusted metadata-only update", mrReq(admissionv1.Update, "mallory", refs("a"), refs("a")), true},
		{"trusted secretRefs change", mrReq(admissionv1.Update, "alice", refs("b"), refs("a")), true},
		{"trusted create", mrReq(admissionv1.Create, "alice", refs("b"), nil), true},
	} {
		if resp := a.ValidateManagedResource(context.Background(), tc.req); resp.Allowed != tc.allowed {
			t.Errorf("%s: allowed %v, want %v", tc.name, resp.Allowed, tc.allowed)
		}
	}
	a.DenyUntrusted = false
	if resp := a.ValidateManagedResource(context.Background(), mrReq(admissionv1.Create, "mallory", refs("x"), nil)); !resp.Allowed {
		t.Fatal("ManagedResource create denied with DenyUntrusted off")
	}
	if resp := a.Validate(context.Background(), request(t, admissionv1.Update, authenticationv1.UserInfo{Username: "mallory"}, s)); !resp.Allowed {
		t.Fatal("denied with DenyUntrusted off")
	}
}

// FuzzAdmissionReview posts arbitrary bodies to /mutate and /validate: the server
// never panics, answers 200 only with a response for the request's UID, and a
// patch it returns is a JSON array.
func FuzzAdmissionReview(f *testing.F) {
	a, _ := testAdmitter(f, true)
	h := a.Handler()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "a", Labels: map[string]string{"resources.gardener.cloud/garbage-collectable-reference": "true"}},
		Data: map[string][]byte{"k": []byte("v")}}
	for _, u := range []string{"alice", "mallory"} {
		body, _ := json.Marshal(admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: rawRequest(f, admissionv1.Create, authenticationv1.UserInfo{Username: u}, s)})
		f.Add(body)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Secret"},"operation":"CREATE","object":{"data":{"a":"!!"}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"group":"resources.gardener.cloud","version":"v1alpha1","kind":"ManagedResource"},"operation":"UPDATE","userInfo":{"username":"mallory"},"object":{"spec":{"secretRefs":[{"name":"a"}]}},"oldObject":{"spec":null}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","kind":{"version":"v1","kind":"Secret"},"operation":"DELETE","userInfo":{"username":"mallory"},"oldObject":{"metadata":{"labels":{"trellis.dev/managed-resource-secret":"true"}}}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/mutate", "/validate", "/validate-managedresource"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
			if rec.Code != http.StatusOK {
				continue
			}
			var out admissionv1.AdmissionReview
			b, _ := io.ReadAll(rec.Body)
			if err := json.Unmarshal(b, &out); err != nil || out.Response == nil || out.Response.UID == "" {
				t.Fatalf("%s: bad response %s", path, b)
			}
			if out.Response.Patch != nil {
				var ops []map[string]any
				if err := json.Unmarshal(out.Response.Patch, &ops); err != nil || len(ops) == 0 {
					t.Fatalf("%s: bad patch %s", path, out.Response.Patch)
				}
			}
		}
	})
}

type refsFunc func(ns, name string) bool

func (f refsFunc) Referenced(ns, name string) bool { return f(ns, name) }
