package otlpexport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
)

// TLSConfig builds a client TLS configuration from PEM files, as the CA, client
// certificate and key flags give them. caFile empty means the system roots; certFile
// and keyFile are both set (mutual TLS) or both empty. The client certificate is
// re-read at each handshake, so a rotated certificate (cert-manager, projected
// secrets) is used for new connections; if re-reading fails the last good one is used.
func TLSConfig(caFile, certFile, keyFile, serverName string, insecureSkipVerify bool) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: insecureSkipVerify, //nolint:gosec // operator's explicit choice
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("reading CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("client certificate and key files must be given together")
	}
	if certFile != "" {
		kp := &keyPair{certFile: certFile, keyFile: keyFile}
		if _, err := kp.load(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = kp.get
	}
	return cfg, nil
}

// keyPair re-reads a client certificate for every handshake.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	last              *tls.Certificate
}

func (kp *keyPair) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading client certificate: %w", err)
	}
	kp.mu.Lock()
	kp.last = &cert
	kp.mu.Unlock()
	return &cert, nil
}

func (kp *keyPair) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	cert, err := kp.load()
	if err == nil {
		return cert, nil
	}
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if kp.last != nil {
		return kp.last, nil
	}
	return nil, err
}
