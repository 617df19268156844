package otelscraper

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/otlpexport"
	"github.com/trellis-garden/trellis/internal/promotlp"
)

// Name is the binary's name.
const Name = "otel-shoot-scraper"

const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	// NodeIPEnv is set from the downward API (status.hostIP).
	NodeIPEnv = "NODE_IP"
)

// Options are otel-shoot-scraper's own flags.
type Options struct {
	Node        kube.NodeOptions
	Kube        kube.ClientOptions
	Discovery   DiscoveryConfig
	UseAPI      bool
	StaticFlags []string

	Interval      time.Duration
	ReportMetrics bool
	// AcceptGzip asks targets for gzip-compressed responses.
	AcceptGzip bool
	// StateSaveInterval: how often start-time state is written; negative: never.
	StateSaveInterval time.Duration

	RulesConfigMap string
	RulesKey       string
	RulesFile      string
	RulesFilePoll  time.Duration
	rulesFromFile  *Rules
	MemoryLimit    string
	GCPercent      int

	ResourceAttrs []string
	resourceAttrs map[string]string

	OTLP           otlpexport.Config
	OTLPProtocol   string
	OTLPHeaders    []string
	OTLPCAFile     string
	OTLPCertFile   string
	OTLPKeyFile    string
	OTLPServerName string
	OTLPSkipVerify bool
	QueueMaxBytes  int64
	MaxBatchBytes  int64
	ChunkPoints    int
	rulesNamespace string
	rulesName      string

	fs *pflag.FlagSet // to tell flags the operator set from defaults
}

// NewOptions returns the defaults.
func NewOptions() *Options { return &Options{} }

