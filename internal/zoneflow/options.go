package zoneflow

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
)

// Name is the binary's name.
const Name = "zone-flow-tracer"

// Defaults, with the reasons behind them.
const (
	// DefaultDumpInterval: long-lived flows show up as deltas at most this late;
	// shorter than the usual 15-30 s scrape interval so every scrape sees fresh
	// numbers, long enough that a 100k-entry table costs well under 1 % of a core.
	DefaultDumpInterval = 10 * time.Second
	// DefaultEventBuffer: 4 MiB holds tens of thousands of DESTROY events while
	// a dump holds the processor; the kernel caps it at net.core.rmem_max.
	DefaultEventBuffer = 4 << 20
	// DefaultMaxRecords bounds the aggregates, and so the series of bytes_total
	// with --metrics.labels=workload: a node rarely runs more than a few hundred
	// workloads, times a handful of zones.
	DefaultMaxRecords = 5000
	// DefaultTop is the length of the /flows list.
	DefaultTop = 20
	// DefaultStateMaxFlows bounds the state file: at most ~50 bytes a flow, so
	// a million open flows take at most ~50 MB (typically ~25).
	DefaultStateMaxFlows = 1 << 20
	// DefaultStateMaxAge: a restart takes seconds to minutes; a file older
	// than an hour is from a daemon that was gone long enough for most of its
	// flows to have ended (and their entries' IDs to be reused).
	DefaultStateMaxAge = time.Hour
	// DefaultFinalDumpTimeout bounds the final dump at shutdown (a million
	// entries take about a second), within the default --shutdown.timeout.
	DefaultFinalDumpTimeout = 15 * time.Second
)

// DefaultSameRegionCIDRs are private and shared address space: an address there
// that is no node and no podCIDR is most likely in the cluster's own VPC/VNet.
var DefaultSameRegionCIDRs = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7"}

// Options are zone-flow-tracer's own flags.
type Options struct {
	DumpInterval     time.Duration
	EnableAccounting bool
	EventBuffer      int
	eventBufferSize  int64
	ProcFS           string
	Labels           string
	MaxRecords       int
	SameRegionCIDRs  []string
	OtherRegionCIDRs []string
	Provider         string
	PricesFile       string
	Top              int
	ClusterPods      bool
	CountExisting    bool
	StateFile        string
	StateMaxFlows    int
	StateMaxAge      time.Duration

	sameRegion, otherRegion []netip.Prefix

	Node kube.NodeOptions
	Kube kube.ClientOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options { return &Options{} }

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.DurationVar(&o.DumpInterval, "conntrack.dump-interval", DefaultDumpInterval, "Time between two dumps of the conntrack table; long-lived flows are accounted at this resolution.")
	fs.BoolVar(&o.EnableAccounting, "conntrack.accounting", true, "Switch net.netfilter.nf_conntrack_acct on at start when it is off (needs a writable /proc/sys); without it flows carry no byte counters.")
	fs.BoolVar(&o.CountExisting, "conntrack.count-existing", false, "Count the bytes that flows already open at start carried before it. Their counters hold the flow's whole history (days, for a long-lived connection), which after every restart would land in the metrics at once; off, the first dump only sets each flow's baseline and a restart loses at most one --conntrack.dump-interval of their bytes.")
	daemon.BytesVar(fs, &o.eventBufferSize, "conntrack.event-buffer-size", DefaultEventBuffer, "Receive buffer of the DESTROY event socket (a quantity: 4Mi; capped by net.core.rmem_max); on overflow events are lost and the table is dumped again.")
	fs.StringVar(&o.StateFile, "state.file", "", "File for the accounting state across restarts (empty: none). At SIGTERM, after a final dump, the daemon writes the last counters of every open flow and what was counted after the last scrape; at start it reads and removes the file, so the first dump counts what open flows sent meanwhile instead of setting a baseline. Damaged, stale or other-boot files are ignored. Use a hostPath: the file must outlive the pod.")
	fs.IntVar(&o.StateMaxFlows, "state.max-flows", DefaultStateMaxFlows, "Most open flows the state file holds (at most ~50 bytes each); beyond it the rest start from a baseline after a restart.")
	fs.DurationVar(&o.StateMaxAge, "state.max-age", DefaultStateMaxAge, "A state file older than this is ignored (stale).")
	fs.StringVar(&o.ProcFS, "path.procfs", "/proc", "procfs mount point, for net/netfilter/nf_conntrack_acct.")
	fs.StringVar(&o.Labels, "metrics.labels", LabelsZone, "Labels of bytes_total and packets_total beyond source_zone, destination_zone, direction: zone (none), namespace, or workload (namespace and workload). More labels, more series.")
	fs.IntVar(&o.MaxRecords, "metrics.max-records", DefaultMaxRecords, "Most distinct aggregates (zones x direction x class x namespace x workload) kept; beyond it new namespaces and workloads are folded into _other.")
	fs.StringSliceVar(&o.SameRegionCIDRs, "network.same-region-cidrs", DefaultSameRegionCIDRs, "CIDRs outside the cluster's nodes and podCIDRs that are in the same region (zone unknown), e.g. the VPC; class in-region.")
	fs.StringSliceVar(&o.OtherRegionCIDRs, "network.other-region-cidrs", nil, "CIDRs in other regions (class cross-region); checked after --network.same-region-cidrs. Any other address is internet.")
	fs.StringVar(&o.Provider, "cost.provider", "auto", "Price table: aws, gcp, azure, none, or auto (from this Node's spec.providerID).")
	fs.StringVar(&o.PricesFile, "cost.prices-file", "", "YAML file of class: US dollars per GiB overriding the provider's prices (classes: "+strings.Join(Classes, ", ")+").")
	fs.IntVar(&o.Top, "flows.top", DefaultTop, "Number of aggregates /flows lists (top talkers by bytes).")
	fs.BoolVar(&o.ClusterPods, "enrich.cluster-pods", false, "Watch every Pod of the cluster (not only this node's) so that pod IPs outside any podCIDR resolve to their node's zone; for CNIs that give nodes no podCIDRs (e.g. AWS VPC CNI). Memory grows with the cluster's pods.")
	o.Node.AddFlags(fs)
	o.Kube.AddFlags(fs)
}

