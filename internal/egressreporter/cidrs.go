package egressreporter

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ParsePrefix accepts a CIDR or a single address (then /32 or /128) and returns it
// masked, e.g. "10.1.2.3/8" -> 10.0.0.0/8. IPv4-mapped IPv6 addresses become IPv4.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%s: IPv4-mapped prefix shorter than /96", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%s: zoned address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ParseCIDRs parses a comma-separated list (shoot-info's format, or a flag value),
// ignoring empty items.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(s, ",") {
		if strings.TrimSpace(item) == "" {
			continue
		}
		p, err := ParsePrefix(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// comparePrefixes orders IPv4 before IPv6, then by address, then by length.
func comparePrefixes(a, b netip.Prefix) int {
	if a.Addr().Is4() != b.Addr().Is4() {
		if a.Addr().Is4() {
			return -1
		}
		return 1
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// SortPrefixes sorts and deduplicates in place (after masking) and returns the
// result.
func SortPrefixes(ps []netip.Prefix) []netip.Prefix {
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	slices.SortFunc(ps, comparePrefixes)
	return slices.Compact(ps)
}

// FormatCIDRs renders prefixes as Gardener writes shoot-info's egressCIDRs:
// comma-separated without spaces, IPv4 before IPv6, sorted, deduplicated, single
// addresses as /32 or /128. An empty list is "" (the key is then omitted).
func FormatCIDRs(ps []netip.Prefix) string {
	ps = SortPrefixes(slices.Clone(ps))
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}
