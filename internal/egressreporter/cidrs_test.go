package egressreporter

import (
	"net/netip"
	"testing"
)

func TestFormatCIDRs(t *testing.T) {
	parse := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			p, err := ParsePrefix(s)
			if err != nil {
				t.Fatalf("ParsePrefix(%q): %v", s, err)
			}
			out = append(out, p)
		}
		return out
	}
	for _, c := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		// Gardener's own example.
		{[]string{"63.177.125.178/32", "3.74.173.24/32"}, "3.74.173.24/32,63.177.125.178/32"},
		{[]string{"2001:db8::1", "203.0.113.7", "10.0.0.0/8", "203.0.113.7/32", "::ffff:198.51.100.1"}, "10.0.0.0/8,198.51.100.1/32,203.0.113.7/32,2001:db8::1/128"},
		{[]string{"10.1.2.3/8", "10.0.0.0/8", "10.0.0.0/16"}, "10.0.0.0/8,10.0.0.0/16"},
		{[]string{"2001:db8::/32", "1.1.1.1", "2001:db8::/48", "::ffff:10.0.0.0/104"}, "1.1.1.1/32,10.0.0.0/8,2001:db8::/32,2001:db8::/48"},
	} {
		if got := FormatCIDRs(parse(c.in...)); got != c.want {
			t.Errorf("FormatCIDRs(%v) = %q, want %q", c.in, got, c.want)
		}
		// Round trip through shoot-info's format.
		back, err := ParseCIDRs(c.want)
		if err != nil || FormatCIDRs(back) != c.want {
			t.Errorf("ParseCIDRs(%q) = %v, %v", c.want, back, err)
		}
	}
	for _, bad := range []string{"", "x", "1.2.3.4/33", "fe80::1%eth0", "::ffff:1.2.3.4/64", "1.2.3"} {
		if _, err := ParsePrefix(bad); err == nil {
			t.Errorf("ParsePrefix(%q) accepted", bad)
		}
	}
	if ps, err := ParseCIDRs(" 1.2.3.4/32, ,5.6.7.8 "); err != nil || len(ps) != 2 {
		t.Errorf("ParseCIDRs with spaces and empty items = %v, %v", ps, err)
	}
}