func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.fs = fs
	d := &o.Discovery
	fs.DurationVar(&o.Interval, "scrape.interval", 15*time.Second, "Default interval between scrapes of a target.")
	fs.BoolVar(&o.ReportMetrics, "scrape.report-metrics", true, "Export with every scrape the series Prometheus adds to a direct scrape of the target: up, scrape_duration_seconds, scrape_samples_scraped, scrape_samples_post_metric_relabeling, scrape_series_added (gauges of the target's resource: job and instance after Prometheus' OTLP translation).")
	fs.BoolVar(&o.AcceptGzip, "scrape.accept-gzip", false, "Ask targets for gzip-compressed responses (Accept-Encoding: gzip, as Prometheus' enable_compression). Off: the targets are on this node, where compressing costs the target and this daemon CPU and saves no network; a gzip response sent unasked is read all the same.")
	fs.DurationVar(&d.Timeout, "scrape.timeout", 10*time.Second, "Timeout of one scrape (capped at the target's interval).")
	fs.StringVar(&d.NodeAddress, "node.address", os.Getenv(NodeIPEnv), "IP or host name of this node for kubelet and node-exporter (default $"+NodeIPEnv+", else the Node's InternalIP).")
	fs.BoolVar(&d.Kubelet, "kubelet.enabled", true, "Scrape the kubelet's /metrics, /metrics/cadvisor and /metrics/resource.")
	fs.IntVar(&d.KubeletPort, "kubelet.port", 10250, "Kubelet HTTPS port.")
	fs.StringVar(&d.KubeletCAFile, "kubelet.ca-file", serviceAccountDir+"/ca.crt", "CA bundle to verify the kubelet's serving certificate.")
	fs.StringVar(&d.KubeletTokenFile, "kubelet.token-file", serviceAccountDir+"/token", "Bearer token file for the kubelet (re-read at every scrape).")
	fs.BoolVar(&d.KubeletInsecureTLS, "kubelet.insecure-skip-verify", false, "Do not verify the kubelet's certificate (self-signed kubelet serving certificates).")
	fs.DurationVar(&d.KubeletInterval, "kubelet.interval", 0, "Interval for kubelet /metrics; 0 = --scrape.interval, negative disables this endpoint.")
	fs.DurationVar(&d.CadvisorInterval, "cadvisor.interval", 0, "Interval for kubelet /metrics/cadvisor; 0 = --scrape.interval, negative disables.")
	fs.DurationVar(&d.ResourceInterval, "kubelet.resource-interval", 0, "Interval for kubelet /metrics/resource; 0 = --scrape.interval, negative disables.")
	fs.BoolVar(&d.NodeExporter, "node-exporter.enabled", true, "Scrape node-exporter on this node.")
	fs.StringVar(&d.NodeExporterURL, "node-exporter.url", "", "node-exporter URL (default http://<node address>:9100/metrics).")
	fs.DurationVar(&d.NodeExporterInterval, "node-exporter.interval", 0, "Interval for node-exporter; 0 = --scrape.interval.")
	fs.BoolVar(&d.Pods, "pods.enabled", true, "Scrape pods on this node annotated prometheus.io/scrape: \"true\" (prometheus.io/port, /path, /scheme).")
	fs.DurationVar(&d.PodsInterval, "pods.interval", 0, "Default interval for annotated pods (trellis.dev/scrape-interval overrides); 0 = --scrape.interval.")
	fs.StringArrayVar(&o.StaticFlags, "target.static", nil, "A static target: job=<name>,url=<url>[,interval=<d>][,timeout=<d>]; repeatable.")
	fs.BoolVar(&o.UseAPI, "discovery.kubernetes", true, "Use the Kubernetes API for this Node's address, its annotated pods and the rules ConfigMap; off: static targets and --node.address only.")

	fs.StringVar(&o.RulesConfigMap, "rules.configmap", "kube-system/otel-shoot-scraper-rules", "namespace/name of the ConfigMap with filter rules (watched, applied without restart); the built-in Gardener defaults apply until it exists.")
	fs.StringVar(&o.RulesKey, "rules.key", "rules.yaml", "Key of the rules in the ConfigMap.")
	fs.StringVar(&o.RulesFile, "rules.file", "", "Filter rules from a file (with --discovery.kubernetes=false; instead of the ConfigMap): read at start (invalid rules are an error), then every --rules.file-poll-interval and on SIGHUP; invalid rules later keep the last good rules.")
	fs.DurationVar(&o.RulesFilePoll, "rules.file-poll-interval", DefaultRulesFilePollInterval, "How often --rules.file is read for changes.")
	fs.StringVar(&o.MemoryLimit, "memory.limit", DefaultMemoryLimit, "Soft memory limit of the Go runtime (as GOMEMLIMIT, which wins when set): the garbage collector works harder near it, trading CPU for memory. auto: 90% of the container's (cgroup) memory limit, none without one; off; a share of the cgroup limit such as 80%; or a quantity such as 200Mi.")
	fs.IntVar(&o.GCPercent, "memory.gc-percent", DefaultGCPercent, "Garbage collection target percentage (as GOGC, which wins when set): the heap may grow this many percent over the live heap before a collection; negative disables collection until --memory.limit.")
	fs.StringArrayVar(&o.ResourceAttrs, "resource.attribute", nil, "An OTLP resource attribute added to every target, key=value (e.g. shoot.name=my-shoot); repeatable.")

	c := &o.OTLP
	fs.StringVar(&c.Endpoint, "otlp.endpoint", "", "OTLP receiver: host:port for grpc, the full URL (e.g. https://collector:4318/v1/metrics) for http/protobuf. Required.")
	fs.StringVar(&o.OTLPProtocol, "otlp.protocol", "grpc", "grpc or http/protobuf.")
	fs.BoolVar(&c.Insecure, "otlp.insecure", false, "Plain-text gRPC / allow http:// (no TLS).")
	fs.StringVar(&o.OTLPCAFile, "otlp.ca-file", "", "CA bundle to verify the receiver (default: system roots).")
	fs.StringVar(&o.OTLPCertFile, "otlp.cert-file", "", "Client certificate for mutual TLS.")
	fs.StringVar(&o.OTLPKeyFile, "otlp.key-file", "", "Client key for mutual TLS.")
	fs.StringVar(&o.OTLPServerName, "otlp.server-name", "", "TLS server name to verify (default: the endpoint's host).")
	fs.BoolVar(&o.OTLPSkipVerify, "otlp.insecure-skip-verify", false, "Do not verify the receiver's certificate.")
	fs.StringArrayVar(&o.OTLPHeaders, "otlp.header", nil, "A header sent with every export, key=value; repeatable.")
	fs.StringVar(&c.BearerTokenFile, "otlp.bearer-token-file", "", "File with a bearer token for the receiver (re-read at every export).")
	fs.StringVar(&c.Compression, "otlp.compression", "gzip", "gzip (level 1), zstd (fastest level; the OpenTelemetry Collector accepts it on both transports) or none.")
	fs.DurationVar(&c.Timeout, "otlp.timeout", 10*time.Second, "Timeout of one export request.")
	fs.DurationVar(&c.RetryInitial, "otlp.retry.initial", time.Second, "First wait after a failed export (doubles, with jitter).")
	fs.DurationVar(&c.RetryMax, "otlp.retry.max", 30*time.Second, "Longest wait between export retries.")
	daemon.BytesVar(fs, &o.MaxBatchBytes, "otlp.max-batch-size", 4<<20, "Largest export request (a quantity: 4Mi).")
	fs.StringVar(&c.QueueDir, "queue.dir", "/var/lib/otel-shoot-scraper/queue", "Folder of the on-disk queue (a hostPath or emptyDir): survives receiver outages and scraper restarts; empty keeps the queue in memory.")
	fs.DurationVar(&o.StateSaveInterval, "state.save-interval", time.Minute, "How often the start times of cumulative series are saved in --queue.dir (also at shutdown), so that a restart keeps them for counters that did not go down; negative disables the state (a restart then starts every series anew, like the Collector).")
	daemon.BytesVar(fs, &o.QueueMaxBytes, "queue.max-size", 256<<20, "Queue bound (a quantity: 256Mi); when full the oldest data is dropped and counted.")
	fs.IntVar(&o.ChunkPoints, "queue.record-max-data-points", DefaultChunkDataPoints, "Most data points in one queue record: a scrape is encoded and queued in records of at most this many data points (and at most --otlp.max-batch-size), so that its OTLP encoding is never held in memory as a whole; consecutive records are merged into export requests of up to --otlp.max-batch-size.")
	daemon.MarkSensitive(fs, "otlp.header")
	o.Node.AddFlags(fs)
	o.Kube.AddFlags(fs)
}

