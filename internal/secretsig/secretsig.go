// Package secretsig is the signed form of a Kubernetes Secret: an unambiguous
// length-prefixed encoding of its identity and data, Ed25519 signatures over it,
// the annotation that carries a signature, and key sets for rotation. It knows
// nothing about admission, controllers or daemons.
//
// The encoding covers the namespace, name, type and every data key and value. It
// does not cover labels, annotations or other metadata: the consumer this protects
// (Gardener's resource manager) reads only data.
package secretsig

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Annotation holds a Secret's signature: "v1.<key id>.<base64url signature>".
const Annotation = "trellis.dev/signature"

// Version is the only format version: the encoding below, Ed25519.
const Version = "v1"

// Domain separates this signed form from any other use of the same key.
const Domain = "trellis.dev/secret-signature"

// KeyIDLen is the length of a key id: 16 lowercase hex characters (8 bytes).
const KeyIDLen = 16

// Secret is what a signature covers. Data holds every data key; a Secret's
// stringData must be merged into Data first (the API server does so before
// admission and storage).
type Secret struct {
	Namespace string
	Name      string
	Type      string
	Data      map[string][]byte
}

// Equal reports whether two Secrets are the same signed content (nil and empty
// values are equal, as the API server does not tell them apart).
func (s Secret) Equal(o Secret) bool {
	if s.Namespace != o.Namespace || s.Name != o.Name || s.Type != o.Type || len(s.Data) != len(o.Data) {
		return false
	}
	for k, v := range s.Data {
		w, ok := o.Data[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// Encode returns the bytes that are signed. Every field is an 8-byte big-endian
// length followed by its bytes; the data count is a bare 8-byte number:
//
//	field(Domain) field(Version) field(keyID) field(namespace) field(name) field(type)
//	u64(len(data)) { field(key) field(value) } sorted by key (bytewise)
//
// so no two different (keyID, Secret) pairs share an encoding. The signature is
// Ed25519ph (RFC 8032: Ed25519 over the SHA-512 of this encoding), which hashes
// the data once, as a stream, instead of twice.
func Encode(keyID string, s Secret) []byte {
	size := 6*8 + len(Domain) + len(Version) + len(keyID) + len(s.Namespace) + len(s.Name) + len(s.Type) + 8
	for k, v := range s.Data {
		size += 16 + len(k) + len(v)
	}
	b := bytes.NewBuffer(make([]byte, 0, size))
	writeEncoding(b, keyID, s)
	return b.Bytes()
}

// Digest is the SHA-512 of Encode(keyID, s), computed without building it.
func Digest(keyID string, s Secret) []byte {
	h := sha512.New()
	writeEncoding(h, keyID, s)
	return h.Sum(nil)
}

func writeEncoding(w io.Writer, keyID string, s Secret) {
	keys := make([]string, 0, len(s.Data))
	for k := range s.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var n [8]byte
	length := func(l int) {
		binary.BigEndian.PutUint64(n[:], uint64(l))
		_, _ = w.Write(n[:])
	}
	for _, f := range []string{Domain, Version, keyID, s.Namespace, s.Name, s.Type} {
		length(len(f))
		_, _ = io.WriteString(w, f)
	}
	length(len(keys))
	for _, k := range keys {
		length(len(k))
		_, _ = io.WriteString(w, k)
		length(len(s.Data[k]))
		_, _ = w.Write(s.Data[k])
	}
}

// phOptions select Ed25519ph.
var phOptions = &ed25519.Options{Hash: crypto.SHA512}

// ErrEncoding is returned by Decode for bytes Encode cannot have produced.
var ErrEncoding = errors.New("not a canonical signed-form encoding")

// Decode is Encode's inverse. It accepts only what Encode produces: the right
// domain and version, keys strictly ascending (so no duplicates), no trailing bytes.
func Decode(b []byte) (keyID string, s Secret, err error) {
	r := reader{b: b}
	var f [6]string
	for i := range f {
		if f[i], err = r.field(); err != nil {
			return "", Secret{}, err
		}
	}
	if f[0] != Domain || f[1] != Version {
		return "", Secret{}, fmt.Errorf("%w: domain or version", ErrEncoding)
	}
	n, err := r.u64()
	if err != nil {
		return "", Secret{}, err
	}
	if n > uint64(len(r.b))/16 {
		return "", Secret{}, fmt.Errorf("%w: %d keys in %d bytes", ErrEncoding, n, len(r.b))
	}
	s = Secret{Namespace: f[3], Name: f[4], Type: f[5], Data: make(map[string][]byte, n)}
	prev := ""
	for i := uint64(0); i < n; i++ {
		k, err := r.field()
		if err != nil {
			return "", Secret{}, err
		}
		if i > 0 && k <= prev {
			return "", Secret{}, fmt.Errorf("%w: keys not strictly ascending", ErrEncoding)
		}
		prev = k
		v, err := r.field()
		if err != nil {
			return "", Secret{}, err
		}
		s.Data[k] = []byte(v)
	}
	if len(r.b) != 0 {
		return "", Secret{}, fmt.Errorf("%w: %d trailing bytes", ErrEncoding, len(r.b))
	}
	return f[2], s, nil
}

type reader struct{ b []byte }

func (r *reader) u64() (uint64, error) {
	if len(r.b) < 8 {
		return 0, fmt.Errorf("%w: truncated length", ErrEncoding)
	}
	n := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return n, nil
}

func (r *reader) field() (string, error) {
	n, err := r.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)) {
		return "", fmt.Errorf("%w: field of %d bytes, %d left", ErrEncoding, n, len(r.b))
	}
	f := string(r.b[:n])
	r.b = r.b[n:]
	return f, nil
}

// KeyID names a public key: the first 8 bytes of its SHA-256, in lowercase hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:KeyIDLen/2])
}

