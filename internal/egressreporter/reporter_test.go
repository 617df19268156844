package egressreporter

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestSeedMode runs the reporter as in a seed: the Infrastructure (Gardener's
// real CRD) in the shared API server (the seed), shoot-info and the Nodes in a
// second API server (the shoot). It walks through publication, the add and remove
// hysteresis on a controllable clock, a restart that adopts the published value,
// gardenlet dropping the key, and removal of the key; gardenlet's keys survive
// every write.
func TestSeedMode(t *testing.T) {
	seed := testenv.Get(t)
	installInfrastructureCRD(t, seed)
	ns := seed.Namespace(t)
	setInfrastructure(t, seed, ns, "crocus", []string{"63.177.125.178", "3.74.173.24/32", "not-a-cidr"})
	shoot := startShoot(t)
	writeShootInfoAsGardenlet(t, shoot.Client, nil)
	base := time.Now().UTC().Truncate(time.Second)
	annotateNode(t, shoot.Client, "node-a", "203.0.113.7", base)
	annotateNode(t, shoot.Client, "node-b", "garbage", base) // invalid: ignored, counted

	o := testOptions(SourceInfrastructure, SourceProbe)
	o.InfraNamespace = ns
	clock := &fakeClock{now: base}
	r := testReporter(t, o, seed.Config, shoot.Config, clock)

	// Infrastructure CIDRs at once; the probed address waits for --hysteresis.add.
	const infra = "3.74.173.24/32,63.177.125.178/32"
	syncUntil(t, r, shoot.Client, infra)
	checkShootInfo(t, shoot.Client, infra)
	if got := testutil.ToFloat64(r.m.pending); got != 1 {
		t.Fatalf("pending_cidrs = %v, want 1", got)
	}
	if testutil.ToFloat64(r.m.sourceProblems.WithLabelValues(SourceInfrastructure)) == 0 || testutil.ToFloat64(r.m.probeNodes.WithLabelValues("invalid")) != 1 {
		t.Fatal("invalid entries not counted")
	}
	testkit.Eventually(t, "the change Event", func() bool { return len(eventsWith(t, shoot.Client, ReasonChanged)) == 1 })

	clock.Set(base.Add(DefaultHysteresisAdd))
	const all = "3.74.173.24/32,63.177.125.178/32,203.0.113.7/32"
	syncUntil(t, r, shoot.Client, all)
	checkShootInfo(t, shoot.Client, all)
	if got := testutil.ToFloat64(r.m.changes); got != 2 {
		t.Fatalf("changes_total = %v, want 2", got)
	}

	// gardenlet rewrites its keys (an Update of the whole object): ours stays.
	gardenletKeys["kubernetesVersion"] = "1.37.3"
	writeShootInfoAsGardenlet(t, shoot.Client, nil)
	checkShootInfo(t, shoot.Client, all)

	// A restart (or a new leader): the new reporter adopts the published value,
	// neither announcing it again nor dropping the probed address it has not
	// confirmed itself.
	annotateNode(t, shoot.Client, "node-a", "203.0.113.8", base.Add(DefaultHysteresisAdd)) // the node's address changed
	clock.Set(base.Add(DefaultHysteresisAdd + time.Second))
	r2 := testReporter(t, o, seed.Config, shoot.Config, clock)
	syncUntil(t, r2, shoot.Client, all)
	if got := testutil.ToFloat64(r2.m.changes); got != 0 {
		t.Fatalf("restarted reporter counted %v changes", got)
	}

	// gardenlet's resource manager rewrites shoot-info without our key: the next
	// resync puts it back.
	writeShootInfoAsGardenlet(t, shoot.Client, map[string]string{EgressCIDRsKey: ""})
	syncUntil(t, r2, shoot.Client, all)
	checkShootInfo(t, shoot.Client, all)

	// The provider empties the Infrastructure status: nothing changes before
	// --hysteresis.remove. The new probed address is published after add.
	setInfrastructure(t, seed, ns, "crocus", nil)
	clock.Set(base.Add(2*DefaultHysteresisAdd + time.Second))
	testkit.Eventually(t, "the empty Infrastructure in the cache", func() bool {
		ps, _ := r2.sources[0].observe(clock.Now())
		return len(ps) == 0
	})
	const moved = "3.74.173.24/32,63.177.125.178/32,203.0.113.7/32,203.0.113.8/32"
	syncUntil(t, r2, shoot.Client, moved)

	// --hysteresis.remove later, what was not seen since is gone; node-a's probe
	// has refreshed its annotation.
	t2 := base.Add(2*DefaultHysteresisAdd + time.Second + DefaultHysteresisRemove)
	annotateNode(t, shoot.Client, "node-a", "203.0.113.8", t2)
	testkit.Eventually(t, "the refreshed annotation in the cache", func() bool {
		ps, _ := r2.sources[1].observe(t2)
		return FormatCIDRs(ps) == "203.0.113.8/32"
	})
	clock.Set(t2)
	syncUntil(t, r2, shoot.Client, "203.0.113.8/32")
	// node-a's probe stops: its annotation expires after --probe.max-age, the
	// address goes --hysteresis.remove later.
	clock.Set(t2.Add(DefaultProbeMaxAge)) // last moment the annotation counts
	syncUntil(t, r2, shoot.Client, "203.0.113.8/32")
	clock.Set(t2.Add(DefaultProbeMaxAge + DefaultHysteresisRemove - time.Second))
	syncUntil(t, r2, shoot.Client, "203.0.113.8/32")
	clock.Set(t2.Add(DefaultProbeMaxAge + DefaultHysteresisRemove))
	syncUntil(t, r2, shoot.Client, "")
	checkShootInfo(t, shoot.Client, "")
	if got := testutil.ToFloat64(r2.m.published.WithLabelValues("ipv4")); got != 0 {
		t.Fatalf("published_cidrs = %v after removal", got)
	}
}

// TestConflictNeverForced: gardenlet owns egressCIDRs with another value. The
// reporter reports the conflict (metric, Warning Event) and leaves the value
// alone; once gardenlet drops the key, the reporter publishes its own.
func TestConflictNeverForced(t *testing.T) {
	shoot := startShoot(t)
	// Nothing known: no shoot-info is created.
	empty := testReporter(t, testOptions(SourceProbe), shoot.Config, shoot.Config, &fakeClock{now: time.Now()})
	testkit.Eventually(t, "an empty sync", func() bool { return empty.Sync(context.Background(), true) == nil })
	if _, err := shoot.Client.CoreV1().ConfigMaps(ShootInfoNamespace).Get(context.Background(), ShootInfoName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("shoot-info created without a value: %v", err)
	}
	writeShootInfoAsGardenlet(t, shoot.Client, map[string]string{EgressCIDRsKey: "1.2.3.4/32"})
	o := testOptions(SourceStatic)
	o.StaticCIDRs = []string{"203.0.113.0/28"}
	clock := &fakeClock{now: time.Now()}
	r := testReporter(t, o, shoot.Config, shoot.Config, clock)
	if err := r.Sync(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.m.applies.WithLabelValues(resultConflict)); got != 1 {
		t.Fatalf("conflicts = %v, want 1", got)
	}
	checkShootInfo(t, shoot.Client, "1.2.3.4/32")
	testkit.Eventually(t, "the conflict Event", func() bool {
		ev := eventsWith(t, shoot.Client, ReasonConflict)
		return len(ev) == 1 && ev[0].Type == "Warning" && strings.Contains(ev[0].Message, "gardenlet")
	})
	// The same conflict again: no second Event, still counted.
	if err := r.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.m.applies.WithLabelValues(resultConflict)); got != 2 {
		t.Fatalf("conflicts = %v, want 2 (a conflicted apply is retried)", got)
	}

	// gardenlet writes the same value as ours: shared ownership, no conflict.
	writeShootInfoAsGardenlet(t, shoot.Client, map[string]string{EgressCIDRsKey: "203.0.113.0/28"})
	syncUntil(t, r, shoot.Client, "203.0.113.0/28")
	if got := testutil.ToFloat64(r.m.applies.WithLabelValues(resultSuccess)); got == 0 {
		t.Fatal("no successful apply with shared ownership")
	}
	// gardenlet drops the key: ours is written back by the next resync.
	writeShootInfoAsGardenlet(t, shoot.Client, map[string]string{EgressCIDRsKey: ""})
	syncUntil(t, r, shoot.Client, "203.0.113.0/28")
	checkShootInfo(t, shoot.Client, "203.0.113.0/28")
}

