package zoneflow

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

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
	ListenDestroy(ctx context.Context, ready func(), fn func(conntrack.EventType, *conntrack.Flow)) error
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

	dirty      chan struct{} // Node or Pod changed
	resync     chan struct{} // events were lost: dump now
	gate       *daemon.Gate
	accounting atomic.Bool
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

// dump runs one full dump through the processor.
func (t *tracer) dump(ctx context.Context) error {
	t.checkAccounting()
	start := time.Now()
	t.p.BeginDump()
	err := t.src.Dump(ctx, t.p.Observe)
	if err != nil {
		t.m.dumps.WithLabelValues("error").Inc()
		return err
	}
	t.p.EndDump()
	t.m.dumpDuration.Observe(time.Since(start).Seconds())
	t.m.dumps.WithLabelValues("success").Inc()
	return nil
}

func (t *tracer) dumpLoop(ctx context.Context) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		if err := t.dump(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			t.log.Warn("conntrack dump failed", "err", err)
			t.gate.Set(err)
		} else {
			t.gate.Set(nil)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-t.resync:
		}
	}
}

// eventLoop accounts DESTROY events (short flows end between two dumps) and
// reopens the socket after failures; an overflow triggers a resync dump.
func (t *tracer) eventLoop(ctx context.Context) error {
	wait := time.Second
	for {
		err := t.src.ListenDestroy(ctx, nil, func(typ conntrack.EventType, f *conntrack.Flow) {
			if typ == conntrack.EventDestroy {
				t.p.Destroy(f)
			}
		})
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, conntrack.ErrOverflow) {
			t.m.overflows.Inc()
			t.log.Warn("conntrack events lost, resyncing by dump", "err", err)
			select {
			case t.resync <- struct{}{}:
			default:
			}
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
