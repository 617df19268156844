// Package kube builds Kubernetes clients for trellis daemons: REST config from flag,
// KUBECONFIG or in-cluster; clientsets with rate limits; informers scoped to one node;
// server-side apply with a field manager per daemon; Lease-based leader election.
package kube

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/trellis-garden/trellis/internal/version"
)

// ClientOptions are the flags of a daemon that talks to Kubernetes.
type ClientOptions struct {
	Kubeconfig string
	QPS        float32
	Burst      int
}

func (o *ClientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "Path to a kubeconfig file. Empty: $KUBECONFIG, then the in-cluster service account.")
	fs.Float32Var(&o.QPS, "kube.qps", 20, "Maximum queries per second to the Kubernetes API server (sustained).")
	fs.IntVar(&o.Burst, "kube.burst", 40, "Maximum burst of queries to the Kubernetes API server.")
}

func (o *ClientOptions) Complete() error { return nil }

func (o *ClientOptions) Validate() error {
	var errs []error
	if o.QPS <= 0 {
		errs = append(errs, fmt.Errorf("--kube.qps: must be positive, got %v", o.QPS))
	}
	if o.Burst < 1 {
		errs = append(errs, fmt.Errorf("--kube.burst: must be at least 1, got %d", o.Burst))
	}
	if o.Kubeconfig != "" {
		if _, err := os.Stat(o.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("--kubeconfig: %w", err))
		}
	}
	return errors.Join(errs...)
}

// ConfigSource says where a REST config came from.
type ConfigSource string

const (
	SourceFlag      ConfigSource = "flag"
	SourceEnv       ConfigSource = "KUBECONFIG"
	SourceInCluster ConfigSource = "in-cluster"
)

// LoadRESTConfig finds the API server: an explicit kubeconfig path first, then the
// KUBECONFIG environment variable (a list of files, merged as kubectl does), then the
// in-cluster service account.
func LoadRESTConfig(path string) (*rest.Config, ConfigSource, error) {
	if path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, SourceFlag, fmt.Errorf("load kubeconfig %s: %w", path, err)
		}
		return cfg, SourceFlag, nil
	}
	if env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar); env != "" {
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: clientcmd.NewDefaultClientConfigLoadingRules().Precedence}
		cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, SourceEnv, fmt.Errorf("load kubeconfig from $KUBECONFIG: %w", err)
		}
		return cfg, SourceEnv, nil
	}
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return nil, SourceInCluster, fmt.Errorf("no API server: set --kubeconfig or $KUBECONFIG, or run in a cluster (%w)", err)
	}
	return cfg, SourceInCluster, nil
}

// RESTConfig loads the config and applies the rate limits and a user agent naming
// the daemon and its version.
func (o *ClientOptions) RESTConfig(daemonName string) (*rest.Config, error) {
	cfg, _, err := LoadRESTConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS = o.QPS
	cfg.Burst = o.Burst
	cfg.UserAgent = UserAgent(daemonName)
	return cfg, nil
}

// Clientset builds a typed clientset from the options.
func (o *ClientOptions) Clientset(daemonName string) (kubernetes.Interface, *rest.Config, error) {
	cfg, err := o.RESTConfig(daemonName)
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("build clientset: %w", err)
	}
	return cs, cfg, nil
}

// UserAgent is what a daemon sends to the API server, e.g. "trellis-wg-gateway/v0.1.0".
func UserAgent(daemonName string) string {
	return Identity(daemonName) + "/" + version.Get().Version
}
