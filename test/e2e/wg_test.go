package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/trellis-garden/trellis/internal/cluster"
)

type wgKeys struct{ priv, pub [32]byte }

func newWGKeys(t *testing.T) wgKeys {
	var k wgKeys
	if _, err := rand.Read(k.priv[:]); err != nil {
		t.Fatal(err)
	}
	k.priv[0] &= 248
	k.priv[31] = (k.priv[31] & 127) | 64
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		t.Fatal(err)
	}
	copy(k.pub[:], pub)
	return k
}

// wgClient is a WireGuard client outside the cluster (this process, a userspace
// netstack) whose only peer is its server's key at the gateway's node port.
type wgClient struct {
	name     string
	serverIP string
	dev      *device.Device
	net      *netstack.Net
}

var wgClients []*wgClient

// fetch asks the client's server for its name through the tunnel.
func (c *wgClient) fetch(ctx context.Context) (string, error) {
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: c.net.DialContext, DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c.serverIP+"/", nil)
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// fetchAll: every client reaches its own server (and only its own).
func fetchAll(ctx context.Context, timeout time.Duration) error {
	for _, c := range wgClients {
		if err := poll(ctx, timeout, func() error {
			got, err := c.fetch(ctx)
			if err != nil {
				return fmt.Errorf("client of %s: %w", c.name, err)
			}
			if got != c.name {
				return fmt.Errorf("client of %s reached %q", c.name, got)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// proveWG: two WireGuard servers run as pods behind Services labelled for the
// gateway; clients outside the cluster know only the gateway's node port and
// their own server's key; the gateway (a pod, discovering the Services through
// the API) routes each handshake by its mac1 to the right server.
func proveWG(ctx context.Context, t *testing.T) {
	cs := env.cl.Client
	ns := "trellis-e2e"
	var gwPort int32
	if err := poll(ctx, 30*time.Second, func() error {
		svc, err := cs.CoreV1().Services("garden").Get(ctx, "wg-gateway", metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, p := range svc.Spec.Ports {
			if p.Protocol == corev1.ProtocolUDP && p.NodePort != 0 {
				gwPort = p.NodePort
				return nil
			}
		}
		return fmt.Errorf("wg-gateway Service has no UDP node port: %+v", svc.Spec.Ports)
	}); err != nil {
		t.Fatal(err)
	}
	endpoint := fmt.Sprintf("%s:%d", cluster.NodeIP, gwPort)
	for i, name := range []string{"shoot-a", "shoot-b"} {
		server, client := newWGKeys(t), newWGKeys(t)
		serverIP := fmt.Sprintf("10.99.%d.1", i+1)
		clientIP := fmt.Sprintf("10.99.%d.2", i+1)
		pod := standinPod("wg-"+name, "wgserver", "--key="+hex.EncodeToString(server.priv[:]), "--peer="+hex.EncodeToString(client.pub[:]),
			"--tunnel-ip="+serverIP, "--peer-ip="+clientIP, "--name="+name)
		// The servers stay: a later step proves the clients reconnect after the
		// gateway's rolling update.
		startPod(ctx, t, pod)
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "wg-" + name, Namespace: ns,
				Labels:      map[string]string{"trellis.dev/wg-gateway": "true"},
				Annotations: map[string]string{"trellis.dev/wireguard-public-key": base64.StdEncoding.EncodeToString(server.pub[:])}},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app.kubernetes.io/name": "wg-" + name},
				Ports:    []corev1.ServicePort{{Name: "wireguard", Port: 51820, TargetPort: intstr.FromInt32(51820), Protocol: corev1.ProtocolUDP}},
			},
		}
		_ = cs.CoreV1().Services(ns).Delete(ctx, svc.Name, metav1.DeleteOptions{})
		if err := poll(ctx, 30*time.Second, func() error {
			_, err := cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		tunDev, tnet, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr(clientIP)}, nil, 1420)
		if err != nil {
			t.Fatal(err)
		}
		dev := device.NewDevice(tunDev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
		cfg := "private_key=" + hex.EncodeToString(client.priv[:]) + "\nlisten_port=0\npublic_key=" + hex.EncodeToString(server.pub[:]) +
			"\nendpoint=" + endpoint + "\nallowed_ip=" + serverIP + "/32\npersistent_keepalive_interval=5\n"
		if err := dev.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := dev.Up(); err != nil {
			t.Fatal(err)
		}
		wgClients = append(wgClients, &wgClient{name: name, serverIP: serverIP, dev: dev, net: tnet})
	}
	if err := fetchAll(ctx, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d clients reached their own servers through the gateway at %s", len(wgClients), endpoint)
}
