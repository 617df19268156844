package secretsig

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sample() Secret {
	return Secret{Namespace: "shoot--p--s", Name: "managedresource-x-1234abcd", Type: "Opaque",
		Data: map[string][]byte{"data.yaml.br": []byte("payload"), "extra": []byte("more")}}
}

func clone(s Secret) Secret {
	c := s
	c.Data = make(map[string][]byte, len(s.Data))
	for k, v := range s.Data {
		c.Data[k] = bytes.Clone(v)
	}
	return c
}

// TestTamperingIsCaught: every change a writer without the key can make to a
// signed Secret fails verification with the right reason.
func TestTamperingIsCaught(t *testing.T) {
	signer := NewSigner(newKey(t))
	keys := NewKeySet(signer.Public())
	orig := sample()
	ann := signer.Sign(orig)
	if id, err := keys.Verify(orig, ann); err != nil || id != signer.KeyID() {
		t.Fatalf("valid signature rejected: %v (id %s)", err, id)
	}
	other := newKey(t)
	cases := []struct {
		name   string
		mutate func(*Secret, *string)
		reason string
	}{
		{"changed value", func(s *Secret, _ *string) { s.Data["data.yaml.br"] = []byte("evil") }, "SignatureInvalid"},
		{"value emptied", func(s *Secret, _ *string) { s.Data["extra"] = nil }, "SignatureInvalid"},
		{"added key", func(s *Secret, _ *string) { s.Data["zz-evil.yaml"] = []byte("kind: ClusterRoleBinding") }, "SignatureInvalid"},
		{"added empty key", func(s *Secret, _ *string) { s.Data["a"] = nil }, "SignatureInvalid"},
		{"removed key", func(s *Secret, _ *string) { delete(s.Data, "extra") }, "SignatureInvalid"},
		{"renamed key", func(s *Secret, _ *string) { s.Data["extra2"] = s.Data["extra"]; delete(s.Data, "extra") }, "SignatureInvalid"},
		{"boundary moved between key and value", func(s *Secret, _ *string) { delete(s.Data, "extra"); s.Data["extr"] = []byte("amore") }, "SignatureInvalid"},
		{"copied to another name", func(s *Secret, _ *string) { s.Name = "managedresource-y-1234abcd" }, "SignatureInvalid"},
		{"copied to another namespace", func(s *Secret, _ *string) { s.Namespace = "shoot--p--other" }, "SignatureInvalid"},
		{"type changed", func(s *Secret, _ *string) { s.Type = "kubernetes.io/tls" }, "SignatureInvalid"},
		{"signature removed", func(_ *Secret, a *string) { *a = "" }, "SignatureMissing"},
		{"signature garbled", func(_ *Secret, a *string) { *a = strings.Replace(*a, "v1.", "v2.", 1) }, "SignatureMalformed"},
		{"signed by an unknown key", func(s *Secret, a *string) { *a = NewSigner(other).Sign(*s) }, "UnknownKey"},
		{"key id swapped to a known key", func(s *Secret, a *string) {
			sig, _ := ParseAnnotation(NewSigner(other).Sign(*s))
			sig.KeyID = signer.KeyID()
			*a = sig.String()
		}, "SignatureInvalid"},
		{"signature from another secret", func(s *Secret, a *string) {
			o := clone(*s)
			o.Data["extra"] = []byte("x")
			*a = signer.Sign(o)
		}, "SignatureInvalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, a := clone(orig), ann
			tc.mutate(&s, &a)
			_, err := keys.Verify(s, a)
			if Reason(err) != tc.reason {
				t.Fatalf("Verify = %v (reason %s), want %s", err, Reason(err), tc.reason)
			}
		})
	}
}

// TestKeyRotation: a new key verifies once added, the old one keeps verifying
// until removed, then its signatures fail as UnknownKey.
func TestKeyRotation(t *testing.T) {
	oldS, newS := NewSigner(newKey(t)), NewSigner(newKey(t))
	s := sample()
	oldSig, newSig := oldS.Sign(s), newS.Sign(s)
	both := NewKeySet(oldS.Public(), newS.Public())
	for _, a := range []string{oldSig, newSig} {
		if _, err := both.Verify(s, a); err != nil {
			t.Fatalf("during rotation: %v", err)
		}
	}
	onlyNew := NewKeySet(newS.Public())
	if _, err := onlyNew.Verify(s, oldSig); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old key after removal: %v, want ErrUnknownKey", err)
	}
	if _, err := onlyNew.Verify(s, newSig); err != nil {
		t.Fatal(err)
	}
	if got := both.IDs(); len(got) != 2 || both.Len() != 2 {
		t.Fatalf("IDs = %v", got)
	}
	var nilSet *KeySet
	if _, err := nilSet.Verify(s, newSig); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("empty key set: %v", err)
	}
}

