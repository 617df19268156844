package egressreporter

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// source is one way to learn egress prefixes. observe reads only local state
// (informer caches, flags): it never blocks on the network.
type source interface {
	name() string
	// declared sources are published at once; observed ones after --hysteresis.add.
	declared() bool
	// observe returns the prefixes known at now. Entries it could not use are
	// returned as problems (one line each), not as an error: the rest still counts.
	observe(now time.Time) (prefixes []netip.Prefix, problems []string)
	// synced reports whether the source has read its state once.
	synced() bool
}

// staticSource is --static.cidrs.
type staticSource struct{ prefixes []netip.Prefix }

func (s *staticSource) name() string   { return SourceStatic }
func (s *staticSource) declared() bool { return true }
func (s *staticSource) synced() bool   { return true }
func (s *staticSource) observe(time.Time) ([]netip.Prefix, []string) {
	return s.prefixes, nil
}

// infrastructureSource reads status.egressCIDRs of the Infrastructure objects in
// the shoot's seed namespace (normally one, named after the shoot) from an
// informer cache, which keeps the last known state while the seed is unreachable.
type infrastructureSource struct {
	lister    cache.GenericNamespaceLister
	hasSynced func() bool
}

func (s *infrastructureSource) name() string   { return SourceInfrastructure }
func (s *infrastructureSource) declared() bool { return true }
func (s *infrastructureSource) synced() bool   { return s.hasSynced() }
func (s *infrastructureSource) observe(time.Time) ([]netip.Prefix, []string) {
	objs, err := s.lister.List(labels.Everything())
	if err != nil {
		return nil, []string{err.Error()}
	}
	var out []netip.Prefix
	var problems []string
	for _, o := range objs {
		u, ok := o.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		ps, bad := infrastructureCIDRs(u)
		out = append(out, ps...)
		problems = append(problems, bad...)
	}
	return out, problems
}

// infrastructureCIDRs parses one Infrastructure's status.egressCIDRs.
func infrastructureCIDRs(u *unstructured.Unstructured) ([]netip.Prefix, []string) {
	items, found, err := unstructured.NestedSlice(u.Object, "status", "egressCIDRs")
	if err != nil {
		return nil, []string{fmt.Sprintf("infrastructure %s: status.egressCIDRs: %v", u.GetName(), err)}
	}
	if !found {
		return nil, nil
	}
	var out []netip.Prefix
	var problems []string
	for _, it := range items {
		s, _ := it.(string)
		p, err := ParsePrefix(s)
		if err != nil {
			problems = append(problems, fmt.Sprintf("infrastructure %s: egressCIDRs item %q: %v", u.GetName(), s, err))
			continue
		}
		out = append(out, p)
	}
	return out, problems
}

// nodeStates counts Nodes by the state of their probe annotations.
type nodeStates struct{ fresh, stale, invalid int }

// probeSource reads the probe's annotations on the shoot's Nodes from a metadata
// informer cache (Nodes' metadata only, never their status). An annotation older
// than maxAge is stale: the node's probe has not confirmed it for too long.
type probeSource struct {
	lister    cache.GenericLister
	hasSynced func() bool
	maxAge    time.Duration
	// last is the node count by state of the last observe, for metrics.
	last nodeStates
}

func (s *probeSource) name() string   { return SourceProbe }
func (s *probeSource) declared() bool { return false }
func (s *probeSource) synced() bool   { return s.hasSynced() }
func (s *probeSource) observe(now time.Time) ([]netip.Prefix, []string) {
	objs, err := s.lister.List(labels.Everything())
	if err != nil {
		return nil, []string{err.Error()}
	}
	var out []netip.Prefix
	var problems []string
	var st nodeStates
	for _, o := range objs {
		m, ok := o.(metav1.Object)
		if !ok {
			continue
		}
		ps, fresh, err := nodeAddresses(m.GetAnnotations(), now, s.maxAge)
		switch {
		case err != nil:
			st.invalid++
			problems = append(problems, fmt.Sprintf("node %s: %v", m.GetName(), err))
		case ps == nil:
		case !fresh:
			st.stale++
		default:
			st.fresh++
			out = append(out, ps...)
		}
	}
	s.last = st
	sort.Strings(problems)
	return out, problems
}

// nodeAddresses parses a Node's probe annotations. ps is nil when the node has
// none; fresh is false when they are older than maxAge.
func nodeAddresses(ann map[string]string, now time.Time, maxAge time.Duration) (ps []netip.Prefix, fresh bool, err error) {
	v, ok := ann[AddressAnnotation]
	if !ok {
		return nil, false, nil
	}
	at, err := time.Parse(time.RFC3339, ann[ObservedAtAnnotation])
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ObservedAtAnnotation, err)
	}
	for _, item := range strings.Split(v, ",") {
		if item == "" {
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil || a.Zone() != "" {
			return nil, false, fmt.Errorf("%s: %q is not an address", AddressAnnotation, item)
		}
		a = a.Unmap()
		ps = append(ps, netip.PrefixFrom(a, a.BitLen()))
	}
	if ps == nil {
		return nil, false, fmt.Errorf("%s: empty", AddressAnnotation)
	}
	// A clock ahead of ours counts as now.
	return ps, now.Sub(at) <= maxAge, nil
}
