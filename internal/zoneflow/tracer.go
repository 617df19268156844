package zoneflow

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	listersv1 "k8s.io/client-go/listers/core/v1"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/daemon"
)

// FlowSource is what the tracer needs from conntrack: conntrack.Conn in
// production, conntrack.Fake in unit tests.
type FlowSource interface {
	Dump(ctx context.Context, fn func(*conntrack.Flow)) error
	Listen(ctx context.Context, h conntrack.Handlers) error
}

// indexRebuildSpacing: a rollout changes many pods at once; rebuilding the index
// at most once a second keeps that to one rebuild per second of churn, and a new
// pod's flows resolve within about a second.
const indexRebuildSpacing = time.Second

// tracer runs the data path: dumps, DESTROY events, index rebuilds, /flows.
type tracer struct {
	node     string
	src      FlowSource
	p        *Processor
	m        *metrics
	log      *slog.Logger
	interval time.Duration
	top      int
	prices   Prices
	procfs   string

	nodes listersv1.NodeLister
	pods  listersv1.PodLister
	// region and other are --network.*-cidrs.
	region, other []netip.Prefix

	// state is --state.file ("" for none); see state.go.
	state         string
	stateMaxFlows int
	stateMaxAge   time.Duration
	finalTimeout  time.Duration
	id            identity

	dirty      chan struct{} // Node or Pod changed
	resync     chan struct{} // events were lost: dump now
	gate       *daemon.Gate
	accounting atomic.Bool
	// listening, if set, is called when the event listener has joined its group.
	listening func()
	// eventsUp: the event listener is running (the final dump waits for it).
	eventsUp atomic.Bool
	// gc, if set, tunes GOGC to the flow table after each dump (gctune.go).
	gc *gcTuner
}

func (t *tracer) markDirty() {
	select {
	case t.dirty <- struct{}{}:
	default:
	}
}

// rebuildIndex builds the address index from the informer caches.
func (t *tracer) rebuildIndex() {
	nodes, _ := t.nodes.List(labels.Everything())
	pods, _ := t.pods.List(labels.Everything())
	ni := make([]nodeInfo, 0, len(nodes))
	for _, n := range nodes {
		ni = append(ni, nodeInfoOf(n))
	}
	pi := make([]podInfo, 0, len(pods))
	for _, p := range pods {
		if info, ok := podInfoOf(p); ok {
			pi = append(pi, info)
		}
	}
	ix := buildIndex(t.node, ni, pi, t.region, t.other)
	t.p.SetIndex(ix)
	t.m.indexRebuilds.Inc()
	t.m.indexEndpoints.Set(float64(len(ix.exact) + len(ix.prefixes)))
}

func (t *tracer) indexLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.dirty:
		}
		t.rebuildIndex()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(indexRebuildSpacing):
		}
	}
}

// dump runs one full dump through the processor and returns its epoch. It
// runs on one locked OS thread, whose CPU time is the dump's: the kernel
// building the dump's messages (in the thread's recvmsg calls), decoding and
// accounting.
func (t *tracer) dump(ctx context.Context) (uint32, error) {
	t.checkAccounting()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU()
	start := time.Now()
	epoch := t.p.BeginDump()
	entries := 0
	err := t.src.Dump(ctx, func(f *conntrack.Flow) {
		entries++
		t.p.Observe(f)
	})
	if err != nil {
		t.m.dumps.WithLabelValues("error").Inc()
		t.m.dumpCPU.Add((threadCPU() - cpu).Seconds())
		return epoch, err
	}
	t.p.EndDump()
	t.m.dumpDuration.Observe(time.Since(start).Seconds())
	t.m.dumpCPU.Add((threadCPU() - cpu).Seconds())
	t.m.dumpEntries.Set(float64(entries))
	t.m.dumps.WithLabelValues("success").Inc()
	if t.gc != nil {
		t.gc.tune(t.p.TableBytes())
	}
	return epoch, nil
}

// threadCPU is the calling thread's CPU time (user and system).
func threadCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_THREAD, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dumpLoop dumps every interval and at once after an event overflow. When ctx
// ends it runs a final dump, waits for the DESTROY events of the entries that
// dump missed, writes the state file and only then stops the event listener
// (stopEvents).
func (t *tracer) dumpLoop(ctx context.Context, stopEvents func()) error {
	defer stopEvents()
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		if _, err := t.dump(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			t.log.Warn("conntrack dump failed", "err", err)
			t.gate.Set(err)
		} else {
			t.gate.Set(nil)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		case <-t.resync:
			continue
		}
		break
	}
	t.finish(context.WithoutCancel(ctx))
	return nil
}

