package otelscraper

import (
	"fmt"
	"net/url"
	"sort"
	"time"
)

// Target is one endpoint to scrape.
type Target struct {
	// Job names the kind of target and selects its filter rules: kubelet,
	// cadvisor, kubelet-resource, node-exporter, pods, or a static target's job.
	Job string
	// URL is scraped with GET.
	URL string
	// Interval between scrapes, Timeout of one scrape.
	Interval, Timeout time.Duration
	// Auth: the kubelet needs the service account token and the cluster CA.
	BearerTokenFile string
	CAFile          string
	// InsecureSkipVerify skips TLS verification (kubelets with self-signed
	// serving certificates); off by default.
	InsecureSkipVerify bool
	// Attributes are added to the target's OTLP resource (e.g. k8s.pod.name).
	Attributes map[string]string
}

// key identifies a target across discovery rounds: same key, same scrape loop.
func (t Target) key() string {
	keys := make([]string, 0, len(t.Attributes))
	for k := range t.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := t.Job + "|" + t.URL + "|" + t.Interval.String() + "|" + t.Timeout.String() + "|" + t.BearerTokenFile + "|" + t.CAFile + "|" + fmt.Sprint(t.InsecureSkipVerify)
	for _, k := range keys {
		s += "|" + k + "=" + t.Attributes[k]
	}
	return s
}

// instance is the target's host:port, as Prometheus' instance label.
func (t Target) instance() string {
	u, err := url.Parse(t.URL)
	if err != nil {
		return t.URL
	}
	return u.Host
}