func TestEncodeLayout(t *testing.T) {
	got := Encode("0123456789abcdef", Secret{Namespace: "n", Name: "s", Type: "Opaque", Data: map[string][]byte{"b": []byte("2"), "a": []byte("1")}})
	var want []byte
	field := func(s string) {
		want = append(want, 0, 0, 0, 0, 0, 0, 0, byte(len(s)))
		want = append(want, s...)
	}
	for _, f := range []string{Domain, Version, "0123456789abcdef", "n", "s", "Opaque"} {
		field(f)
	}
	want = append(want, 0, 0, 0, 0, 0, 0, 0, 2)
	for _, f := range []string{"a", "1", "b", "2"} {
		field(f)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoding\n got %q\nwant %q", got, want)
	}
}

func TestParseAnnotation(t *testing.T) {
	s := NewSigner(newKey(t))
	good := s.Sign(sample())
	if sig, err := ParseAnnotation(good); err != nil || sig.KeyID != s.KeyID() || sig.String() != good {
		t.Fatalf("round trip: %v", err)
	}
	for _, bad := range []string{"", "v1", "v1.", "v1..", "v2." + good[3:], good + "=", good + "A", good[:len(good)-1],
		"v1." + strings.ToUpper(s.KeyID()) + good[3+KeyIDLen:], "v1.0123456789abcdeg" + good[3+KeyIDLen:], good + ".x", good[:40] + "\n" + good[40:], good[:40] + "\r" + good[40:]} {
		if _, err := ParseAnnotation(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseAnnotation(%q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestKeysPEM(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	priv, err := MarshalPrivateKeyPEM(k1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParsePrivateKeyPEM(priv)
	if err != nil || !got.Equal(k1) {
		t.Fatalf("private key round trip: %v", err)
	}
	p1, _ := MarshalPublicKeyPEM(k1.Public().(ed25519.PublicKey))
	p2, _ := MarshalPublicKeyPEM(k2.Public().(ed25519.PublicKey))
	pubs, err := ParsePublicKeysPEM(append(append(p1, "# comment\n"...), p2...))
	if err != nil || len(pubs) != 2 || !pubs[1].Equal(k2.Public()) {
		t.Fatalf("public keys: %v %d", err, len(pubs))
	}
	if _, err := ParsePrivateKeyPEM(p1); err == nil {
		t.Fatal("a public key parsed as private")
	}
	if _, err := ParsePrivateKeyPEM(append(priv, priv...)); err == nil {
		t.Fatal("two private keys accepted")
	}
}

func TestFromSecretMergesStringData(t *testing.T) {
	s := FromSecret(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "s"},
		Data: map[string][]byte{"a": []byte("1"), "b": []byte("2")}, StringData: map[string]string{"b": "3", "c": "4"}})
	want := Secret{Namespace: "n", Name: "s", Type: "Opaque", Data: map[string][]byte{"a": []byte("1"), "b": []byte("3"), "c": []byte("4")}}
	if !s.Equal(want) {
		t.Fatalf("FromSecret = %+v", s)
	}
}

// TestSignatureIsEd25519ph: the annotation verifies with any RFC 8032 Ed25519ph
// implementation given the SHA-512 of the encoding.
func TestSignatureIsEd25519ph(t *testing.T) {
	k := newKey(t)
	s := NewSigner(k)
	sig, _ := ParseAnnotation(s.Sign(sample()))
	sum := sha512.Sum512(Encode(s.KeyID(), sample()))
	if err := ed25519.VerifyWithOptions(s.Public(), sum[:], sig.Sig, &ed25519.Options{Hash: crypto.SHA512}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(Digest(s.KeyID(), sample()), sum[:]) {
		t.Fatal("Digest differs from SHA-512 of Encode")
	}
}
