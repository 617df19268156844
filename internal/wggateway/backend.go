package wggateway

import (
	"net/netip"
)

// Backend is one WireGuard server behind the gateway, e.g. a shoot control plane's
// vpn-seed-server. The gateway holds only its public key.
type Backend struct {
	// Name identifies the backend in logs and metrics: "<namespace>/<service>" for
	// Kubernetes, the entry's name for the file source.
	Name string
	// PublicKey is the server's static public key (as `wg pubkey` prints it, decoded).
	PublicKey [32]byte
	// Endpoint is where the gateway sends the server's packets.
	Endpoint netip.AddrPort
}
