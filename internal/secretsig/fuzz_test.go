package secretsig

import (
	"bytes"
	"testing"
)

// secretFrom builds a Secret from fuzz input: data is split at NUL bytes into
// alternating keys and values.
func secretFrom(ns, name, typ string, data []byte) Secret {
	s := Secret{Namespace: ns, Name: name, Type: typ, Data: map[string][]byte{}}
	parts := bytes.Split(data, []byte{0})
	for i := 0; i+1 < len(parts); i += 2 {
		s.Data[string(parts[i])] = parts[i+1]
	}
	return s
}

// FuzzEncodingInjective: two (key id, Secret) pairs with the same encoding are
// the same pair, and Decode inverts Encode.
func FuzzEncodingInjective(f *testing.F) {
	f.Add("k", "ns", "a", "Opaque", []byte("a\x00bc"), "k", "ns", "a", "Opaque", []byte("ab\x00c"))
	f.Add("k", "n", "sa", "", []byte(""), "k", "ns", "a", "", []byte(""))
	f.Add("", "", "", "", []byte("\x00\x00\x00"), "", "", "", "", []byte("\x00"))
	f.Fuzz(func(t *testing.T, id1, ns1, n1, t1 string, d1 []byte, id2, ns2, n2, t2 string, d2 []byte) {
		a, b := secretFrom(ns1, n1, t1, d1), secretFrom(ns2, n2, t2, d2)
		ea, eb := Encode(id1, a), Encode(id2, b)
		if bytes.Equal(ea, eb) && (id1 != id2 || !a.Equal(b)) {
			t.Fatalf("different secrets share an encoding: %+v %+v", a, b)
		}
		if !bytes.Equal(ea, eb) && id1 == id2 && a.Equal(b) {
			t.Fatal("equal secrets encode differently")
		}
		for _, c := range []struct {
			id string
			s  Secret
			e  []byte
		}{{id1, a, ea}, {id2, b, eb}} {
			id, s, err := Decode(c.e)
			if err != nil || id != c.id || !s.Equal(c.s) {
				t.Fatalf("Decode(Encode(x)) = %q %+v %v, want %q %+v", id, s, err, c.id, c.s)
			}
		}
	})
}

// FuzzDecode: whatever Decode accepts is canonical (re-encodes to the same
// bytes), so one Secret has exactly one encoding.
func FuzzDecode(f *testing.F) {
	f.Add(Encode("0123456789abcdef", sample()))
	f.Add(Encode("", Secret{}))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, s, err := Decode(b)
		if err != nil {
			return
		}
		if again := Encode(id, s); !bytes.Equal(again, b) {
			t.Fatalf("accepted a non-canonical encoding:\n in %q\nout %q", b, again)
		}
	})
}

// FuzzParseAnnotation: the parser never panics, and what it accepts formats back
// to the same string.
func FuzzParseAnnotation(f *testing.F) {
	f.Add("v1.0123456789abcdef." + string(bytes.Repeat([]byte("A"), 86)))
	f.Add("v1..")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		sig, err := ParseAnnotation(v)
		if err != nil {
			return
		}
		if sig.String() != v {
			t.Fatalf("ParseAnnotation(%q) formats back as %q", v, sig.String())
		}
	})
}
