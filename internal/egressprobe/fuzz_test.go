package egressprobe

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/pion/stun/v3"
)

// pionParseBindingResponse is the reference ParseBindingResponse is checked
// against: the same decoding with pion/stun/v3, which the daemon linked before
// (with pion/dtls and x/crypto behind it). pion/stun is a test-only dependency.
func pionParseBindingResponse(raw []byte, tx [stun.TransactionIDSize]byte) (netip.Addr, error) {
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		return netip.Addr{}, err
	}
	if m.TransactionID != tx {
		return netip.Addr{}, fmt.Errorf("transaction id mismatch")
	}
	if m.Type != stun.BindingSuccess {
		return netip.Addr{}, fmt.Errorf("message type %s", m.Type)
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return netip.Addr{}, err
		}
	}
	var ip []byte
	var xor stun.XORMappedAddress
	if err := xor.GetFrom(m); err == nil {
		ip = xor.IP
	} else {
		var mapped stun.MappedAddress
		if err := mapped.GetFrom(m); err != nil {
			return netip.Addr{}, err
		}
		ip = mapped.IP
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("address of %d bytes", len(ip))
	}
	return checkUnicast(addr.Unmap())
}

func fuzzSeeds(f *testing.F) [TransactionIDSize]byte {
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

// FuzzParseBindingResponseMatchesPion: whatever ParseBindingResponse accepts,
// pion/stun accepts too, with the same address (ours is the stricter: exact
// length, well-formed attributes, FINGERPRINT last).
func FuzzParseBindingResponseMatchesPion(f *testing.F) {
	tx := fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		keep := bytes.Clone(raw)
		got, err := ParseBindingResponse(raw, tx)
		if !bytes.Equal(raw, keep) {
			t.Fatalf("ParseBindingResponse modified its input")
		}
		if err != nil {
			if kindOf(err) != KindInvalid {
				t.Fatalf("error %v is of kind %s, want invalid", err, kindOf(err))
			}
			return
		}
		want, perr := pionParseBindingResponse(raw, tx)
		if perr != nil || want != got {
			t.Fatalf("ParseBindingResponse = %v; pion/stun: %v, %v; message %x", got, want, perr, raw)
		}
	})
}

// FuzzWellFormedResponses: every Binding success response pion/stun builds (IPv4
// or IPv6, XOR-MAPPED-ADDRESS or MAPPED-ADDRESS, with or without FINGERPRINT and
// other attributes) is read as pion/stun reads it.
func FuzzWellFormedResponses(f *testing.F) {
	f.Add([]byte{203, 0, 113, 7}, uint16(4242), true, false, false)
	f.Add(netip.MustParseAddr("2001:db8::1").AsSlice(), uint16(1), false, true, true)
	f.Add([]byte{224, 0, 0, 1}, uint16(0), true, true, false)
	f.Fuzz(func(t *testing.T, ip []byte, port uint16, fingerprint, mapped, software bool) {
		if len(ip) != 4 && len(ip) != 16 {
			return
		}
		tx := stun.NewTransactionID()
		setters := []stun.Setter{stun.NewTransactionIDSetter(tx), stun.BindingSuccess}
		if software {
			setters = append(setters, stun.NewSoftware("trellis fuzz"))
		}
		if mapped {
			setters = append(setters, &stun.MappedAddress{IP: ip, Port: int(port)})
		} else {
			setters = append(setters, &stun.XORMappedAddress{IP: ip, Port: int(port)})
		}
		if fingerprint {
			setters = append(setters, stun.Fingerprint)
		}
		m, err := stun.Build(setters...)
		if err != nil {
			t.Skip(err)
		}
		got, err := ParseBindingResponse(m.Raw, tx)
		want, perr := pionParseBindingResponse(m.Raw, tx)
		if (err == nil) != (perr == nil) || got != want {
			t.Fatalf("ParseBindingResponse = %v, %v; pion/stun: %v, %v; message %x", got, err, want, perr, m.Raw)
		}
	})
}

// TestBindingRequestDecodesWithPion: the request we send is a valid Binding
// request with a valid FINGERPRINT as pion/stun reads it.
func TestBindingRequestDecodesWithPion(t *testing.T) {
	tx := [TransactionIDSize]byte(stun.NewTransactionID())
	raw := appendBindingRequest(nil, tx)
	m := &stun.Message{Raw: raw}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Type != stun.BindingRequest || m.TransactionID != tx || len(m.Attributes) != 1 {
		t.Fatalf("decoded %v, tx %x, %d attributes", m.Type, m.TransactionID, len(m.Attributes))
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Fatal(err)
	}
	if !isSTUN(raw) || !stun.IsMessage(raw) {
		t.Fatal("request is not a STUN message")
	}
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
	build := func(id [TransactionIDSize]byte, setters ...stun.Setter) []byte {
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
		{"trailing bytes", append(build(tx, stun.BindingSuccess, xor("203.0.113.7")), 0, 0, 0, 0), ""},
		{"fingerprint not last", build(tx, stun.BindingSuccess, stun.Fingerprint, xor("203.0.113.7")), ""},
		{"old XOR-MAPPED-ADDRESS number", oldXOR(build(tx, stun.BindingSuccess, xor("203.0.113.9"))), "203.0.113.9"},
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

// oldXOR renumbers a message's first attribute to 0x8020, XOR-MAPPED-ADDRESS's
// number before RFC 5389.
func oldXOR(raw []byte) []byte {
	raw[20], raw[21] = 0x80, 0x20
	return raw
}