func (o *Options) Complete() error {
	var errs []error
	o.Discovery.NodeName = o.Node.Name
	def := func(d *time.Duration) {
		if *d == 0 {
			*d = o.Interval
		}
	}
	def(&o.Discovery.KubeletInterval)
	def(&o.Discovery.CadvisorInterval)
	def(&o.Discovery.ResourceInterval)
	def(&o.Discovery.NodeExporterInterval)
	def(&o.Discovery.PodsInterval)
	o.Discovery.Static = nil
	for _, s := range o.StaticFlags {
		t, err := ParseStaticTarget(s, o.Interval, o.Discovery.Timeout)
		if err != nil {
			errs = append(errs, fmt.Errorf("--target.static: %w", err))
			continue
		}
		o.Discovery.Static = append(o.Discovery.Static, t)
	}
	o.resourceAttrs = map[string]string{}
	for _, kv := range o.ResourceAttrs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("--resource.attribute: %q: want key=value", kv))
			continue
		}
		o.resourceAttrs[k] = v
	}
	o.OTLP.Headers = map[string]string{}
	for _, kv := range o.OTLPHeaders {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			errs = append(errs, fmt.Errorf("--otlp.header: want key=value"))
			continue
		}
		o.OTLP.Headers[k] = v
	}
	o.OTLP.Protocol = otlpexport.Protocol(o.OTLPProtocol)
	o.OTLP.QueueMaxBytes = o.QueueMaxBytes
	o.OTLP.MaxBatchBytes = int(o.MaxBatchBytes)
	if o.OTLPCAFile != "" || o.OTLPCertFile != "" || o.OTLPServerName != "" || o.OTLPSkipVerify {
		tlsCfg, err := otlpexport.TLSConfig(o.OTLPCAFile, o.OTLPCertFile, o.OTLPKeyFile, o.OTLPServerName, o.OTLPSkipVerify)
		if err != nil {
			errs = append(errs, fmt.Errorf("--otlp.ca-file/--otlp.cert-file/--otlp.key-file: %w", err))
		}
		o.OTLP.TLS = tlsCfg
	}
	if o.RulesFile != "" {
		data, err := os.ReadFile(o.RulesFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--rules.file: %w", err))
		} else if o.rulesFromFile, err = ParseRules(data); err != nil {
			errs = append(errs, fmt.Errorf("--rules.file: %w", err))
		}
	}
	if ns, name, ok := strings.Cut(o.RulesConfigMap, "/"); ok {
		o.rulesNamespace, o.rulesName = ns, name
	}
	return errors.Join(errs...)
}

