package egressreporter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/egressprobe"
	"github.com/trellis-garden/trellis/internal/kube"
)

// Defaults, see docs/egress-reporter.md.
const (
	// DefaultHysteresisAdd is longer than one probe interval (1 min): an address
	// must be confirmed by a second probe round before it is published.
	DefaultHysteresisAdd = 2 * time.Minute
	// DefaultHysteresisRemove is long on purpose: consumers use egressCIDRs for
	// allow lists, and a missing address blocks traffic while an extra one costs
	// little; it also rides out a probe DaemonSet rollout.
	DefaultHysteresisRemove = 30 * time.Minute
	// DefaultProbeMaxAge is three probe refreshes (10 min): one missed refresh
	// does not expire a node's address.
	DefaultProbeMaxAge      = 30 * time.Minute
	DefaultSyncInterval     = 30 * time.Second
	DefaultRetryInterval    = time.Second
	DefaultMaxRetryInterval = time.Minute

	DefaultProbeInterval = time.Minute
	DefaultProbeRefresh  = 10 * time.Minute
	DefaultProbeTimeout  = 5 * time.Second
)

// DefaultSTUNServers are public STUN servers answering Binding requests.
var DefaultSTUNServers = []string{"stun.l.google.com:19302", "stun.cloudflare.com:3478"}

// Options are the reporter's own flags.
type Options struct {
	Sources         []string
	StaticCIDRs     []string
	InfraNamespace  string
	ShootKubeconfig string
	ProbeMaxAge     time.Duration
	Config          Config

	static []netip.Prefix

	Kube           kube.ClientOptions
	LeaderElection kube.LeaderElectionOptions
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{LeaderElection: kube.NewLeaderElectionOptions(Name)}
}

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	c := &o.Config
	fs.StringSliceVar(&o.Sources, "egress.sources", []string{SourceInfrastructure, SourceProbe}, "Where egress CIDRs come from, merged: infrastructure (status.egressCIDRs of the Infrastructure in --infrastructure.namespace of the cluster of --kubeconfig, the seed), probe (annotations "+AddressAnnotation+" on the shoot's Nodes, written by egress-reporter probe), static (--static.cidrs).")
	fs.StringSliceVar(&o.StaticCIDRs, "static.cidrs", nil, "CIDRs or single addresses always published, e.g. 203.0.113.0/28,2001:db8::1 (with --egress.sources=static).")
	fs.StringVar(&o.InfraNamespace, "infrastructure.namespace", os.Getenv(kube.PodNamespaceEnv), "Seed namespace of the shoot whose Infrastructure to read (default $"+kube.PodNamespaceEnv+").")
	fs.StringVar(&o.ShootKubeconfig, "shoot.kubeconfig", "", "Kubeconfig of the shoot whose kube-system/shoot-info to write and whose Nodes to read. Empty: the cluster of --kubeconfig (the reporter runs in the shoot).")
	fs.DurationVar(&o.ProbeMaxAge, "probe.max-age", DefaultProbeMaxAge, "A Node's probed address older than this (annotation "+ObservedAtAnnotation+") no longer counts; keep it above the probe's --probe.refresh.")
	fs.DurationVar(&c.HysteresisAdd, "hysteresis.add", DefaultHysteresisAdd, "A probed address is published once it has been seen for this long (gaps shorter than this do not reset it). Infrastructure and static CIDRs are published at once.")
	fs.DurationVar(&c.HysteresisRemove, "hysteresis.remove", DefaultHysteresisRemove, "A published CIDR is removed only after no source has reported it for this long.")
	fs.DurationVar(&c.SyncInterval, "sync.interval", DefaultSyncInterval, "How often to re-evaluate the sources (hysteresis timers, probe ages) and re-apply shoot-info even without a change.")
	fs.DurationVar(&c.RetryInterval, "retry.interval", DefaultRetryInterval, "First wait after a failed write of shoot-info; doubles up to --retry.max-interval.")
	fs.DurationVar(&c.MaxRetryInterval, "retry.max-interval", DefaultMaxRetryInterval, "Upper bound of the retry backoff.")
	o.Kube.AddFlags(fs)
	o.LeaderElection.AddFlags(fs)
}

func (o *Options) Complete() error {
	o.static = nil
	for _, s := range o.StaticCIDRs {
		p, err := ParsePrefix(s)
		if err != nil {
			return fmt.Errorf("--static.cidrs: %w", err)
		}
		o.static = append(o.static, p)
	}
	return o.LeaderElection.Complete()
}

func (o *Options) has(source string) bool { return slices.Contains(o.Sources, source) }

