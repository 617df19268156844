package mrsigner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestServingCertificateReload: a renewed serving certificate (new files at the
// mounted paths) is served without a restart.
func TestServingCertificateReload(t *testing.T) {
	env := testenv.Get(t)
	installMRCRD(t, env)
	ns := env.Namespace(t)
	if _, err := env.Client.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: DefaultSigningKeySecret},
		Data: map[string][]byte{"key.pem": privPEM(t, newEd25519(t))}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	first := writeServingCert(t, dir)
	d := startDaemon(t, env, "--keys.namespace="+ns, "--verifier.enabled=false",
		"--webhook.tls-cert-file="+first.CertFile, "--webhook.tls-key-file="+first.KeyFile)
	handshake := func(ca []byte) error {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		c, err := tls.Dial("tcp", d.Webhook, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := handshake(first.CA); err != nil {
		t.Fatal(err)
	}
	second := writeServingCert(t, dir) // a new CA and certificate at the same paths
	poll(t, 30*time.Second, "the renewed certificate", func() bool { return handshake(second.CA) == nil })
	if handshake(first.CA) == nil {
		t.Fatal("the old certificate is still served")
	}
}
