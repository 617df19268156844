package wggateway

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// TestAddressFamilies relays a handshake and data for IPv4 and IPv6 listeners and
// backends, including a dual-stack listener with an IPv4 client and IPv6 backend.
func TestAddressFamilies(t *testing.T) {
	cases := []struct{ name, listen, client, backend string }{
		{"ipv4", "127.0.0.1:0", "127.0.0.1", "127.0.0.1"},
		{"ipv6", "[::1]:0", "::1", "::1"},
		{"dual-stack listener, ipv4 client, ipv6 backend", ":0", "127.0.0.1", "::1"},
		{"ipv6 client, ipv4 backend", "[::1]:0", "::1", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tc.backend)})
			if err != nil {
				t.Skipf("no %s on this host: %v", tc.backend, err)
			}
			defer backend.Close()
			client, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(tc.client)})
			if err != nil {
				t.Skipf("no %s on this host: %v", tc.client, err)
			}
			defer client.Close()
			var pub [32]byte
			pub[3] = 1
			rg := startGateway(t, tc.listen, []Backend{{Name: "b", PublicKey: pub, Endpoint: backend.LocalAddr().(*net.UDPAddr).AddrPort()}},
				func(c *Config) { c.Shards = 1 })
			gw := rg.gw
			port := gw.LocalAddr().(*net.UDPAddr).Port
			gwAddr := netip.AddrPortFrom(netip.MustParseAddr(tc.client), uint16(port))

			recv := func(c *net.UDPConn) ([]byte, netip.AddrPort) {
				t.Helper()
				buf := make([]byte, 2048)
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return buf[:n], from
			}
			init := initiation(pub, 1)
			client.WriteToUDPAddrPort(init, gwAddr)
			got, up := recv(backend)
			if !bytes.Equal(got, init) {
				t.Fatal("initiation changed on the way")
			}
			resp := response(2, 1)
			backend.WriteToUDPAddrPort(resp, up)
			if got, _ := recv(client); !bytes.Equal(got, resp) {
				t.Fatal("response changed on the way")
			}
			data := transport(2, 64)
			client.WriteToUDPAddrPort(data, gwAddr)
			if got, _ := recv(backend); !bytes.Equal(got, data) {
				t.Fatal("data changed on the way")
			}
		})
	}
}
