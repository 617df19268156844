package egressprobe

import (
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

func fuzzSeeds(f *testing.F) [stun.TransactionIDSize]byte {
	tx := stun.NewTransactionID()
	ok := stun.MustBuild(stun.NewTransactionIDSetter(tx), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: netip.MustParseAddr("203.0.113.7").AsSlice(), Port: 4242}, stun.Fingerprint)
	v6 := stun.MustBuild(stun.NewTransactionIDSetter(tx), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: netip.MustParseAddr("2001:db8::1").AsSlice(), Port: 4242})
	mapped := stun.MustBuild(stun.NewTransactionIDSetter(tx), stun.BindingSuccess,
		&stun.MappedAddress{IP: netip.MustParseAddr("198.51.100.1").AsSlice(), Port: 1})
	errResp := stun.MustBuild(stun.NewTransactionIDSetter(tx), stun.BindingError, stun.ErrorCodeAttribute{Code: 400, Reason: []byte("x")})
	f.Add(ok.Raw)
	f.Add(v6.Raw)
	f.Add(mapped.Raw)
	f.Add(errResp.Raw)
	f.Add(ok.Raw[:20])
	f.Add([]byte("garbage"))
	f.Add([]byte{})
	return tx
}

// FuzzParseBindingResponse: untrusted datagrams never panic, and anything
// accepted is a valid unicast address.
func FuzzParseBindingResponse(f *testing.F) {
	tx := fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		addr, err := ParseBindingResponse(raw, tx)
		if err == nil && (!addr.IsValid() || addr.IsUnspecified() || addr.IsMulticast() || addr.Is4In6()) {
			t.Fatalf("accepted %v from %x", addr, raw)
		}
	})
}

// FuzzParseEchoBody: untrusted bodies never panic; accepted addresses are valid.
func FuzzParseEchoBody(f *testing.F) {
	for _, s := range []string{"203.0.113.7\n", "2001:db8::1", "", "x", "::ffff:1.2.3.4", "fe80::1%eth0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		addr, err := ParseEchoBody(raw)
		if err == nil && (!addr.IsValid() || addr.IsUnspecified() || addr.Zone() != "" || addr.Is4In6()) {
			t.Fatalf("accepted %v from %q", addr, raw)
		}
	})
}

func TestParseBindingResponse(t *testing.T) {
	tx := stun.NewTransactionID()
	other := stun.NewTransactionID()
	build := func(id [stun.TransactionIDSize]byte, setters ...stun.Setter) []byte {
		return stun.MustBuild(append([]stun.Setter{stun.NewTransactionIDSetter(id)}, setters...)...).Raw
	}
	xor := func(s string) stun.Setter {
		return &stun.XORMappedAddress{IP: netip.MustParseAddr(s).AsSlice(), Port: 1}
	}
	corrupt := build(tx, stun.BindingSuccess, xor("203.0.113.7"), stun.Fingerprint)
	corrupt[len(corrupt)-1] ^= 0xff
	for _, c := range []struct {
		name string
		raw  []byte
		want string
	}{
		{"xor-mapped ipv4", build(tx, stun.BindingSuccess, xor("203.0.113.7"), stun.Fingerprint), "203.0.113.7"},
		{"xor-mapped ipv6", build(tx, stun.BindingSuccess, xor("2001:db8::1")), "2001:db8::1"},
		{"mapped (RFC 3489)", build(tx, stun.BindingSuccess, &stun.MappedAddress{IP: netip.MustParseAddr("198.51.100.1").AsSlice(), Port: 1}), "198.51.100.1"},
		{"other transaction", build(other, stun.BindingSuccess, xor("203.0.113.7")), ""},
		{"request, not response", build(tx, stun.BindingRequest, xor("203.0.113.7")), ""},
		{"error response", build(tx, stun.BindingError, stun.ErrorCodeAttribute{Code: 500, Reason: []byte("no")}), ""},
		{"no address", build(tx, stun.BindingSuccess), ""},
		{"bad fingerprint", corrupt, ""},
		{"unspecified", build(tx, stun.BindingSuccess, xor("0.0.0.0")), ""},
		{"multicast", build(tx, stun.BindingSuccess, xor("ff02::1")), ""},
		{"truncated", build(tx, stun.BindingSuccess, xor("203.0.113.7"))[:25], ""},
		{"not stun", []byte("hello world, this is no stun message"), ""},
	} {
		got, err := ParseBindingResponse(c.raw, tx)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: accepted %v", c.name, got)
			} else if kindOf(err) != KindInvalid {
				t.Errorf("%s: error kind %s, want invalid", c.name, kindOf(err))
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s: %v, %v; want %s", c.name, got, err, c.want)
		}
	}
}
