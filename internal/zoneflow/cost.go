package zoneflow

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// Traffic classes, the unit of the price table.
const (
	ClassSameZone        = "same-zone"
	ClassCrossZone       = "cross-zone"
	ClassInRegion        = "in-region" // in the region, zone unknown
	ClassCrossRegion     = "cross-region"
	ClassInternetEgress  = "internet-egress"
	ClassInternetIngress = "internet-ingress"
)

// Classes lists every class, in the order docs and /flows use.
var Classes = []string{ClassSameZone, ClassCrossZone, ClassInRegion, ClassCrossRegion, ClassInternetEgress, ClassInternetIngress}

// classOf names the class of bytes sent from src to dst.
func classOf(src, dst endpoint) string {
	switch {
	case dst.class == classInternet:
		return ClassInternetEgress
	case src.class == classInternet:
		return ClassInternetIngress
	case src.class == classOtherRegion || dst.class == classOtherRegion:
		return ClassCrossRegion
	case src.class == classRegion || dst.class == classRegion || src.zone == zoneUnknown || dst.zone == zoneUnknown:
		return ClassInRegion
	case src.zone == dst.zone:
		return ClassSameZone
	}
	return ClassCrossZone
}

// Prices is a price table in US dollars per GiB (2^30 bytes) by class.
type Prices map[string]float64

// Providers with built-in price tables.
var Providers = []string{"aws", "gcp", "azure", "none"}

// DefaultPrices are list prices (USD per GiB; the providers bill per "GB" of
// 2^30 bytes) for the first pricing tier, as published in 2026. Each byte is
// counted once, so a price that a provider charges on both sides (AWS bills
// inter-AZ $0.01/GB out of one AZ and $0.01/GB into the other) is the sum.
// Ingress from the internet is free on all three. In-region traffic to an
// address of unknown zone is priced 0: it may or may not cross a zone; list the
// zone's CIDRs in the Node podCIDRs or use a price file if it matters. Override
// any entry with --cost.prices-file.
func DefaultPrices(provider string) (Prices, error) {
	switch provider {
	case "aws":
		return Prices{ClassCrossZone: 0.02, ClassCrossRegion: 0.02, ClassInternetEgress: 0.09}, nil
	case "gcp":
		return Prices{ClassCrossZone: 0.01, ClassCrossRegion: 0.02, ClassInternetEgress: 0.12}, nil
	case "azure":
		// Azure stopped billing traffic between availability zones.
		return Prices{ClassCrossZone: 0, ClassCrossRegion: 0.02, ClassInternetEgress: 0.087}, nil
	case "none":
		return Prices{}, nil
	}
	return nil, fmt.Errorf("unknown provider %q, want one of %s", provider, strings.Join(Providers, ", "))
}

// LoadPrices reads a YAML file of class: dollars-per-GiB that overrides entries
// of base, e.g.
//
//	cross-zone: 0.01
//	internet-egress: 0.05
func LoadPrices(path string, base Prices) (Prices, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var over map[string]float64
	if err := yaml.UnmarshalStrict(b, &over); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := Prices{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		if !slices.Contains(Classes, k) {
			return nil, fmt.Errorf("%s: unknown class %q, want one of %s", path, k, strings.Join(Classes, ", "))
		}
		if v < 0 {
			return nil, fmt.Errorf("%s: %s: negative price %v", path, k, v)
		}
		out[k] = v
	}
	return out, nil
}

// providerFromID derives the provider from a Node's spec.providerID.
func providerFromID(id string) string {
	switch {
	case strings.HasPrefix(id, "aws://"):
		return "aws"
	case strings.HasPrefix(id, "gce://"):
		return "gcp"
	case strings.HasPrefix(id, "azure://"):
		return "azure"
	}
	return "none"
}
