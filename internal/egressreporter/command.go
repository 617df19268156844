package egressreporter

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
)

// NewCommand builds the egress-reporter command with its probe subcommand.
func NewCommand() *cobra.Command {
	o := NewOptions()
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "Find a shoot's egress CIDRs and publish them in kube-system/shoot-info",
		Long: `egress-reporter finds the egress CIDRs of a Gardener shoot and publishes them as key
egressCIDRs of the shoot's kube-system/shoot-info ConfigMap, in Gardener's format,
also when the provider extension does not fill Infrastructure.status.egressCIDRs.
Sources (merged): the Infrastructure status in the seed, the addresses that
"egress-reporter probe" (a DaemonSet in the shoot) finds with STUN or an HTTP echo
URL and writes to its Node, and a static list. New probed addresses are published
after --hysteresis.add, vanished ones removed after --hysteresis.remove. It owns
that one key (server-side apply, field manager ` + FieldManager + `) and never
forces over another manager.`,
		ListenAddress: ":8083",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o) },
		Commands:      []*cobra.Command{NewProbeCommand()},
	})
}

// NewProbeCommand builds the "probe" subcommand, the shoot-side DaemonSet.
func NewProbeCommand() *cobra.Command {
	o := NewProbeOptions()
	cmd := daemon.NewCommand(daemon.Spec{
		Name:  ProbeName,
		Short: "Find this node's public egress address (STUN or HTTP echo) and annotate the Node",
		Long: `probe runs on every node of the shoot. Every --probe.interval it asks the STUN servers
(RFC 8489 Binding request), then the echo URLs, in order, for the address its
traffic leaves from, per address family, and writes it to its Node as annotations
` + AddressAnnotation + ` and ` + ObservedAtAnnotation + ` (server-side apply, field manager
` + ProbeFieldManager + `), when it changed or at least every --probe.refresh.`,
		ListenAddress: ":8084",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return runProbe(ctx, d, o) },
	})
	cmd.Use = "probe"
	return cmd
}

func runProbe(ctx context.Context, d *daemon.Daemon, o *ProbeOptions) error {
	client, _, err := o.Kube.Clientset(ProbeName)
	if err != nil {
		return err
	}
	m := newProbeMetrics(d.Namespace)
	d.Registry.MustRegister(m.collectors()...)
	gate := daemon.NewGate()
	d.Ready.Add("probe", gate.Check)
	return newNodeProber(client, o, d.Logger, m).Run(ctx, gate.Set)
}

func run(ctx context.Context, d *daemon.Daemon, o *Options) error {
	seedCfg, err := o.Kube.RESTConfig(Name)
	if err != nil {
		return err
	}
	shootCfg := seedCfg
	if o.ShootKubeconfig != "" {
		if shootCfg, _, err = kube.LoadRESTConfig(o.ShootKubeconfig); err != nil {
			return fmt.Errorf("--shoot.kubeconfig: %w", err)
		}
		shootCfg.QPS, shootCfg.Burst, shootCfg.UserAgent = o.Kube.QPS, o.Kube.Burst, kube.UserAgent(Name)
	}
	seed, err := kubernetes.NewForConfig(seedCfg)
	if err != nil {
		return err
	}
	m := newMetrics(d.Namespace)
	d.Registry.MustRegister(m.collectors()...)

	// Followers are ready (a healthy standby); the leader is ready once shoot-info
	// is as wanted.
	var gate atomic.Pointer[daemon.Gate]
	d.Ready.Add("reporter", func(ctx context.Context) error {
		if g := gate.Load(); g != nil {
			return g.Check(ctx)
		}
		return nil
	})
	onLeading := func(leading bool) {
		if leading {
			m.leader.Set(1)
		} else {
			m.leader.Set(0)
		}
	}
	if !o.LeaderElection.Enabled {
		onLeading(true)
	}
	return o.LeaderElection.RunOrLead(ctx, seed, d.Logger, onLeading, func(ctx context.Context) error {
		g := daemon.NewGate()
		gate.Store(g)
		defer gate.Store(nil)
		return lead(ctx, d, o, seedCfg, shootCfg, m, g)
	})
}

// lead runs the reporter while this replica leads: informers, sources, sync loop.
func lead(ctx context.Context, d *daemon.Daemon, o *Options, seedCfg, shootCfg *rest.Config, m *metrics, gate *daemon.Gate) error {
	shoot, err := kubernetes.NewForConfig(shootCfg)
	if err != nil {
		return err
	}
	recorder, stopEvents := kube.NewEventRecorder(shoot, Name)
	defer stopEvents()
	r, start, err := buildReporter(o, seedCfg, shootCfg, shoot, m, d.Logger, recorder)
	if err != nil {
		return err
	}
	start(ctx)
	d.Logger.Info("reporting egress CIDRs", "sources", o.Sources, "shootInfo", ShootInfoNamespace+"/"+ShootInfoName)
	return r.Run(ctx, gate.Set)
}

// buildReporter wires the sources of o to a Reporter; start starts their
// informers (they stop with ctx).
func buildReporter(o *Options, seedCfg, shootCfg *rest.Config, shoot kubernetes.Interface, m *metrics, log *slog.Logger, recorder record.EventRecorder) (*Reporter, func(ctx context.Context), error) {
	var sources []source
	var starters []func(<-chan struct{})
	r := newReporter(shoot, nil, o.Config, log, m, recorder)
	trigger := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.Trigger() },
		UpdateFunc: func(any, any) { r.Trigger() },
		DeleteFunc: func(any) { r.Trigger() },
	}
	for _, name := range o.Sources {
		switch name {
		case SourceStatic:
			sources = append(sources, &staticSource{prefixes: o.static})
		case SourceInfrastructure:
			dyn, err := dynamic.NewForConfig(seedCfg)
			if err != nil {
				return nil, nil, err
			}
			f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, o.InfraNamespace, nil)
			inf := f.ForResource(InfrastructureGVR)
			if _, err := inf.Informer().AddEventHandler(trigger); err != nil {
				return nil, nil, err
			}
			sources = append(sources, &infrastructureSource{lister: inf.Lister().ByNamespace(o.InfraNamespace), hasSynced: inf.Informer().HasSynced})
			starters = append(starters, f.Start)
		case SourceProbe:
			md, err := metadata.NewForConfig(shootCfg)
			if err != nil {
				return nil, nil, err
			}
			f := metadatainformer.NewSharedInformerFactory(md, 0)
			inf := f.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "nodes"})
			if _, err := inf.Informer().AddEventHandler(trigger); err != nil {
				return nil, nil, err
			}
			sources = append(sources, &probeSource{lister: inf.Lister(), hasSynced: inf.Informer().HasSynced, maxAge: o.ProbeMaxAge})
			starters = append(starters, f.Start)
		}
	}
	r.sources = sources
	start := func(ctx context.Context) {
		for _, s := range starters {
			s(ctx.Done())
		}
	}
	return r, start, nil
}