func (o *Options) Validate() error {
	var errs []error
	if len(o.Sources) == 0 {
		errs = append(errs, errors.New("--egress.sources: at least one source required"))
	}
	for i, s := range o.Sources {
		switch s {
		case SourceInfrastructure, SourceProbe, SourceStatic:
		default:
			errs = append(errs, fmt.Errorf("--egress.sources: %q is not one of infrastructure, probe, static", s))
		}
		if slices.Contains(o.Sources[:i], s) {
			errs = append(errs, fmt.Errorf("--egress.sources: %s given twice", s))
		}
	}
	if o.has(SourceStatic) != (len(o.StaticCIDRs) > 0) {
		errs = append(errs, errors.New("--static.cidrs: required with --egress.sources=static, and only then"))
	}
	if o.has(SourceInfrastructure) && o.InfraNamespace == "" {
		errs = append(errs, errors.New("--infrastructure.namespace: required with --egress.sources=infrastructure (or set $"+kube.PodNamespaceEnv+")"))
	}
	if o.ShootKubeconfig != "" {
		if _, err := os.Stat(o.ShootKubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("--shoot.kubeconfig: %w", err))
		}
	}
	c := o.Config
	for _, d := range []struct {
		flag string
		v    time.Duration
		zero bool
	}{{"--hysteresis.add", c.HysteresisAdd, true}, {"--hysteresis.remove", c.HysteresisRemove, true}, {"--probe.max-age", o.ProbeMaxAge, false},
		{"--sync.interval", c.SyncInterval, false}, {"--retry.interval", c.RetryInterval, false}, {"--retry.max-interval", c.MaxRetryInterval, false}} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.flag, d.v))
		}
	}
	if err := o.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.LeaderElection.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ProbeOptions are the probe subcommand's flags.
type ProbeOptions struct {
	STUNServers []string
	HTTPURLs    []string
	Families    []string
	Interval    time.Duration
	Refresh     time.Duration
	Timeout     time.Duration

	families []egressprobe.Family

	Node kube.NodeOptions
	Kube kube.ClientOptions
}

// NewProbeOptions returns the defaults.
func NewProbeOptions() *ProbeOptions { return &ProbeOptions{} }

func (o *ProbeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&o.STUNServers, "probe.stun.servers", DefaultSTUNServers, "STUN servers (host:port) asked in order for this node's public address (RFC 8489 Binding request); the next is tried when one fails.")
	fs.StringSliceVar(&o.HTTPURLs, "probe.http.urls", nil, "Echo URLs answering with the caller's address as text (e.g. https://checkip.amazonaws.com), asked in order after every STUN server failed.")
	fs.StringSliceVar(&o.Families, "probe.families", []string{string(egressprobe.IPv4)}, "Address families to probe: ipv4, ipv6 (each over its own socket family).")
	fs.DurationVar(&o.Interval, "probe.interval", DefaultProbeInterval, "Time between two probe rounds.")
	fs.DurationVar(&o.Refresh, "probe.refresh", DefaultProbeRefresh, "Rewrite the Node annotations at least this often even when the address did not change, so the reporter knows it is current; keep it below the reporter's --probe.max-age.")
	fs.DurationVar(&o.Timeout, "probe.timeout", DefaultProbeTimeout, "Deadline of one attempt against one STUN server or URL (STUN retransmits within it).")
	o.Node.AddFlags(fs)
	o.Kube.AddFlags(fs)
}

func (o *ProbeOptions) Complete() error {
	o.families = nil
	for _, f := range o.Families {
		fam, err := egressprobe.ParseFamily(strings.TrimSpace(f))
		if err != nil {
			return fmt.Errorf("--probe.families: %w", err)
		}
		if !slices.Contains(o.families, fam) {
			o.families = append(o.families, fam)
		}
	}
	return nil
}

func (o *ProbeOptions) Validate() error {
	var errs []error
	if len(o.STUNServers) == 0 && len(o.HTTPURLs) == 0 {
		errs = append(errs, errors.New("--probe.stun.servers, --probe.http.urls: at least one server or URL required"))
	}
	for _, s := range o.STUNServers {
		if _, _, err := net.SplitHostPort(s); err != nil {
			errs = append(errs, fmt.Errorf("--probe.stun.servers: %q: %w", s, err))
		}
	}
	for _, u := range o.HTTPURLs {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			errs = append(errs, fmt.Errorf("--probe.http.urls: %q is not an http(s) URL", u))
		}
	}
	if len(o.families) == 0 {
		errs = append(errs, errors.New("--probe.families: at least one family required"))
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--probe.interval", o.Interval}, {"--probe.refresh", o.Refresh}, {"--probe.timeout", o.Timeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be positive, got %s", d.flag, d.v))
		}
	}
	if err := o.Node.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := o.Kube.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
