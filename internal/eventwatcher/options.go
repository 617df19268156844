package eventwatcher

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/kube"
)

// Name is the binary's name.
const Name = "event-watcher"

// Options are event-watcher's own flags.
type Options struct {
	Provider       string
	Endpoint       string
	AzureResources []string
	Actions        string
	TaintEffect    string
	PodName        string
	PodNamespace   string
	Force          []string
	DeleteEmptyDir []string

	Config Config
	Node   kube.NodeOptions
	Kube   kube.ClientOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options { return &Options{} }

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	c := &o.Config
	fs.StringVar(&o.Provider, "metadata.provider", "auto", "Cloud whose metadata service to poll: azure, aws, gcp, or auto (from the Node's spec.providerID: azure://, aws://, gce://).")
	fs.StringVar(&o.Endpoint, "metadata.endpoint", "", "Base URL of the metadata service (default: the cloud's, e.g. http://169.254.169.254); for tests and proxies.")
	fs.StringSliceVar(&o.AzureResources, "metadata.azure.resources", nil, "Azure: this VM's names in scheduled events' Resources (default: derived from the providerID, <vmss>_<instance> or the VM name).")
	fs.DurationVar(&c.PollInterval, "poll.interval", DefaultPollInterval, "Least time between two metadata polls, and the first retry wait after a failure (doubling up to --retry.max-interval). GCP long-polls instead.")
	fs.DurationVar(&c.MaxRetryInterval, "retry.max-interval", DefaultMaxRetryInterval, "Upper bound of every retry backoff (metadata, API server, evictions, approvals).")
	fs.StringVar(&o.Actions, "events.actions", "", "Action per event type over the defaults ("+FormatActions(DefaultActions())+"), e.g. \"Freeze=none,Reboot=cordon\". Actions: none, taint, cordon (taint + unschedulable), drain (cordon + evict pods).")
	fs.StringVar(&o.TaintEffect, "taint.effect", string(corev1.TaintEffectNoSchedule), "Effect of the trellis.dev/scheduled-event taint: NoSchedule, PreferNoSchedule or NoExecute.")
	fs.DurationVar(&c.DrainMargin, "drain.margin", DefaultDrainMargin, "Finish a drain this long before the event's NotBefore.")
	fs.DurationVar(&c.DrainTimeout, "drain.timeout", DefaultDrainTimeout, "Deadline of a drain for an event without NotBefore (already started, or unknown).")
	fs.DurationVar(&c.EvictionRetry, "drain.eviction-retry", DefaultEvictionRetry, "First wait after an eviction blocked by a PodDisruptionBudget (doubles up to --retry.max-interval).")
	fs.DurationVar(&c.PodPollInterval, "drain.pod-poll-interval", DefaultPodPollInterval, "How often to check that evicted pods are gone.")
	fs.StringSliceVar(&o.Force, "drain.force", nil, "Event types for which a drain also evicts pods without a controller (as kubectl drain --force), or \"all\". For other types such pods are left on the node and reported.")
	fs.StringSliceVar(&o.DeleteEmptyDir, "drain.delete-emptydir-data", nil, "Event types for which a drain also evicts pods with emptyDir volumes, whose data is deleted (as kubectl drain --delete-emptydir-data), or \"all\". For other types such pods are left on the node and reported.")
	fs.DurationVar(&c.TerminatingTimeout, "drain.terminating-timeout", DefaultTerminatingTimeout, "A pod still terminating this long after its deletion time (finalizers, a dead kubelet) is reported and no longer waited for.")
	fs.IntVar(&c.MaxConcurrentEvictions, "drain.max-concurrent-evictions", DefaultMaxConcurrentEvictions, "Evictions in flight at once.")
	fs.BoolVar(&c.Approve, "events.approve", false, "After a successful drain, ask the cloud to start the event early (Azure StartRequests). Approval starts the event for every VM it names.")
	fs.BoolVar(&c.DryRun, "events.dry-run", false, "Only record (condition, Events, metrics): never taint, label, cordon, drain or approve.")
	fs.StringVar(&o.PodName, "pod.name", os.Getenv("POD_NAME"), "This pod's name, never evicted by a drain (default $POD_NAME).")
	fs.StringVar(&o.PodNamespace, "pod.namespace", os.Getenv("POD_NAMESPACE"), "This pod's namespace (default $POD_NAMESPACE).")
	o.Node.AddFlags(fs)
	o.Kube.AddFlags(fs)
}

func (o *Options) Complete() error {
	actions, err := ParseActions(o.Actions)
	if err != nil {
		return fmt.Errorf("--events.actions: %w", err)
	}
	o.Config.Actions = actions
	if o.Config.Force, err = ParseTypeSet(o.Force); err != nil {
		return fmt.Errorf("--drain.force: %w", err)
	}
	if o.Config.DeleteEmptyDirData, err = ParseTypeSet(o.DeleteEmptyDir); err != nil {
		return fmt.Errorf("--drain.delete-emptydir-data: %w", err)
	}
	o.Config.TaintEffect = corev1.TaintEffect(o.TaintEffect)
	o.Config.NodeName = o.Node.Name
	o.Config.PodName, o.Config.PodNamespace = o.PodName, o.PodNamespace
	return nil
}

func (o *Options) Validate() error {
	var errs []error
	switch o.Provider {
	case "auto", imds.Azure, imds.AWS, imds.GCP:
	default:
		errs = append(errs, fmt.Errorf("--metadata.provider: %q is not one of auto, azure, aws, gcp", o.Provider))
	}
	if o.Endpoint != "" && !strings.HasPrefix(o.Endpoint, "http://") && !strings.HasPrefix(o.Endpoint, "https://") {
		errs = append(errs, fmt.Errorf("--metadata.endpoint: %q is not an http(s) URL", o.Endpoint))
	}
	if err := o.Node.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--poll.interval", o.Config.PollInterval}, {"--retry.max-interval", o.Config.MaxRetryInterval}, {"--drain.margin", o.Config.DrainMargin},
		{"--drain.timeout", o.Config.DrainTimeout}, {"--drain.eviction-retry", o.Config.EvictionRetry}, {"--drain.pod-poll-interval", o.Config.PodPollInterval},
		{"--drain.terminating-timeout", o.Config.TerminatingTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.flag, d.v))
		}
	}
	if o.Config.MaxConcurrentEvictions <= 0 {
		errs = append(errs, fmt.Errorf("--drain.max-concurrent-evictions: must be positive, got %d", o.Config.MaxConcurrentEvictions))
	}
	if len(errs) == 0 {
		c := o.Config.withDefaults()
		if err := c.validate(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