func (o *Options) Complete() error {
	var errs []error
	parse := func(flag string, in []string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range in {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", flag, err))
				continue
			}
			out = append(out, p.Masked())
		}
		return out
	}
	o.sameRegion = parse("--network.same-region-cidrs", o.SameRegionCIDRs)
	o.otherRegion = parse("--network.other-region-cidrs", o.OtherRegionCIDRs)
	if o.eventBufferSize > math.MaxInt32 {
		errs = append(errs, fmt.Errorf("--conntrack.event-buffer-size: at most 2Gi, got %d bytes", o.eventBufferSize))
	}
	o.EventBuffer = int(min(o.eventBufferSize, math.MaxInt32))
	return errors.Join(errs...)
}

func (o *Options) Validate() error {
	var errs []error
	if o.DumpInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--conntrack.dump-interval: must be at least 100ms, got %s", o.DumpInterval))
	}
	if !slices.Contains([]string{LabelsZone, LabelsNamespace, LabelsWorkload}, o.Labels) {
		errs = append(errs, fmt.Errorf("--metrics.labels: %q is not one of zone, namespace, workload", o.Labels))
	}
	if o.MaxRecords < 1 {
		errs = append(errs, fmt.Errorf("--metrics.max-records: must be at least 1, got %d", o.MaxRecords))
	}
	if o.Provider != "auto" && !slices.Contains(Providers, o.Provider) {
		errs = append(errs, fmt.Errorf("--cost.provider: %q is not one of auto, %s", o.Provider, strings.Join(Providers, ", ")))
	}
	if o.PricesFile != "" {
		if _, err := LoadPrices(o.PricesFile, Prices{}); err != nil {
			errs = append(errs, fmt.Errorf("--cost.prices-file: %w", err))
		}
	}
	if o.StateMaxFlows < 0 {
		errs = append(errs, fmt.Errorf("--state.max-flows: must not be negative, got %d", o.StateMaxFlows))
	}
	if o.StateMaxAge <= 0 {
		errs = append(errs, fmt.Errorf("--state.max-age: must be positive, got %s", o.StateMaxAge))
	}
	if o.Top < 1 {
		errs = append(errs, fmt.Errorf("--flows.top: must be at least 1, got %d", o.Top))
	}
	if err := o.Node.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
