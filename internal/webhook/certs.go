package webhook

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"sync/atomic"
	"time"
)

// CertStore serves a certificate and key given as PEM (e.g. from a Secret watched
// through the API): Set swaps them atomically; before the first successful Set,
// handshakes fail. A failed Set keeps the previous pair.
type CertStore struct {
	cert atomic.Pointer[tls.Certificate]
}

// Set parses and installs a certificate chain and its key.
func (s *CertStore) Set(certPEM, keyPEM []byte) error {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	s.cert.Store(&c)
	return nil
}

// Ready reports whether a certificate is installed.
func (s *CertStore) Ready() error {
	if s.cert.Load() == nil {
		return errors.New("no serving certificate yet")
	}
	return nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (s *CertStore) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("no serving certificate yet")
	}
	return c, nil
}

// TLSConfig returns a server TLS configuration (TLS 1.2 or newer) serving the store's certificate.
func (s *CertStore) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}

// KeyPair is a certificate and its private key, both PEM.
type KeyPair struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
	key             crypto.Signer
}

// ParseKeyPair parses a PEM certificate (the first CERTIFICATE block) and its key.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	signer, ok := c.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key cannot sign")
	}
	return &KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: c.Leaf, key: signer}, nil
}

// NewCA creates a self-signed ECDSA P-256 CA valid from now-1h for validity.
func NewCA(commonName string, now time.Time, validity time.Duration) (*KeyPair, error) {
	return issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}, nil, now, validity)
}

// IssueServing issues a serving certificate for names (DNS names or IP
// addresses) signed by ca.
func IssueServing(ca *KeyPair, names []string, now time.Time, validity time.Duration) (*KeyPair, error) {
	if len(names) == 0 {
		return nil, errors.New("no DNS names")
	}
	var dns []string
	var ips []net.IP
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: names[0]},
		DNSNames:    dns,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, now, validity)
}

func issue(tmpl *x509.Certificate, ca *KeyPair, now time.Time, validity time.Duration) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-time.Hour) // clock skew between nodes
	tmpl.NotAfter = now.Add(validity)
	parent, signer := tmpl, crypto.Signer(key)
	if ca != nil {
		parent, signer = ca.Cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Cert:    cert, key: key,
	}, nil
}

// NeedsRenewal reports why c should be replaced at now: it expires within the
// last third of its lifetime, it is not signed by ca (when given), or its DNS
// names and IP addresses differ from names (when given). Empty: keep it.
func NeedsRenewal(c *x509.Certificate, ca *x509.Certificate, names []string, now time.Time) string {
	life := c.NotAfter.Sub(c.NotBefore)
	have := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(names))
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			n = ip.String()
		}
		want = append(want, n)
	}
	switch {
	case now.After(c.NotAfter.Add(-life / 3)):
		return "expires soon"
	case now.Before(c.NotBefore):
		return "not valid yet"
	case ca != nil && c.CheckSignatureFrom(ca) != nil:
		return "not signed by the current CA"
	case names != nil && !slices.Equal(slices.Sorted(slices.Values(have)), slices.Sorted(slices.Values(want))):
		return "names changed"
	}
	return ""
}

// CertificatesPEM parses every CERTIFICATE block of b.
func CertificatesPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return out, nil
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

// Bundle encodes certificates as PEM, skipping those expired at now and duplicates.
func Bundle(now time.Time, certs ...*x509.Certificate) []byte {
	var buf bytes.Buffer
	var seen [][]byte
	for _, c := range certs {
		if c == nil || now.After(c.NotAfter) || slices.ContainsFunc(seen, func(r []byte) bool { return bytes.Equal(r, c.Raw) }) {
			continue
		}
		seen = append(seen, c.Raw)
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
