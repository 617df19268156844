package eventwatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/kube"
)

// resyncInterval is the longest time between two reconcile passes: a safety net
// for a missed informer event; everything else is triggered by a change.
const resyncInterval = 5 * time.Minute

// apiTimeout bounds one call to the API server or the metadata service's
// approval endpoint, so a hung connection cannot stall the controller.
const apiTimeout = 30 * time.Second

// Controller watches its VM's scheduled events and reflects them on its Node.
type Controller struct {
	client kubernetes.Interface
	source imds.Client
	cfg    Config
	log    *slog.Logger
	m      *metrics

	informers    *kube.NodeInformers
	nodeInformer cache.SharedIndexInformer
	recorder     record.EventRecorder
	stopEvents   func() // flushes and stops recorder; at the end of Run
	nodeRef      *corev1.ObjectReference

	// trigger asks the reconcile loop for a pass; buffered 1, sends never block.
	trigger chan struct{}
	// rounds are the running eviction rounds (at most one per drain).
	rounds  sync.WaitGroup
	running atomic.Bool
	polled  atomic.Bool

	mu           sync.Mutex // guards tracker and haveSnapshot
	tracker      tracker
	haveSnapshot bool

	// Reconcile-loop state; only that goroutine touches it.
	drain          drainState
	approved       map[string]bool // approval done, by event ID: true approved, false not supported
	approveNext    time.Time
	approveBackoff backoff
	apiBackoff     backoff
	noted          map[string]bool // one-off Events already recorded, by key
}

// New builds a controller for cfg.NodeName. Its metrics are registered on reg
// (nil: not registered) under namespace (empty: DefaultNamespace).
func New(client kubernetes.Interface, source imds.Client, cfg Config, log *slog.Logger, reg prometheus.Registerer, namespace string) (*Controller, error) {
	if client == nil || source == nil {
		return nil, errors.New("eventwatcher: a Kubernetes client and a metadata client are required")
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("eventwatcher: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if namespace == "" {
		namespace = DefaultNamespace
	}
	m := newMetrics(namespace)
	if reg != nil {
		for _, col := range m.collectors() {
			if err := reg.Register(col); err != nil {
				return nil, fmt.Errorf("eventwatcher: register metrics: %w", err)
			}
		}
	}
	// More room than client-go's default spam filter (25 Events per object, then
	// one per 5 minutes): a long PDB-blocked drain must not silence the Events that
	// say how the event ended.
	recorder, stopEvents := kube.NewEventRecorder(client, Name, kube.EventOptions{
		Host:       cfg.NodeName,
		Correlator: &record.CorrelatorOptions{BurstSize: 100, QPS: 1.0 / 30},
	})
	c := &Controller{
		recorder:   recorder,
		stopEvents: stopEvents,
		client:     client,
		source:     source,
		cfg:        cfg,
		log:        log.With("node", cfg.NodeName, "provider", source.Provider()),
		m:          m,
		informers:  kube.NewNodeInformers(client, cfg.NodeName, 0),
		// As the kubelet does, so `kubectl describe node` lists these Events.
		nodeRef:        &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: cfg.NodeName, UID: types.UID(cfg.NodeName)},
		trigger:        make(chan struct{}, 1),
		approved:       map[string]bool{},
		approveBackoff: newBackoff(cfg.PollInterval, cfg.MaxRetryInterval),
		apiBackoff:     newBackoff(cfg.PollInterval, cfg.MaxRetryInterval),
		noted:          map[string]bool{},
	}
	c.nodeInformer = c.informers.Node.Core().V1().Nodes().Informer()
	kick := func(any) { c.kick() }
	if _, err := c.nodeInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    kick,
		UpdateFunc: func(_, obj any) { c.kick() },
		DeleteFunc: kick,
	}); err != nil {
		return nil, fmt.Errorf("eventwatcher: node informer: %w", err)
	}
	return c, nil
}

// Run polls the metadata service and reconciles the Node until ctx ends; it
// returns nil then. Failures are retried, never returned.
func (c *Controller) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("eventwatcher: Run called twice")
	}
	defer c.stopEvents()
	c.informers.Start(ctx)
	c.log.Info("event watcher started", "dryRun", c.cfg.DryRun, "approve", c.cfg.Approve, "actions", FormatActions(c.cfg.Actions))
	var wg sync.WaitGroup
	wg.Go(func() { c.pollLoop(ctx) })
	c.reconcileLoop(ctx)
	wg.Wait()
	c.rounds.Wait()
	return nil
}

// Ready reports nil once a metadata poll succeeded and the Node was seen.
func (c *Controller) Ready(context.Context) error {
	if !c.polled.Load() {
		return errors.New("no successful metadata poll yet")
	}
	if !c.nodeInformer.HasSynced() {
		return errors.New("node informer not synced")
	}
	if _, err := c.informers.GetNode(); err != nil {
		return fmt.Errorf("node %s not seen: %w", c.cfg.NodeName, err)
	}
	return nil
}

// kick asks for a reconcile pass.
func (c *Controller) kick() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// reconcileLoop runs a pass on every trigger and when the last pass asked for
// one, until ctx ends.
func (c *Controller) reconcileLoop(ctx context.Context) {
	timer := time.NewTimer(resyncInterval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.trigger:
		case <-timer.C:
		}
		timer.Reset(c.reconcile(ctx))
	}
}

// reconcile runs one pass and returns when the next one is due.
func (c *Controller) reconcile(ctx context.Context) time.Duration {
	node, err := c.informers.GetNode()
	if err != nil {
		return resyncInterval // the informer triggers a pass when the Node shows up
	}
	c.mu.Lock()
	events, unknown, ok := c.tracker.list(), c.tracker.unknownList(), c.haveSnapshot
	c.mu.Unlock()
	if !ok {
		return resyncInterval // nothing known yet: never clear state on no data
	}
	next, err := c.sync(ctx, node, events, unknown, time.Now())
	if err != nil {
		if ctx.Err() != nil {
			return next
		}
		delay := c.apiBackoff.Next()
		c.log.Warn("updating the node failed, retrying", "retryIn", delay.String(), "err", err)
		return min(next, delay)
	}
	c.apiBackoff.Reset()
	return next
}

// event records a Kubernetes Event on the Node.
func (c *Controller) event(eventType, reason, message string) {
	c.recorder.Event(c.nodeRef, eventType, reason, message)
}

// noteOnce records an Event once per key (per process).
func (c *Controller) noteOnce(key, eventType, reason, message string) {
	if c.noted[key] {
		return
	}
	c.noted[key] = true
	c.event(eventType, reason, message)
}