func (o *Options) Validate() error {
	var errs []error
	if o.OTLP.Endpoint == "" {
		errs = append(errs, errors.New("--otlp.endpoint: required"))
	}
	switch o.OTLPProtocol {
	case "grpc", "http/protobuf":
	default:
		errs = append(errs, fmt.Errorf("--otlp.protocol: %q is not one of grpc, http/protobuf", o.OTLPProtocol))
	}
	switch o.OTLP.Compression {
	case "gzip", "zstd", "none":
	default:
		errs = append(errs, fmt.Errorf("--otlp.compression: %q is not one of gzip, zstd, none", o.OTLP.Compression))
	}
	if o.RulesFilePoll < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--rules.file-poll-interval: at least 100ms, got %s", o.RulesFilePoll))
	}
	if o.Interval < time.Second {
		errs = append(errs, fmt.Errorf("--scrape.interval: at least 1s, got %s", o.Interval))
	}
	if o.Discovery.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--scrape.timeout: must be positive"))
	}
	if _, err := memoryLimit(o.MemoryLimit, "/sys/fs/cgroup", "/proc/self/cgroup"); err != nil {
		errs = append(errs, fmt.Errorf("--memory.limit: %w", err))
	}
	if o.QueueMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("--queue.max-size: at least 1Mi"))
	}
	if o.ChunkPoints < 1 {
		errs = append(errs, fmt.Errorf("--queue.record-max-data-points: at least 1"))
	}
	errs = append(errs, o.validateCombinations()...)
	if o.UseAPI {
		if err := o.Node.Validate(); err != nil {
			errs = append(errs, err)
		}
		if err := o.Kube.Validate(); err != nil {
			errs = append(errs, err)
		}
		if o.RulesConfigMap != "" && (o.rulesNamespace == "" || o.rulesName == "") {
			errs = append(errs, fmt.Errorf("--rules.configmap: %q: want namespace/name", o.RulesConfigMap))
		}
	}
	return errors.Join(errs...)
}

// set tells whether the operator gave flag name.
func (o *Options) set(name string) bool { return o.fs != nil && o.fs.Changed(name) }

// validateCombinations rejects flag combinations that can do nothing: a flag
// that the other flags make ignored, and a configuration without any target.
func (o *Options) validateCombinations() []error {
	var errs []error
	d := &o.Discovery
	if !o.UseAPI {
		for _, f := range []string{"pods.enabled", "pods.interval", "rules.configmap", "rules.key"} {
			if o.set(f) {
				errs = append(errs, fmt.Errorf("--%s: has no effect with --discovery.kubernetes=false (it needs the Kubernetes API)", f))
			}
		}
		if d.NodeAddress == "" {
			for _, f := range []string{"kubelet.enabled", "kubelet.interval", "cadvisor.interval", "kubelet.resource-interval"} {
				if o.set(f) && d.Kubelet {
					errs = append(errs, fmt.Errorf("--%s: the kubelet is scraped at --node.address, which is empty (and --discovery.kubernetes=false cannot look up the Node)", f))
				}
			}
			if d.NodeExporter && d.NodeExporterURL == "" && (o.set("node-exporter.enabled") || o.set("node-exporter.interval")) {
				errs = append(errs, errors.New("--node-exporter.enabled: node-exporter is scraped at --node.address, which is empty (and --discovery.kubernetes=false cannot look up the Node): set --node.address or --node-exporter.url"))
			}
		}
		kubelet := d.Kubelet && d.NodeAddress != ""
		nodeExporter := d.NodeExporter && (d.NodeAddress != "" || d.NodeExporterURL != "")
		if !kubelet && !nodeExporter && len(o.StaticFlags) == 0 {
			errs = append(errs, errors.New("no targets: with --discovery.kubernetes=false set --node.address (kubelet, node-exporter), --node-exporter.url or --target.static"))
		}
	} else if !d.Kubelet && !d.NodeExporter && !d.Pods && len(o.StaticFlags) == 0 {
		errs = append(errs, errors.New("no targets: --kubelet.enabled, --node-exporter.enabled and --pods.enabled are false and there is no --target.static"))
	}
	if !d.NodeExporter && (o.set("node-exporter.url") || o.set("node-exporter.interval")) {
		errs = append(errs, errors.New("--node-exporter.url/--node-exporter.interval: have no effect with --node-exporter.enabled=false"))
	}
	if !d.Kubelet && (o.set("kubelet.interval") || o.set("cadvisor.interval") || o.set("kubelet.resource-interval")) {
		errs = append(errs, errors.New("--kubelet.interval/--cadvisor.interval/--kubelet.resource-interval: have no effect with --kubelet.enabled=false"))
	}
	if !d.Pods && o.set("pods.interval") {
		errs = append(errs, errors.New("--pods.interval: has no effect with --pods.enabled=false"))
	}
	if o.UseAPI && o.RulesFile != "" {
		errs = append(errs, errors.New("--rules.file: needs --discovery.kubernetes=false (with the API, rules come from --rules.configmap)"))
	}
	return errs
}

// chunkOptions are the bounds of the chunks scrapes are encoded and queued in:
// the flag's data points, and one export request's bytes, so that the
// exporter never has to split a chunk.
func (o *Options) chunkOptions() promotlp.ChunkOptions {
	return promotlp.ChunkOptions{MaxDataPoints: o.ChunkPoints, MaxBytes: o.OTLP.MaxBatchBytes}
}
