package demo

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
)

// Names egress-reporter reads and writes (docs/egress-reporter.md).
const (
	egressAddressAnnotation = "trellis.dev/egress-address"
	egressStatic            = "198.51.100.0/24"
	egressProbed            = "203.0.113.50"
)

// egressScenario: shoot-info exists with gardenlet's keys; the probe on a node
// asks a loopback STUN server for its public address (which answers
// 203.0.113.50, as a NAT gateway would) and annotates its Node; the reporter
// merges it (after the add hysteresis) with a static list and publishes
// egressCIDRs in kube-system/shoot-info, owning only that key.
type egressScenario struct {
	d        *Demo
	probe    *proc
	reporter *proc
	stun     *probetest.STUNServer
	node     string
	started  atomic.Bool
	proven   atomic.Bool
}

func (s *egressScenario) name() string { return "egress-reporter" }

func (s *egressScenario) start(ctx context.Context, d *Demo) error {
	s.d = d
	s.node = "shoot-worker-egress-1"
	c := d.env.Client
	if _, err := c.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: s.node}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// shoot-info as gardenlet writes it, without egressCIDRs.
	if _, err := c.CoreV1().ConfigMaps("kube-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "shoot-info"},
		Data:       map[string]string{"projectName": "garden", "shootName": "alpha", "region": "westeurope"},
	}, metav1.CreateOptions{FieldManager: "gardenlet"}); err != nil {
		return err
	}
	if err := try(func() { s.stun = probetest.NewSTUNServer(d.tb, "udp4") }); err != nil {
		return err
	}
	s.stun.Set(probetest.Answer, netip.MustParseAddr(egressProbed))
	probe, err := d.launch(ctx, "egress-probe", d.bin("egress-reporter"), []string{"probe",
		"--kubeconfig=" + d.env.Kubeconfig, "--node.name=" + s.node,
		"--probe.stun.servers=" + s.stun.Addr, "--probe.interval=2s", "--probe.timeout=2s",
		"--web.listen-address=127.0.0.1:0",
	}, nil, "serving web endpoints")
	if err != nil {
		return err
	}
	s.probe = probe
	reporter, err := d.launch(ctx, "egress-reporter", d.bin("egress-reporter"), []string{
		"--kubeconfig=" + d.env.Kubeconfig, "--egress.sources=probe,static", "--static.cidrs=" + egressStatic,
		// A probed address must be seen this long before it is published; the
		// default (2m) is shortened so the demo shows both steps quickly.
		"--hysteresis.add=3s", "--sync.interval=1s",
		"--web.listen-address=127.0.0.1:0",
	}, nil, "serving web endpoints")
	if err != nil {
		return err
	}
	s.reporter = reporter
	s.started.Store(true)
	return nil
}

func (s *egressScenario) status(ctx context.Context) Status {
	st := Status{}
	if !s.started.Load() {
		st.Lines = []string{"starting"}
		return st
	}
	st.Endpoints = []string{endpoint("egress-reporter", s.reporter), endpoint("egress-reporter probe", s.probe),
		fmt.Sprintf("%-22s udp %s (answers %s)", "STUN server", s.stun.Addr, egressProbed)}
	rm := scrape(ctx, s.reporter.addr("serving web endpoints"))
	pm := scrape(ctx, s.probe.addr("serving web endpoints"))
	annotation := ""
	if n, err := s.d.env.Client.CoreV1().Nodes().Get(ctx, s.node, metav1.GetOptions{}); err == nil {
		annotation = n.Annotations[egressAddressAnnotation]
	}
	cm, err := s.d.env.Client.CoreV1().ConfigMaps("kube-system").Get(ctx, "shoot-info", metav1.GetOptions{})
	value := "(absent)"
	var keys []string
	if err == nil {
		if v, ok := cm.Data["egressCIDRs"]; ok {
			value = v
		}
		for k := range cm.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
	}
	st.Lines = append(st.Lines,
		fmt.Sprintf("probe: STUN requests %d  attempts ok %.0f  node %s annotation %s=%q", s.stun.Requests(),
			pm.sum("trellis_egress_probe_attempts_total", "result", "success"), s.node, egressAddressAnnotation, annotation),
		fmt.Sprintf("reporter: published %.0f  pending (hysteresis) %.0f  changes %.0f  applies ok %.0f",
			rm.sum("trellis_egress_reporter_published_cidrs"), rm.sum("trellis_egress_reporter_pending_cidrs"),
			rm.sum("trellis_egress_reporter_changes_total"), rm.sum("trellis_egress_reporter_applies_total", "result", "success")),
		fmt.Sprintf("kube-system/shoot-info egressCIDRs=%s  (keys: %s)", value, strings.Join(keys, ",")),
	)
	if value == egressStatic+","+egressProbed+"/32" && cm.Data["shootName"] == "alpha" {
		s.proven.Store(true)
	}
	st.Proven = s.proven.Load()
	st.Proof = "shoot-info has egressCIDRs=" + egressStatic + "," + egressProbed + "/32 (static + probed), gardenlet's keys untouched"
	return st
}
