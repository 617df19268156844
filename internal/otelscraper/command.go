// Package otelscraper is otel-shoot-scraper: it scrapes the node-local metrics
// endpoints of a shoot node (kubelet, cAdvisor, node-exporter, annotated pods,
// static targets), filters them by rules operators change at run time, converts
// them to OTLP and pushes them through a bounded on-disk queue, so receiver
// outages and restarts lose nothing.
package otelscraper

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/otlpexport"
)

// NewCommand builds the otel-shoot-scraper command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "Node-local metrics scraping with run-time filter rules and lossless OTLP push",
		Long: `otel-shoot-scraper runs on every shoot node. It scrapes the kubelet (/metrics,
/metrics/cadvisor, /metrics/resource), node-exporter, pods on its node annotated
prometheus.io/scrape: "true" and static targets, keeps what the filter rules allow
(a ConfigMap, applied without restart; Gardener's allowlists by default), converts
the samples to OTLP (cumulative sums with start times, gauges, histograms,
summaries) and pushes them over gRPC or HTTP through a bounded on-disk queue.`,
		ListenAddress: ":8083",
		Options:       []daemon.Options{o},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o) },
	})
}

func run(ctx context.Context, d *daemon.Daemon, o *Options) error {
	limit, gcPercent, err := o.applyMemorySettings()
	if err != nil {
		return err
	}
	d.Logger.Info("memory settings", "memoryLimitBytes", limit, "gcPercent", gcPercent,
		"goMemLimitEnv", os.Getenv("GOMEMLIMIT"), "goGCEnv", os.Getenv("GOGC"))
	exp, err := otlpexport.New(o.OTLP, d.Logger, d.Registry, d.Namespace)
	if err != nil {
		return err
	}
	defer func() {
		if err := exp.Close(); err != nil {
			d.Logger.Error("cannot close the export queue", "err", err.Error())
		}
	}()
	d.Go("exporter", exp.Run)

	m := newMetrics(d.Registry, d.Namespace)
	if !o.UseAPI {
		current := DefaultRules
		if o.RulesFile != "" {
			src, err := NewFileRuleSource(o.RulesFile, o.RulesFilePoll, d.Logger, d.Registry, d.Namespace)
			if err != nil {
				return err
			}
			d.Go("rules", src.Run)
			current = src.Current
		}
		mg := newManager(current, exp.EnqueueEncoded, m, d.Logger, o.resourceAttrs)
		mg.chunk = o.chunkOptions()
		mg.report = o.ReportMetrics
		mg.acceptGzip = o.AcceptGzip
		o.stateFiles(mg)
		mg.sync(ctx, o.Discovery.targets(nil, nil))
		<-ctx.Done()
		mg.wait()
		return nil
	}

	client, _, err := o.Kube.Clientset(Name)
	if err != nil {
		return err
	}
	recorder, stopEvents := kube.NewEventRecorder(client, Name)
	defer stopEvents()
	rules := NewRuleSource(client, o.rulesNamespace, o.rulesName, o.RulesKey, recorder, d.Logger, d.Registry, d.Namespace)
	d.Go("rules", rules.Run)

	inf := kube.NewNodeInformers(client, o.Node.Name, 0)
	nodes := inf.Node.Core().V1().Nodes()
	pods := inf.Pods.Core().V1().Pods()
	kick := kube.NewNotifier()
	if err := kick.Watch(nodes.Informer()); err != nil {
		return err
	}
	if o.Discovery.Pods {
		if err := kick.Watch(pods.Informer()); err != nil {
			return err
		}
	}
	inf.Start(ctx)
	informers := kube.HasSynced(nodes.Informer())
	if o.Discovery.Pods {
		informers = kube.HasSynced(nodes.Informer(), pods.Informer())
	}
	d.Ready.Add("informers", informers)
	d.Ready.Add("rules", func(context.Context) error {
		if !rules.HasSynced() {
			return errors.New("filter rules ConfigMap not read yet")
		}
		return nil
	})
	if err := inf.WaitForCacheSync(ctx); err != nil {
		return err
	}

	mg := newManager(rules.Current, exp.EnqueueEncoded, m, d.Logger, o.resourceAttrs)
	mg.chunk = o.chunkOptions()
	mg.report = o.ReportMetrics
	mg.acceptGzip = o.AcceptGzip
	o.stateFiles(mg)
	defer mg.wait()
	// Target changes arrive through the informers; a slow resync also picks up
	// pods whose readiness changed without an event we watch.
	resync := time.NewTicker(30 * time.Second)
	defer resync.Stop()
	for {
		node, _ := inf.GetNode()
		var list []*corev1.Pod
		if o.Discovery.Pods {
			list, _ = pods.Lister().List(labels.Everything())
		}
		mg.sync(ctx, o.Discovery.targets(node, list))
		select {
		case <-ctx.Done():
			return nil
		case <-kick.C():
		case <-resync.C:
		}
	}
}

// stateFiles has the manager keep start-time state in the queue directory
// (none with an in-memory queue).
func (o *Options) stateFiles(mg *manager) {
	if o.OTLP.QueueDir == "" || o.StateSaveInterval < 0 {
		return
	}
	removeStaleStarts(o.OTLP.QueueDir, time.Now())
	mg.stateDir, mg.saveEvery = o.OTLP.QueueDir, o.StateSaveInterval
}