// finish is the shutdown path: a final dump (the bytes since the last one) and
// the state file.
func (t *tracer) finish(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, t.finalTimeout)
	defer cancel()
	epoch, err := t.dump(ctx)
	if err != nil {
		t.log.Warn("final conntrack dump failed", "err", err)
		if t.state != "" {
			t.m.stateSaves.WithLabelValues("error").Inc()
			t.log.Warn("state file not written: without a final dump its counters would be old", "path", t.state)
		}
		return
	}
	// Entries the final dump missed ended before it: their DESTROY events are
	// queued or already read.
	if t.eventsUp.Load() && !t.p.WaitEventsIdle(ctx, epoch) {
		t.log.Warn("event reader did not catch up with the final dump", "timeout", t.finalTimeout.String())
	}
	if t.state == "" {
		return
	}
	s := t.p.saveState(t.stateMaxFlows)
	s.bootID, s.netns, s.written = t.id.bootID, t.id.netns, time.Now()
	if err := writeState(t.state, encodeState(s)); err != nil {
		t.m.stateSaves.WithLabelValues("error").Inc()
		t.log.Warn("cannot write state file", "path", t.state, "err", err)
		return
	}
	t.m.stateSaves.WithLabelValues("success").Inc()
	if !s.complete {
		t.log.Warn("state file holds only part of the open flows", "path", t.state, "flows", len(s.flows), "limit", t.stateMaxFlows)
	}
	t.log.Info("state file written", "path", t.state, "flows", len(s.flows), "records", len(s.records))
}

// loadState restores the previous run's state file, if any and usable.
func (t *tracer) loadState() {
	if t.state == "" {
		return
	}
	s, result, err := readState(t.state, t.stateMaxFlows, t.stateMaxAge, t.id, time.Now())
	t.m.stateLoads.WithLabelValues(result).Inc()
	switch result {
	case loadMissing:
		t.log.Info("no state file: open flows start from a baseline", "path", t.state)
		return
	case loadRestored:
	default:
		t.log.Warn("state file ignored: open flows start from a baseline", "path", t.state, "reason", result, "err", err)
		return
	}
	t.p.restoreState(s)
	t.log.Info("state file restored", "path", t.state, "flows", len(s.flows), "records", len(s.records), "complete", s.complete,
		"age", time.Since(s.written).Round(time.Millisecond).String())
}

// eventLoop accounts DESTROY events (short flows end between two dumps) and
// reopens the socket after failures; an overflow triggers a resync dump while
// the listener goes on reading what is queued.
func (t *tracer) eventLoop(ctx context.Context) error {
	wait := time.Second
	for {
		err := t.src.Listen(ctx, conntrack.Handlers{
			Ready: t.onListening,
			Event: func(typ conntrack.EventType, f *conntrack.Flow) {
				if typ == conntrack.EventDestroy {
					t.p.Destroy(f)
				}
			},
			Idle:     t.p.EventsIdle,
			Overflow: t.overflow,
		})
		t.eventsUp.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, conntrack.ErrOverflow) {
			t.overflow()
			wait = time.Second
			continue
		}
		t.m.listenErrors.Inc()
		t.log.Warn("conntrack event socket failed, reopening", "err", err, "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (t *tracer) onListening() {
	t.eventsUp.Store(true)
	if t.listening != nil {
		t.listening()
	}
}

func (t *tracer) overflow() {
	t.m.overflows.Inc()
	t.log.Warn("conntrack events lost, resyncing by dump")
	select {
	case t.resync <- struct{}{}:
	default:
	}
}

// checkAccounting keeps accounting_enabled in step with the sysctl; someone may
// switch it off under us.
func (t *tracer) checkAccounting() {
	if t.procfs == "" {
		return
	}
	on, err := conntrack.Accounting(t.procfs)
	if err != nil {
		return
	}
	if t.accounting.Swap(on) && !on {
		t.log.Warn("conntrack accounting switched off: new flows carry no byte counters", "sysctl", "net.netfilter.nf_conntrack_acct")
	}
	t.m.accounting.Set(boolFloat(on))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// FlowRecord is one entry of /flows.
type FlowRecord struct {
	SourceZone      string  `json:"sourceZone"`
	DestinationZone string  `json:"destinationZone"`
	Direction       string  `json:"direction"`
	Class           string  `json:"class"`
	Namespace       string  `json:"namespace,omitempty"`
	Workload        string  `json:"workload,omitempty"`
	Bytes           uint64  `json:"bytes"`
	Packets         uint64  `json:"packets"`
	CostDollars     float64 `json:"costDollars"`
}

// FlowSummary is the /flows document: this node's top talkers since start.
type FlowSummary struct {
	Node         string       `json:"node"`
	Accounting   bool         `json:"accounting"`
	TrackedFlows int          `json:"trackedFlows"`
	Records      int          `json:"records"`
	Top          []FlowRecord `json:"top"`
}

func (t *tracer) summary() FlowSummary {
	recs, _, tracked := t.p.snapshot()
	s := FlowSummary{Node: t.node, Accounting: t.accounting.Load(), TrackedFlows: tracked, Records: len(recs), Top: []FlowRecord{}}
	for _, r := range top(recs, t.top) {
		s.Top = append(s.Top, FlowRecord{
			SourceZone: r.key.srcZone, DestinationZone: r.key.dstZone, Direction: directionNames[r.key.direction],
			Class: r.key.class, Namespace: r.key.namespace, Workload: r.key.workload,
			Bytes: r.bytes, Packets: r.packets, CostDollars: float64(r.bytes) / gib * t.prices[r.key.class],
		})
	}
	return s
}

// ServeHTTP serves /flows.
func (t *tracer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(t.summary())
}

// ownNode returns this node from the cache (nil when not there).
func (t *tracer) ownNode() *corev1.Node {
	n, err := t.nodes.Get(t.node)
	if err != nil {
		return nil
	}
	return n
}
