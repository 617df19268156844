package egressreporter

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trellis-garden/trellis/internal/egressprobe"
	"github.com/trellis-garden/trellis/internal/egressprobe/probetest"
	"github.com/trellis-garden/trellis/internal/testenv"
)

// TestProbeAnnotatesNode runs the probe loop's rounds against a loopback STUN
// server and HTTP echo and the real API server: the address lands on the Node,
// an unchanged address is not rewritten before --probe.refresh, a failing round
// leaves the last address with its age, the echo URL is the fallback, and the
// probe owns only its two annotations.
func TestProbeAnnotatesNode(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	name := "probe-" + env.Namespace(t)
	if _, err := env.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
		Annotations: map[string]string{"kubelet.example/other": "keep"}}}, metav1.CreateOptions{FieldManager: "kubelet"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })

	stun := probetest.NewSTUNServer(t, "udp4")
	stun.Set(probetest.Answer, netip.MustParseAddr("203.0.113.9"))
	echo := probetest.NewEchoServer(t)
	echo.Set(probetest.Answer, netip.MustParseAddr("198.51.100.77"))
	o := NewProbeOptions()
	o.STUNServers, o.HTTPURLs, o.Families = []string{stun.Addr}, []string{echo.URL}, []string{"ipv4"}
	o.Interval, o.Refresh, o.Timeout = time.Minute, 10*time.Minute, 2*time.Second
	o.Node.Name = name
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	m := newProbeMetrics("test")
	p := newNodeProber(env.Client, o, discard(), m)
	p.prober.RTO = 50 * time.Millisecond
	clock := &fakeClock{now: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
	p.now = clock.Now
	annotations := func() map[string]string {
		n, err := env.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return n.Annotations
	}
	check := func(addr, at string) {
		t.Helper()
		a := annotations()
		if a[AddressAnnotation] != addr || a[ObservedAtAnnotation] != at || a["kubelet.example/other"] != "keep" {
			t.Fatalf("annotations = %v, want address %s at %s", a, addr, at)
		}
	}
	writes := func() float64 { return testutil.ToFloat64(m.writes.WithLabelValues("success")) }

	if err := p.round(ctx); err != nil {
		t.Fatal(err)
	}
	check("203.0.113.9", "2026-11-25T12:00:00Z")

	// Same address a minute later: no write.
	clock.Set(clock.Now().Add(time.Minute))
	if err := p.round(ctx); err != nil || writes() != 1 {
		t.Fatalf("round: %v, writes %v", err, writes())
	}
	// Every server fails: an error, and the annotation keeps its age.
	stun.Set(probetest.Silent, netip.Addr{})
	echo.Set(probetest.Garbage, netip.Addr{})
	clock.Set(clock.Now().Add(time.Minute))
	if err := p.round(ctx); err == nil || !strings.Contains(err.Error(), "no egress address") {
		t.Fatalf("round with every server failing = %v", err)
	}
	check("203.0.113.9", "2026-11-25T12:00:00Z")
	if testutil.ToFloat64(m.attempts.WithLabelValues("ipv4", egressprobe.MethodSTUN, stun.Addr, egressprobe.KindTimeout)) != 1 ||
		testutil.ToFloat64(m.attempts.WithLabelValues("ipv4", egressprobe.MethodHTTP, echo.URL, egressprobe.KindInvalid)) != 1 {
		t.Fatal("failed attempts not counted by kind")
	}
	// STUN still down, the echo URL answers: a new address, written at once.
	echo.Set(probetest.Answer, netip.MustParseAddr("198.51.100.77"))
	clock.Set(clock.Now().Add(time.Minute))
	if err := p.round(ctx); err != nil {
		t.Fatal(err)
	}
	check("198.51.100.77", "2026-11-25T12:03:00Z")
	// Unchanged but older than --probe.refresh: rewritten with the new time.
	clock.Set(clock.Now().Add(10 * time.Minute))
	if err := p.round(ctx); err != nil || writes() != 3 {
		t.Fatalf("refresh: %v, writes %v", err, writes())
	}
	check("198.51.100.77", "2026-11-25T12:13:00Z")
	if testutil.ToFloat64(m.changes) != 2 {
		t.Fatalf("address_changes_total = %v, want 2", testutil.ToFloat64(m.changes))
	}

	// The probe's field manager owns the two annotations and nothing else.
	n, err := env.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range n.ManagedFields {
		if mf.Manager == ProbeFieldManager {
			want := `{"f:metadata":{"f:annotations":{"f:` + AddressAnnotation + `":{},"f:` + ObservedAtAnnotation + `":{}}}}`
			if string(mf.FieldsV1.GetRawBytes()) != want {
				t.Fatalf("probe owns %s, want %s", mf.FieldsV1.GetRawBytes(), want)
			}
		}
	}
}
