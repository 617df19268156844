// Package deps checks what each daemon binary links: a small daemon never carries
// code it does not need (STYLE.md: per-binary dependency checks).
package deps

import (
	"os/exec"
	"strings"
	"testing"
)

// forbidden lists, per binary, import path prefixes it must not link.
var forbidden = map[string][]string{
	"wg-gateway": {
		"golang.zx2c4.com/wireguard", // tests only: the gateway holds no keys and runs no WireGuard
		"gvisor.dev/",                // tests only (netstack peers)
		// mac1 uses internal/wgproto's own BLAKE2s and the gateway holds no keys; only
		// XChaCha20-Poly1305 (x/crypto/chacha20poly1305 and what it needs) is linked, to
		// seal cookie replies under a key derived from a backend's public key.
		"golang.org/x/crypto/blake2",
		"golang.org/x/crypto/curve25519",
		"golang.org/x/crypto/hkdf",
		"golang.org/x/crypto/nacl",
		"golang.org/x/crypto/ssh",
		"golang.org/x/crypto/cryptobyte",
		"github.com/vishvananda/netlink",
		"github.com/cilium/ebpf",
		"k8s.io/kubectl",
	},
	"event-watcher": {
		"golang.zx2c4.com/wireguard",
		"gvisor.dev/",
		"github.com/vishvananda/netlink",
		"github.com/cilium/ebpf",
		"k8s.io/kubectl", // its drain is a small eviction loop
		"github.com/trellis-garden/trellis/internal/imds/imdsfake", // tests and demo only
	},
	"otel-shoot-scraper": {
		"golang.zx2c4.com/wireguard",
		"gvisor.dev/",
		"github.com/vishvananda/netlink",
		"github.com/cilium/ebpf",
		"github.com/prometheus/prometheus", // its own parser: internal/promtext
		"github.com/trellis-garden/trellis/internal/otlpexport/otlptest", // tests only
	},
	"egress-reporter": {
		"golang.zx2c4.com/wireguard",
		"gvisor.dev/",
		"github.com/vishvananda/netlink",
		"github.com/mdlayher/netlink",
		"github.com/cilium/ebpf",
		"github.com/ti-mo/",
		"github.com/google/nftables",
		"k8s.io/kubectl",
		"github.com/gardener/gardener", // Infrastructure is read with the dynamic client
		"github.com/trellis-garden/trellis/internal/egressprobe/probetest", // tests only
	},
	"mr-signer": {
		"golang.zx2c4.com/wireguard",
		"gvisor.dev/",
		"github.com/vishvananda/netlink",
		"github.com/mdlayher/netlink",
		"github.com/cilium/ebpf",
		"github.com/pion/",
		"github.com/ti-mo/",
		"github.com/google/nftables",
		"github.com/gardener/gardener", // ManagedResources are read as unstructured objects
		"k8s.io/kubectl",
	},
	"zone-flow-tracer": {
		"golang.zx2c4.com/wireguard",
		"gvisor.dev/",
		"github.com/pion/",
		"github.com/cilium/ebpf",
		"github.com/vishvananda/",    // tests only (netnstest); the daemon speaks ctnetlink itself
		"github.com/google/nftables", // tests only
		"github.com/ti-mo/conntrack", // tests only: the reference decoder of FuzzParseFlowMatchesLibrary
		"google.golang.org/grpc",
		"k8s.io/kubectl",
		"github.com/trellis-garden/trellis/internal/netnstest", // tests only
	},
}

func TestBinariesLinkOnlyWhatTheyNeed(t *testing.T) {
	for bin, prefixes := range forbidden {
		t.Run(bin, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", "../../cmd/"+bin).Output()
			if err != nil {
				t.Fatalf("go list -deps ./cmd/%s: %v", bin, err)
			}
			deps := strings.Fields(string(out))
			if len(deps) < 10 {
				t.Fatalf("go list -deps returned only %d packages", len(deps))
			}
			for _, d := range deps {
				for _, p := range prefixes {
					if strings.HasPrefix(d, p) {
						t.Errorf("%s links %s (forbidden prefix %s)", bin, d, p)
					}
				}
			}
		})
	}
}
