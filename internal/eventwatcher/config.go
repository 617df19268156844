package eventwatcher

import (
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
)

// Config configures a Controller. Zero durations and a nil Actions map take the
// defaults below.
type Config struct {
	// NodeName is the Node this controller serves (required).
	NodeName string
	// PodNamespace and PodName name event-watcher's own pod, never evicted.
	PodNamespace, PodName string
	// TaintEffect of the TaintKey taint; default NoSchedule.
	TaintEffect corev1.TaintEffect
	// Actions per event type, over DefaultActions; unknown types get ActionNone.
	Actions map[imds.EventType]Action
	// DrainMargin: a drain should be done this long before NotBefore; default 30 s.
	DrainMargin time.Duration
	// DrainTimeout bounds a drain for an event without NotBefore; default 5 min.
	DrainTimeout time.Duration
	// EvictionRetry is the first wait after a blocked or failed eviction round; it
	// doubles up to MaxRetryInterval. Default 5 s: retrying at once would hammer
	// the API server while a PodDisruptionBudget blocks (the kubectl drain hot loop).
	EvictionRetry time.Duration
	// PodPollInterval is how often to check that evicted pods are gone; default 2 s.
	PodPollInterval time.Duration
	// Force evicts, for the event types it lists, pods without a controller
	// (kubectl drain --force); elsewhere they are left on the node and reported.
	Force map[imds.EventType]bool
	// DeleteEmptyDirData evicts, for the event types it lists, pods with an
	// emptyDir volume (kubectl drain --delete-emptydir-data); elsewhere they are
	// left on the node and reported.
	DeleteEmptyDirData map[imds.EventType]bool
	// TerminatingTimeout: a pod still terminating this long after its
	// deletionTimestamp (finalizers, a dead kubelet) is reported and no longer
	// waited for; default 2 min.
	TerminatingTimeout time.Duration
	// MaxConcurrentEvictions bounds the evictions in flight at once; default 10.
	MaxConcurrentEvictions int
	// PollInterval is the least time between the starts of two metadata polls, and
	// the first wait after a failed poll or API write (doubling up to
	// MaxRetryInterval). A client whose Poll blocks (GCP's long poll) is polled
	// again at once when the wait is over. Default 2 s, as aws-node-termination-handler;
	// Azure asks for at most 5 requests/s.
	PollInterval time.Duration
	// MaxRetryInterval caps every backoff, also a first wait set higher; default 1 min.
	MaxRetryInterval time.Duration
	// Approve asks the cloud to start an approvable event (Azure) as soon as the
	// drain it needed has finished. Approval starts the event for every VM the
	// event names, so it is off by default.
	Approve bool
	// DryRun only records (condition, Events, metrics): no taint, label,
	// annotation, cordon, eviction or approval.
	DryRun bool
}

// Defaults of Config.
const (
	DefaultDrainMargin      = 30 * time.Second
	DefaultDrainTimeout     = 5 * time.Minute
	DefaultEvictionRetry    = 5 * time.Second
	DefaultPodPollInterval  = 2 * time.Second
	DefaultPollInterval     = 2 * time.Second
	DefaultMaxRetryInterval = time.Minute

	DefaultTerminatingTimeout     = 2 * time.Minute
	DefaultMaxConcurrentEvictions = 10
)

// withDefaults fills zero values and merges Actions over DefaultActions.
func (c Config) withDefaults() Config {
	if c.TaintEffect == "" {
		c.TaintEffect = corev1.TaintEffectNoSchedule
	}
	actions := DefaultActions()
	for t, a := range c.Actions {
		actions[t] = a
	}
	c.Actions = actions
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.DrainMargin, DefaultDrainMargin)
	def(&c.DrainTimeout, DefaultDrainTimeout)
	def(&c.EvictionRetry, DefaultEvictionRetry)
	def(&c.PodPollInterval, DefaultPodPollInterval)
	def(&c.PollInterval, DefaultPollInterval)
	def(&c.MaxRetryInterval, DefaultMaxRetryInterval)
	def(&c.TerminatingTimeout, DefaultTerminatingTimeout)
	if c.MaxConcurrentEvictions == 0 {
		c.MaxConcurrentEvictions = DefaultMaxConcurrentEvictions
	}
	return c
}

// validate reports every invalid value of a defaulted Config.
func (c Config) validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("NodeName: required"))
	}
	switch c.TaintEffect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		errs = append(errs, fmt.Errorf("TaintEffect: %q is not one of NoSchedule, PreferNoSchedule, NoExecute", c.TaintEffect))
	}
	for t, a := range c.Actions {
		if a < ActionNone || a > ActionDrain {
			errs = append(errs, fmt.Errorf("invalid action %d for event type %s", int(a), t))
		}
	}
	for _, d := range []struct {
		name  string
		value time.Duration
	}{
		{"DrainMargin", c.DrainMargin}, {"DrainTimeout", c.DrainTimeout}, {"EvictionRetry", c.EvictionRetry},
		{"PodPollInterval", c.PodPollInterval}, {"PollInterval", c.PollInterval}, {"MaxRetryInterval", c.MaxRetryInterval},
		{"TerminatingTimeout", c.TerminatingTimeout},
	} {
		if d.value < 0 {
			errs = append(errs, fmt.Errorf("%s: must not be negative, got %s", d.name, d.value))
		}
	}
	if c.MaxConcurrentEvictions < 0 {
		errs = append(errs, fmt.Errorf("MaxConcurrentEvictions: must not be negative, got %d", c.MaxConcurrentEvictions))
	}
	if (c.PodNamespace == "") != (c.PodName == "") {
		errs = append(errs, errors.New("PodNamespace and PodName: set both or neither"))
	}
	return errors.Join(errs...)
}
