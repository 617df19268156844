package otelscraper

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Pod annotations that make a pod on this node a target (the common convention).
const (
	AnnotationScrape = "prometheus.io/scrape"
	AnnotationPort   = "prometheus.io/port"
	AnnotationPath   = "prometheus.io/path"
	AnnotationScheme = "prometheus.io/scheme"
	// Per-pod interval and timeout (trellis' own).
	AnnotationInterval = "trellis.dev/scrape-interval"
	AnnotationTimeout  = "trellis.dev/scrape-timeout"
)

// DiscoveryConfig says which node-local targets to scrape.
type DiscoveryConfig struct {
	NodeName string
	// NodeAddress is the node's IP or host name; empty: the Node's InternalIP.
	NodeAddress string

	Kubelet            bool
	KubeletPort        int
	KubeletCAFile      string
	KubeletTokenFile   string
	KubeletInsecureTLS bool
	KubeletInterval    time.Duration
	CadvisorInterval   time.Duration
	ResourceInterval   time.Duration

	NodeExporter         bool
	NodeExporterURL      string // "" = http://<node address>:9100/metrics
	NodeExporterInterval time.Duration

	Pods         bool
	PodsInterval time.Duration

	Static []Target

	Timeout time.Duration
}

// nodeAddress returns the address to reach the node's own endpoints.
func (c DiscoveryConfig) nodeAddress(node *corev1.Node) string {
	if c.NodeAddress != "" {
		return c.NodeAddress
	}
	if node == nil {
		return ""
	}
	for _, a := range node.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// targets computes the target set from the Node and the pods on it.
func (c DiscoveryConfig) targets(node *corev1.Node, pods []*corev1.Pod) []Target {
	var out []Target
	base := map[string]string{"k8s.node.name": c.NodeName}
	if addr := c.nodeAddress(node); addr != "" {
		hostPort := func(port int) string { return net.JoinHostPort(addr, strconv.Itoa(port)) }
		if c.Kubelet {
			for _, k := range []struct {
				job, path string
				interval  time.Duration
			}{{"kubelet", "/metrics", c.KubeletInterval}, {"cadvisor", "/metrics/cadvisor", c.CadvisorInterval}, {"kubelet-resource", "/metrics/resource", c.ResourceInterval}} {
				if k.interval <= 0 {
					continue
				}
				out = append(out, Target{
					Job: k.job, URL: "https://" + hostPort(c.KubeletPort) + k.path,
					Interval: k.interval, Timeout: min(c.Timeout, k.interval),
					BearerTokenFile: c.KubeletTokenFile, CAFile: c.KubeletCAFile, InsecureSkipVerify: c.KubeletInsecureTLS,
					Attributes: base,
				})
			}
		}
		if c.NodeExporter && c.NodeExporterURL == "" {
			out = append(out, c.nodeExporter("http://"+hostPort(9100)+"/metrics", base))
		}
	}
	if c.NodeExporter && c.NodeExporterURL != "" { // needs no node address
		out = append(out, c.nodeExporter(c.NodeExporterURL, base))
	}
	if c.Pods {
		for _, p := range pods {
			if t, ok := c.podTarget(p); ok {
				out = append(out, t)
			}
		}
	}
	for _, t := range c.Static {
		if t.Attributes == nil {
			t.Attributes = base
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

func (c DiscoveryConfig) nodeExporter(url string, attrs map[string]string) Target {
	return Target{Job: "node-exporter", URL: url, Interval: c.NodeExporterInterval, Timeout: min(c.Timeout, c.NodeExporterInterval), Attributes: attrs}
}

// podTarget turns an annotated, running pod with an IP into a target.
func (c DiscoveryConfig) podTarget(p *corev1.Pod) (Target, bool) {
	if p.Annotations[AnnotationScrape] != "true" || p.Status.PodIP == "" || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return Target{}, false
	}
	port := p.Annotations[AnnotationPort]
	if port == "" {
		// The first declared container port, as Prometheus' pod role would pick.
		for _, ct := range p.Spec.Containers {
			for _, cp := range ct.Ports {
				if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
					port = strconv.Itoa(int(cp.ContainerPort))
					break
				}
			}
			if port != "" {
				break
			}
		}
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return Target{}, false
	}
	scheme := strings.ToLower(p.Annotations[AnnotationScheme])
	if scheme != "https" {
		scheme = "http"
	}
	path := p.Annotations[AnnotationPath]
	if path == "" {
		path = "/metrics"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := url.URL{Scheme: scheme, Host: net.JoinHostPort(p.Status.PodIP, port), Path: path}
	interval, timeout := c.PodsInterval, c.Timeout
	if d, err := time.ParseDuration(p.Annotations[AnnotationInterval]); err == nil && d >= time.Second {
		interval = d
	}
	if d, err := time.ParseDuration(p.Annotations[AnnotationTimeout]); err == nil && d > 0 {
		timeout = d
	}
	return Target{
		Job: "pods", URL: u.String(), Interval: interval, Timeout: min(timeout, interval),
		Attributes: map[string]string{"k8s.node.name": c.NodeName, "k8s.namespace.name": p.Namespace, "k8s.pod.name": p.Name, "k8s.pod.uid": string(p.UID)},
	}, true
}

// ParseStaticTarget parses a --target.static value:
// job=<name>,url=<url>[,interval=<duration>][,timeout=<duration>].
func ParseStaticTarget(s string, defInterval, defTimeout time.Duration) (Target, error) {
	t := Target{Interval: defInterval, Timeout: defTimeout}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return t, fmt.Errorf("%q: want key=value", part)
		}
		switch k {
		case "job":
			t.Job = v
		case "url":
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return t, fmt.Errorf("url %q: want http(s)://host:port/path", v)
			}
			t.URL = v
		case "interval", "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return t, fmt.Errorf("%s %q: want a positive duration", k, v)
			}
			if k == "interval" {
				t.Interval = d
			} else {
				t.Timeout = d
			}
		default:
			return t, fmt.Errorf("unknown key %q (job, url, interval, timeout)", k)
		}
	}
	if t.Job == "" || t.URL == "" {
		return t, fmt.Errorf("%q: job and url are required", s)
	}
	t.Timeout = min(t.Timeout, t.Interval)
	return t, nil
}
