package eventwatcher

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trellis-garden/trellis/internal/daemon"
	"github.com/trellis-garden/trellis/internal/imds"
)

// NewCommand builds the event-watcher command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	mo := &MetadataOptions{}
	return daemon.NewCommand(daemon.Spec{
		Name:  Name,
		Short: "Cloud scheduled events become Node conditions, taints, Events and safe drains",
		Long: `event-watcher runs on every node and polls its own VM's instance metadata service
(Azure Scheduled Events, AWS IMDSv2, GCP metadata) for planned maintenance, reboots,
redeploys, retirements and spot/preempt notices. It reports them on its Node (condition
ScheduledEvent, taint and label trellis.dev/scheduled-event, Events) and, per event
type, cordons and drains the node through the eviction API (honouring
PodDisruptionBudgets), optionally approves the event early, and uncordons afterwards.`,
		ListenAddress: ":8082",
		Options:       []daemon.Options{o, mo},
		Run:           func(ctx context.Context, d *daemon.Daemon) error { return run(ctx, d, o, mo) },
	})
}

func run(ctx context.Context, d *daemon.Daemon, o *Options, mo *MetadataOptions) error {
	client, _, err := o.Kube.Clientset(Name)
	if err != nil {
		return err
	}
	source, err := newSource(ctx, d, client, o, mo)
	if err != nil {
		return err
	}
	ctrl, err := New(client, source, o.Config, d.Logger, d.Registry, d.Namespace)
	if err != nil {
		return err
	}
	d.Ready.Add("controller", ctrl.Ready)
	return ctrl.Run(ctx)
}

// newSource builds the metadata client, reading the Node's providerID when the
// provider is auto or Azure's resource names are not given. The API server may be
// unreachable at start: it retries until ctx ends.
func newSource(ctx context.Context, d *daemon.Daemon, client kubernetes.Interface, o *Options, mo *MetadataOptions) (imds.Client, error) {
	provider, resources := o.Provider, o.AzureResources
	if provider == "auto" || (provider == imds.Azure && len(resources) == 0) {
		providerID, err := nodeProviderID(ctx, d, client, o.Node.Name)
		if err != nil {
			return nil, err
		}
		if provider == "auto" {
			if provider, err = imds.ProviderFromProviderID(providerID); err != nil {
				return nil, fmt.Errorf("--metadata.provider=auto: %w", err)
			}
		}
		if provider == imds.Azure && len(resources) == 0 {
			resources = imds.AzureResourceNames(providerID)
		}
	}
	d.Logger.Info("metadata provider", "provider", provider, "endpoint", o.Endpoint, "azureResources", resources)
	switch provider {
	case imds.Azure:
		if len(resources) == 0 {
			return nil, fmt.Errorf("azure: no resource names: set --metadata.azure.resources")
		}
		return asClient(imds.NewAzure(imds.AzureOptions{Endpoint: o.Endpoint, Resources: resources}))
	case imds.AWS:
		return asClient(imds.NewAWS(imds.AWSOptions{Endpoint: o.Endpoint, TokenTTL: mo.AWSTokenTTL}))
	default:
		return asClient(imds.NewGCP(imds.GCPOptions{Endpoint: o.Endpoint}))
	}
}

func nodeProviderID(ctx context.Context, d *daemon.Daemon, client kubernetes.Interface, name string) (string, error) {
	wait := time.Second
	for {
		node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if node.Spec.ProviderID == "" {
				return "", fmt.Errorf("node %s has no spec.providerID: set --metadata.provider", name)
			}
			return node.Spec.ProviderID, nil
		}
		d.Logger.Warn("cannot read own node, retrying", "node", name, "err", err, "retryIn", wait.String())
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// asClient turns a constructor's (*T, error) into (imds.Client, error) without a
// typed nil in the interface.
func asClient[T imds.Client](c T, err error) (imds.Client, error) {
	if err != nil {
		return nil, err
	}
	return c, nil
}