// Signature is a parsed Annotation value.
type Signature struct {
	KeyID string
	Sig   []byte
}

// String formats the annotation value.
func (s Signature) String() string {
	return Version + "." + s.KeyID + "." + base64.RawURLEncoding.EncodeToString(s.Sig)
}

// ErrMalformed is returned by ParseAnnotation for a value that is not a v1 signature.
var ErrMalformed = errors.New("malformed signature annotation")

// ParseAnnotation parses "v1.<16 lowercase hex>.<86 base64url characters, no
// padding>" strictly: any other form, version or length is ErrMalformed.
func ParseAnnotation(v string) (Signature, error) {
	ver, rest, ok := strings.Cut(v, ".")
	if !ok || ver != Version {
		return Signature{}, fmt.Errorf("%w: version %q", ErrMalformed, ver)
	}
	id, sig, ok := strings.Cut(rest, ".")
	if !ok || !validKeyID(id) {
		return Signature{}, fmt.Errorf("%w: key id", ErrMalformed)
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(sig)
	// The decoder skips CR and LF: compare with the canonical form, so exactly one
	// string is accepted per signature.
	if err != nil || len(raw) != ed25519.SignatureSize || base64.RawURLEncoding.EncodeToString(raw) != sig {
		return Signature{}, fmt.Errorf("%w: signature is not %d bytes of base64url", ErrMalformed, ed25519.SignatureSize)
	}
	return Signature{KeyID: id, Sig: raw}, nil
}

func validKeyID(id string) bool {
	if len(id) != KeyIDLen {
		return false
	}
	for _, c := range []byte(id) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Signer signs with one private key.
type Signer struct {
	key ed25519.PrivateKey
	id  string
}

// NewSigner returns a signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer {
	return &Signer{key: key, id: KeyID(key.Public().(ed25519.PublicKey))}
}

// KeyID is the id of the signer's public key.
func (s *Signer) KeyID() string { return s.id }

// Public is the signer's public key.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns the annotation value for sec.
func (s *Signer) Sign(sec Secret) string {
	sig, err := s.key.Sign(nil, Digest(s.id, sec), phOptions)
	if err != nil {
		// Only for a wrong digest length or options, which are fixed here.
		panic("secretsig: " + err.Error())
	}
	return Signature{KeyID: s.id, Sig: sig}.String()
}

// Verification failures; Verify wraps one of them (ErrMalformed for a bad annotation).
var (
	ErrMissing    = errors.New("no signature annotation")
	ErrUnknownKey = errors.New("signed by a key that is not a verification key")
	ErrInvalid    = errors.New("signature does not match the secret")
)

// Reason is a short CamelCase name of a verification error, for metrics, Events
// and the quarantine annotation: SignatureMissing, SignatureMalformed, UnknownKey,
// SignatureInvalid, or Error for anything else.
func Reason(err error) string {
	switch {
	case err == nil:
		return "Valid"
	case errors.Is(err, ErrMissing):
		return "SignatureMissing"
	case errors.Is(err, ErrMalformed):
		return "SignatureMalformed"
	case errors.Is(err, ErrUnknownKey):
		return "UnknownKey"
	case errors.Is(err, ErrInvalid):
		return "SignatureInvalid"
	}
	return "Error"
}

// KeySet is a set of verification keys by id. Several keys verify at once during a
// rotation; a key verifies until it is removed. A KeySet is immutable.
type KeySet struct {
	keys map[string]ed25519.PublicKey
}

// NewKeySet returns a set of the given keys (duplicates collapse).
func NewKeySet(keys ...ed25519.PublicKey) *KeySet {
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		ks.keys[KeyID(k)] = k
	}
	return ks
}

// IDs returns the key ids, sorted.
func (ks *KeySet) IDs() []string {
	if ks == nil {
		return nil
	}
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Len is the number of keys.
func (ks *KeySet) Len() int {
	if ks == nil {
		return 0
	}
	return len(ks.keys)
}

// Verify checks annotation (the value of Annotation; "" when absent) against sec
// and returns the id of the key that signed it.
func (ks *KeySet) Verify(sec Secret, annotation string) (string, error) {
	if annotation == "" {
		return "", ErrMissing
	}
	sig, err := ParseAnnotation(annotation)
	if err != nil {
		return "", err
	}
	var pub ed25519.PublicKey
	if ks != nil {
		pub = ks.keys[sig.KeyID]
	}
	if pub == nil {
		return sig.KeyID, fmt.Errorf("%w: %s", ErrUnknownKey, sig.KeyID)
	}
	if ed25519.VerifyWithOptions(pub, Digest(sig.KeyID, sec), sig.Sig, phOptions) != nil {
		return sig.KeyID, fmt.Errorf("%w (key %s)", ErrInvalid, sig.KeyID)
	}
	return sig.KeyID, nil
}
