package zoneflow

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-garden/trellis/internal/conntrack"
	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
)

// NewCommand builds the zone-flow-tracer command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "Bytes between availability zones per workload, from conntrack, with cost",
		Long: `zone-flow-tracer runs on every node (DaemonSet, host network, NET_ADMIN) and reads the
node's conntrack table through ctnetlink: periodic dumps account long-lived flows by
their counter deltas, DESTROY events account short ones. Each address is resolved to
a zone (Nodes: InternalIP, podCIDRs, label topology.kubernetes.io/zone), a namespace
and workload (this node's pods), or a CIDR class (same region, other region,
internet). Every byte is counted once cluster-wide: by the node of the endpoint that
sent it, or by the receiving node when the sender is outside the cluster. Exposes
Prometheus counters of bytes, packets and estimated cost, and /flows with the top
talkers.`,
		ListenAddress: ":8085",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o) },
	})
}

func run(ctx context.Context, d *daemon.Daemon, o *Options) error {
	client, _, err := o.Kube.Clientset(Name)
	if err != nil {
		return err
	}
	conn, err := conntrack.Dial(conntrack.Options{ReadBuffer: o.EventBuffer})
	if err != nil {
		return err
	}
	defer conn.Close()
	return runWith(ctx, d, o, client, conn)
}

// runWith is run with the clients given: the tests pass a conntrack source of
// their own.
func runWith(ctx context.Context, d *daemon.Daemon, o *Options, client kubernetes.Interface, src FlowSource) error {
	m := newMetrics(d.Namespace)
	d.Registry.MustRegister(m.collectors()...)

	// Nodes cluster-wide (zones, InternalIPs, podCIDRs of every node), stripped to
	// those fields; Pods of this node only unless --enrich.cluster-pods.
	nodeFactory := informers.NewSharedInformerFactory(client, 0)
	nodeInf := nodeFactory.Core().V1().Nodes()
	podFactory := kube.NewNodeInformers(client, o.Node.Name, 0).Pods
	if o.ClusterPods {
		podFactory = informers.NewSharedInformerFactory(client, 0)
	}
	podInf := podFactory.Core().V1().Pods()
	if err := nodeInf.Informer().SetTransform(stripNode); err != nil {
		return fmt.Errorf("node informer transform: %w", err)
	}
	if err := podInf.Informer().SetTransform(stripPod); err != nil {
		return fmt.Errorf("pod informer transform: %w", err)
	}
	t := &tracer{
		node: o.Node.Name, src: src, m: m, log: d.Logger, interval: o.DumpInterval, top: o.Top, procfs: o.ProcFS,
		p:     NewProcessor(o.MaxRecords),
		nodes: nodeInf.Lister(), pods: podInf.Lister(),
		region: o.sameRegion, other: o.otherRegion,
		dirty: make(chan struct{}, 1), resync: make(chan struct{}, 1), gate: daemon.NewGate(),
		state: o.StateFile, stateMaxFlows: o.StateMaxFlows, stateMaxAge: o.StateMaxAge, finalTimeout: DefaultFinalDumpTimeout,
		gc: newGCTuner(),
	}
	if !o.CountExisting {
		t.p.BaselineFirstDump()
	}
	if o.StateFile != "" {
		id, err := selfIdentity(o.ProcFS)
		if err != nil {
			return fmt.Errorf("--state.file: %w", err)
		}
		t.id = id
	}
	changed := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { t.markDirty() },
		UpdateFunc: func(any, any) { t.markDirty() },
		DeleteFunc: func(any) { t.markDirty() },
	}
	if _, err := nodeInf.Informer().AddEventHandler(changed); err != nil {
		return err
	}
	if _, err := podInf.Informer().AddEventHandler(changed); err != nil {
		return err
	}
	d.Ready.Add("informers", kube.HasSynced(nodeInf.Informer(), podInf.Informer()))
	d.Ready.Add("conntrack", t.gate.Check)
	// The informers stop with the daemon, and it returns only once they have:
	// nothing of client-go outlives run.
	ictx, stop := context.WithCancel(ctx)
	defer func() {
		stop()
		nodeFactory.Shutdown()
		podFactory.Shutdown()
	}()
	nodeFactory.Start(ictx.Done())
	podFactory.Start(ictx.Done())
	for _, f := range []informers.SharedInformerFactory{nodeFactory, podFactory} {
		for typ, ok := range f.WaitForCacheSync(ictx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync: %w", typ, context.Cause(ctx))
			}
		}
	}
	t.rebuildIndex()

	provider := o.Provider
	if provider == "auto" {
		provider = "none"
		if n := t.ownNode(); n != nil {
			provider = providerFromID(n.Spec.ProviderID)
		}
	}
	prices, err := DefaultPrices(provider)
	if err != nil {
		return err
	}
	if o.PricesFile != "" {
		if prices, err = LoadPrices(o.PricesFile, prices); err != nil {
			return err
		}
	}
	t.prices = prices
	own := t.ownNode()
	zone := ""
	if own != nil {
		zone = own.Labels[ZoneLabel]
	}
	if own == nil || zone == "" {
		d.Logger.Warn("own node has no zone label: its traffic is reported with zone unknown", "node", o.Node.Name, "label", ZoneLabel)
	}
	d.Logger.Info("price table", "provider", provider, "prices", prices, "zone", zone)
	d.Registry.MustRegister(newFlowCollector(d.Namespace, t.p, o.Labels, prices))

	setupAccounting(t, o)
	t.loadState()
	d.Mux.Handle("/flows", t)
	d.Go("index", t.indexLoop)
	// The event listener outlives ctx: at shutdown the final dump needs the
	// DESTROY events of the entries it misses. dumpLoop stops it when done.
	ectx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEvents()
	d.Go("events", func(context.Context) error { return t.eventLoop(ectx) })
	return t.dumpLoop(ctx, stopEvents)
}

// setupAccounting switches nf_conntrack_acct on when allowed and warns loudly
// when it stays off: without it every byte counter is zero.
func setupAccounting(t *tracer, o *Options) {
	on, err := conntrack.Accounting(o.ProcFS)
	if err != nil {
		t.log.Warn("cannot read conntrack accounting sysctl", "err", err)
	}
	if !on && o.EnableAccounting && err == nil {
		if err := conntrack.SetAccounting(o.ProcFS, true); err != nil {
			t.log.Warn("cannot switch conntrack accounting on", "err", err)
		} else {
			on = true
			t.log.Info("switched conntrack accounting on", "sysctl", "net.netfilter.nf_conntrack_acct")
		}
	}
	if !on {
		t.log.Warn("conntrack accounting is off: flows carry no byte counters and traffic is not measured; set net.netfilter.nf_conntrack_acct=1 or allow --conntrack.accounting",
			"sysctl", "net.netfilter.nf_conntrack_acct")
	}
	t.accounting.Store(on)
	t.m.accounting.Set(boolFloat(on))
}
