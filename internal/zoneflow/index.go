package zoneflow

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Endpoint classes: where an address is, as far as this node can tell.
const (
	classIgnore      uint8 = iota // loopback, link-local, multicast, unspecified: never counted
	classCluster                  // a node's InternalIP, a podCIDR or a known pod IP
	classRegion                   // --network.same-region-cidrs: in the region, zone unknown
	classOtherRegion              // --network.other-region-cidrs
	classInternet                 // everything else
)

// Zone label values for endpoints outside the cluster or without a zone.
const (
	zoneInRegion    = "in-region"
	zoneOtherRegion = "other-region"
	zoneInternet    = "internet"
	zoneUnknown     = "unknown"
)

// endpoint is what one address resolves to.
type endpoint struct {
	class     uint8
	local     bool   // this node: its InternalIPs, its podCIDRs, its pods
	zone      string // node zone, or one of the zone* constants
	namespace string // local pods only
	workload  string // local pods only: kind/name
}

// nodeInfo is what the index needs from a Node.
type nodeInfo struct {
	Name  string
	Zone  string
	IPs   []netip.Addr
	CIDRs []netip.Prefix
}

// podInfo is what the index needs from a Pod.
type podInfo struct {
	Namespace, Workload, Node string
	IPs                       []netip.Addr
}

// ipIndex resolves addresses to endpoints. It is immutable once built: a change
// of Nodes or Pods builds a new one.
type ipIndex struct {
	exact    map[netip.Addr]endpoint
	prefixes map[netip.Prefix]endpoint // masked, looked up by each length in bits
	bits     []int                     // prefix lengths present, longest first
	region   []netip.Prefix
	other    []netip.Prefix
}

// buildIndex indexes nodes and pods as seen from node self.
func buildIndex(self string, nodes []nodeInfo, pods []podInfo, region, other []netip.Prefix) *ipIndex {
	ix := &ipIndex{exact: map[netip.Addr]endpoint{}, prefixes: map[netip.Prefix]endpoint{}, region: region, other: other}
	zoneOf := map[string]string{}
	for _, n := range nodes {
		zone := n.Zone
		if zone == "" {
			zone = zoneUnknown
		}
		zoneOf[n.Name] = zone
		ep := endpoint{class: classCluster, local: n.Name == self, zone: zone}
		for _, c := range n.CIDRs {
			c = c.Masked()
			ix.prefixes[c] = ep
			if !slices.Contains(ix.bits, c.Bits()) {
				ix.bits = append(ix.bits, c.Bits())
			}
		}
		for _, ip := range n.IPs {
			ix.exact[ip.Unmap()] = ep
		}
	}
	slices.SortFunc(ix.bits, func(a, b int) int { return b - a })
	for _, p := range pods {
		zone, ok := zoneOf[p.Node]
		if !ok {
			zone = zoneUnknown
		}
		ep := endpoint{class: classCluster, local: p.Node == self, zone: zone}
		if ep.local {
			ep.namespace, ep.workload = p.Namespace, p.Workload
		}
		for _, ip := range p.IPs {
			ip = ip.Unmap()
			// A node's own address wins over a pod that claims it (hostNetwork).
			if cur, ok := ix.exact[ip]; ok && cur.namespace == "" {
				continue
			}
			ix.exact[ip] = ep
		}
	}
	return ix
}

func (ix *ipIndex) lookup(ip netip.Addr) endpoint {
	ip = ip.Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() || ip.IsLinkLocalMulticast() {
		return endpoint{class: classIgnore}
	}
	if ep, ok := ix.exact[ip]; ok {
		return ep
	}
	for _, b := range ix.bits {
		if b > ip.BitLen() {
			continue
		}
		p, err := ip.Prefix(b)
		if err != nil {
			continue
		}
		if ep, ok := ix.prefixes[p]; ok {
			return ep
		}
	}
	for _, p := range ix.region {
		if p.Contains(ip) {
			return endpoint{class: classRegion, zone: zoneInRegion}
		}
	}
	for _, p := range ix.other {
		if p.Contains(ip) {
			return endpoint{class: classOtherRegion, zone: zoneOtherRegion}
		}
	}
	return endpoint{class: classInternet, zone: zoneInternet}
}

// ZoneLabel is the well-known label that carries a Node's zone.
const ZoneLabel = corev1.LabelTopologyZone

func nodeInfoOf(n *corev1.Node) nodeInfo {
	info := nodeInfo{Name: n.Name, Zone: n.Labels[ZoneLabel]}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			info.IPs = append(info.IPs, ip)
		}
	}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			info.CIDRs = append(info.CIDRs, p)
		}
	}
	return info
}

func podInfoOf(p *corev1.Pod) (podInfo, bool) {
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return podInfo{}, false
	}
	info := podInfo{Namespace: p.Namespace, Workload: workloadOf(p), Node: p.Spec.NodeName}
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	for _, a := range ips {
		if ip, err := netip.ParseAddr(a.IP); err == nil {
			info.IPs = append(info.IPs, ip)
		}
	}
	return info, len(info.IPs) > 0
}

var (
	// A ReplicaSet made by a Deployment is named <deployment>-<pod-template-hash>.
	templateHash = regexp.MustCompile(`^(.+)-[0-9a-z]{5,10}$`)
	// A Job made by a CronJob is named <cronjob>-<scheduled minutes since epoch>.
	cronSuffix = regexp.MustCompile(`^(.+)-[0-9]{8,}$`)
)

// workloadOf names a pod's workload as kind/name from its controller owner:
// ReplicaSet -> deployment/<name without the hash>, Job -> cronjob/<name> when
// the name carries a CronJob's timestamp suffix, StatefulSet, DaemonSet, Job as
// they are; a pod without a controller is pod/<name>.
func workloadOf(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		switch o.Kind {
		case "ReplicaSet":
			if m := templateHash.FindStringSubmatch(o.Name); m != nil {
				return "deployment/" + m[1]
			}
			return "replicaset/" + o.Name
		case "Job":
			if m := cronSuffix.FindStringSubmatch(o.Name); m != nil {
				return "cronjob/" + m[1]
			}
			return "job/" + o.Name
		default:
			return strings.ToLower(o.Kind) + "/" + o.Name
		}
	}
	return "pod/" + p.Name
}

// stripNode keeps only what the index reads from a Node: informer memory then
// grows with the number of nodes, not with their images, conditions and
// annotations.
func stripNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	out := &corev1.Node{}
	out.Name, out.ResourceVersion, out.UID = n.Name, n.ResourceVersion, n.UID
	if z, ok := n.Labels[ZoneLabel]; ok {
		out.Labels = map[string]string{ZoneLabel: z}
	}
	out.Spec.PodCIDR, out.Spec.PodCIDRs, out.Spec.ProviderID = n.Spec.PodCIDR, n.Spec.PodCIDRs, n.Spec.ProviderID
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			out.Status.Addresses = append(out.Status.Addresses, a)
		}
	}
	return out, nil
}

// stripPod keeps only what the index reads from a Pod.
func stripPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{}
	out.Name, out.Namespace, out.ResourceVersion, out.UID = p.Name, p.Namespace, p.ResourceVersion, p.UID
	out.OwnerReferences = p.OwnerReferences
	out.Spec.NodeName, out.Spec.HostNetwork = p.Spec.NodeName, p.Spec.HostNetwork
	out.Status.Phase, out.Status.PodIP, out.Status.PodIPs = p.Status.Phase, p.Status.PodIP, p.Status.PodIPs
	return out, nil
}
