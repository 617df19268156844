package secretsig

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParsePrivateKeyPEM reads one Ed25519 private key in a PKCS#8 "PRIVATE KEY" PEM
// block, as `openssl genpkey -algorithm ed25519` writes it.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	var key ed25519.PrivateKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PRIVATE KEY" {
			continue
		}
		if key != nil {
			return nil, errors.New("more than one PRIVATE KEY block")
		}
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key is %T, not Ed25519", k)
		}
		key = ek
	}
	if key == nil {
		return nil, errors.New("no PRIVATE KEY PEM block")
	}
	return key, nil
}

// ParsePublicKeysPEM reads every "PUBLIC KEY" (PKIX) PEM block of data, as
// `openssl pkey -pubout` writes them; other block types are ignored, a public key
// that is not Ed25519 is an error.
func ParsePublicKeysPEM(data []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public key: %w", err)
		}
		ek, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key is %T, not Ed25519", k)
		}
		keys = append(keys, ek)
	}
	return keys, nil
}

// MarshalPrivateKeyPEM writes key as a PKCS#8 PEM block.
func MarshalPrivateKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKeyPEM writes key as a PKIX PEM block.
func MarshalPublicKeyPEM(key ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
