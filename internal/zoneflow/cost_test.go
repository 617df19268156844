package zoneflow

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrices(t *testing.T) {
	for _, p := range Providers {
		if _, err := DefaultPrices(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if az, _ := DefaultPrices("azure"); az[ClassCrossZone] != 0 {
		t.Error("Azure does not bill traffic between zones")
	}
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "prices.yaml")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aws, _ := DefaultPrices("aws")
	got, err := LoadPrices(write("cross-zone: 0.015\n"), aws)
	if err != nil || got[ClassCrossZone] != 0.015 || got[ClassInternetEgress] != aws[ClassInternetEgress] || aws[ClassCrossZone] != 0.02 {
		t.Fatalf("override: %v %v (base %v)", got, err, aws)
	}
	for _, bad := range []string{"cross-zoen: 1\n", "cross-zone: -1\n", "cross-zone: [1]\n"} {
		if _, err := LoadPrices(write(bad), aws); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for id, want := range map[string]string{"aws:///eu-west-1a/i-1": "aws", "gce://p/z/n": "gcp", "azure:///subscriptions/x": "azure", "kind://docker/x": "none", "": "none"} {
		if got := providerFromID(id); got != want {
			t.Errorf("%s: %s, want %s", id, got, want)
		}
	}
}

// TestIndexLookup covers the address index: exact IPs before prefixes, the
// longest prefix first, IPv6, a node's address never taken by a hostNetwork
// pod, pods of other nodes in their node's zone, CIDR classes, ignored ranges.
func TestIndexLookup(t *testing.T) {
	nodes := append(testNodes[:2:2],
		nodeInfo{Name: "n3", IPs: []netip.Addr{netip.MustParseAddr("fd00::3")}, CIDRs: []netip.Prefix{netip.MustParsePrefix("fd00:10:3::/64"), netip.MustParsePrefix("10.3.0.0/16")}},
		nodeInfo{Name: "n4", Zone: "c", CIDRs: []netip.Prefix{netip.MustParsePrefix("10.3.7.0/24")}})
	pods := append(testPods[:3:3],
		podInfo{Namespace: "x", Workload: "pod/host", Node: "n1", IPs: []netip.Addr{n1IP}},
		podInfo{Namespace: "y", Workload: "deployment/z", Node: "n2", IPs: []netip.Addr{netip.MustParseAddr("100.70.0.1")}})
	ix := buildIndex("n1", nodes, pods, testRegion, testOther)
	for addr, want := range map[string]string{
		"192.168.0.1":     "cluster local a /",
		"10.1.0.5":        "cluster local a shop/deployment/web",
		"10.1.0.99":       "cluster local a /",
		"10.2.0.7":        "cluster remote b /",
		"fd00:10:3::1":    "cluster remote unknown /",
		"fd00::3":         "cluster remote unknown /",
		"10.3.7.1":        "cluster remote c /",
		"10.3.8.1":        "cluster remote unknown /",
		"100.70.0.1":      "cluster remote b /",
		"::ffff:10.1.0.5": "cluster local a shop/deployment/web",
		"172.20.0.1":      "region remote in-region /",
		"198.51.100.1":    "other remote other-region /",
		"8.8.8.8":         "internet remote internet /",
		"2001:db8::1":     "internet remote internet /",
		"169.254.169.254": "ignore remote  /",
		"127.0.0.1":       "ignore remote  /",
		"ff02::1":         "ignore remote  /",
	} {
		ep := ix.lookup(netip.MustParseAddr(addr))
		local := "remote"
		if ep.local {
			local = "local"
		}
		got := strings.Join([]string{[]string{"ignore", "cluster", "region", "other", "internet"}[ep.class], local, ep.zone, ep.namespace + "/" + ep.workload}, " ")
		if got != want {
			t.Errorf("%s: %q, want %q", addr, got, want)
		}
	}
}
