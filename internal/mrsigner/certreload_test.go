package mrsigner

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
	"github.com/trellis-garden/trellis/internal/webhook"
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
	expiry := func(f tlsFiles) int64 {
		b, err := os.ReadFile(f.CertFile)
		if err != nil {
			t.Fatal(err)
		}
		certs, err := webhook.CertificatesPEM(b)
		if err != nil || len(certs) != 1 {
			t.Fatalf("%s: %v", f.CertFile, err)
		}
		return certs[0].NotAfter.Unix()
	}
	if got, want := certExpiry(d.metrics(t), "serving"), expiry(first); got != want {
		t.Fatalf("serving certificate expiry %d, want %d", got, want)
	}
	second := writeServingCert(t, dir, 48*time.Hour) // a new CA and certificate at the same paths
	testkit.EventuallyWithin(t, 30*time.Second, "the renewed certificate", func() bool { return handshake(second.CA) == nil })
	if handshake(first.CA) == nil {
		t.Fatal("the old certificate is still served")
	}
	if got, want := certExpiry(d.metrics(t), "serving"), expiry(second); got != want {
		t.Fatalf("serving certificate expiry %d after the reload, want %d", got, want)
	}
}