// TestAPIServerOutage: the shoot's API server becomes unreachable while the
// reporter runs. Readiness turns false, the sync is retried with backoff, and
// after the outage shoot-info is written and readiness is back.
func TestAPIServerOutage(t *testing.T) {
	shoot := startShoot(t)
	writeShootInfoAsGardenlet(t, shoot.Client, nil)
	px := newProxy(t, strings.TrimPrefix(shoot.Config.Host, "https://"))
	cfg := rest.CopyConfig(shoot.Config)
	cfg.Host = "https://" + px.addr()
	cfg.Timeout = 2 * time.Second

	o := testOptions(SourceStatic)
	o.StaticCIDRs = []string{"203.0.113.1"}
	o.Config.SyncInterval = 100 * time.Millisecond
	clock := &fakeClock{now: time.Now()}
	r := testReporter(t, o, cfg, cfg, clock)
	var mu sync.Mutex
	var ready error = errors.New("not yet")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(err error) { mu.Lock(); ready = err; mu.Unlock() })
	}()
	t.Cleanup(func() { cancel(); <-done })
	isReady := func() bool { mu.Lock(); defer mu.Unlock(); return ready == nil }

	testkit.Eventually(t, "readiness", isReady)
	checkShootInfo(t, shoot.Client, "203.0.113.1/32")

	px.setDown(true)
	testkit.Eventually(t, "readiness to fail", func() bool { return !isReady() })
	if testutil.ToFloat64(r.m.applies.WithLabelValues(resultError)) == 0 {
		t.Fatal("failed applies not counted")
	}
	// Meanwhile someone drops the key (writing directly, not through the proxy).
	writeShootInfoAsGardenlet(t, shoot.Client, map[string]string{EgressCIDRsKey: ""})
	px.setDown(false)
	testkit.Eventually(t, "readiness after the outage", isReady)
	testkit.Eventually(t, "the key written back", func() bool {
		return shootInfo(t, shoot.Client).Data[EgressCIDRsKey] == "203.0.113.1/32"
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	done <- nil // for the cleanup
}
