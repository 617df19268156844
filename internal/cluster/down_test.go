package cluster

import (
	"slices"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`KUBE-SERVICES -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
			[]string{"KUBE-SERVICES", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"}},
		{`FORWARD -s 198.18.64.0/24 -j TRELLIS-E2E-EGRESS`, []string{"FORWARD", "-s", "198.18.64.0/24", "-j", "TRELLIS-E2E-EGRESS"}},
		{`X -m comment --comment "" -j ACCEPT`, []string{"X", "-m", "comment", "--comment", "", "-j", "ACCEPT"}},
		{`X -m comment --comment "a \"quoted\" word"`, []string{"X", "-m", "comment", "--comment", `a "quoted" word`}},
		{`  spaced   out  `, []string{"spaced", "out"}},
	} {
		if got := splitRule(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c\011d`); got != "/a b/c\td" {
		t.Errorf("got %q", got)
	}
	if got := unescapeMount(`/plain\x`); got != `/plain\x` {
		t.Errorf("got %q", got)
	}
}

// Only the cluster's rules and chains are removed at teardown; a rule someone
// else added meanwhile stays.
func TestOursRule(t *testing.T) {
	newChains := map[string]bool{"KUBE-FIREWALL": true}
	for rule, want := range map[string]bool{
		"-A INPUT -j KUBE-FIREWALL":                                                                true,
		"-A FORWARD -s 198.18.64.0/24 -j TRELLIS-E2E-EGRESS":                                       true,
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING": true,
		"-A FORWARD -o trellis0 -j ACCEPT":                                                         true,
		"-A INPUT -s 10.0.0.0/8 -j DROP":                                                           false,
		"-A OUTPUT -d 192.0.2.1/32 -j ACCEPT":                                                      false,
	} {
		if got := oursRule(rule, newChains); got != want {
			t.Errorf("oursRule(%q) = %v, want %v", rule, got, want)
		}
	}
	for c, want := range map[string]bool{"KUBE-SVC-X": true, "CNI-HOSTPORT-DNAT": true, "TRELLIS-E2E-EGRESS": true, "DOCKER": false, "f2b-sshd": false} {
		if got := oursChain(c); got != want {
			t.Errorf("oursChain(%q) = %v", c, got)
		}
	}
}
