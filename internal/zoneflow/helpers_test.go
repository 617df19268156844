package zoneflow

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"net/netip"

	"github.com/trellis-garden/trellis/internal/conntrack"
)

// A two-zone test cluster: node n1 in zone a, n2 in zone b, one local pod on each.
var (
	n1IP    = netip.MustParseAddr("192.168.0.1")
	n2IP    = netip.MustParseAddr("192.168.0.2")
	n1Pod   = netip.MustParseAddr("10.1.0.5")
	n2Pod   = netip.MustParseAddr("10.2.0.7")
	n1Pod2  = netip.MustParseAddr("10.1.0.9")
	svcIP   = netip.MustParseAddr("10.96.0.10")
	vpcIP   = netip.MustParseAddr("172.20.3.4")
	inetIP  = netip.MustParseAddr("203.0.113.9")
	otherIP = netip.MustParseAddr("198.51.100.7")

	testNodes = []nodeInfo{
		{Name: "n1", Zone: "a", IPs: []netip.Addr{n1IP}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24")}},
		{Name: "n2", Zone: "b", IPs: []netip.Addr{n2IP}, CIDRs: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24")}},
	}
	testPods = []podInfo{
		{Namespace: "shop", Workload: "deployment/web", Node: "n1", IPs: []netip.Addr{n1Pod}},
		{Namespace: "shop", Workload: "statefulset/db", Node: "n1", IPs: []netip.Addr{n1Pod2}},
		{Namespace: "shop", Workload: "deployment/api", Node: "n2", IPs: []netip.Addr{n2Pod}},
	}
	testRegion = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
	testOther  = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
)

func testIndex(self string) *ipIndex {
	return buildIndex(self, testNodes, testPods, testRegion, testOther)
}

func newTestProcessor(self string) *Processor {
	p := NewProcessor(DefaultMaxRecords)
	p.SetIndex(testIndex(self))
	return p
}

// flow builds a conntrack entry; replySrc differs from dst under DNAT, replyDst
// from src under SNAT.
func flow(id uint32, src, dst, replySrc, replyDst netip.Addr, ob, rb uint64) conntrack.Flow {
	return conntrack.Flow{ID: id, Proto: 6, OrigSrc: src, OrigDst: dst, ReplySrc: replySrc, ReplyDst: replyDst,
		OrigBytes: ob, OrigPackets: ob / 100, ReplyBytes: rb, ReplyPackets: rb / 100}
}

// totals sums a processor's records by a string key.
func totals(p *Processor, key func(recordKey) string) map[string]uint64 {
	recs, _, _ := p.snapshot()
	out := map[string]uint64{}
	for _, r := range recs {
		if r.bytes > 0 {
			out[key(r.key)] += r.bytes
		}
	}
	return out
}

func zdKey(k recordKey) string {
	return k.srcZone + ">" + k.dstZone + " " + directionNames[k.direction] + " " + k.class + " " + k.namespace + "/" + k.workload
}

func podOwnedBy(name, owner string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if kind, n, ok := strings.Cut(owner, "/"); ok {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: kind, Name: n, UID: "u", Controller: &yes}}
	}
	return p
}
