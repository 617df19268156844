package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// NodeOptions name the node a per-node daemon serves.
type NodeOptions struct {
	Name string
}

// NodeNameEnv is set from the downward API (spec.nodeName) in trellis DaemonSets.
const NodeNameEnv = "NODE_NAME"

func (o *NodeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Name, "node.name", os.Getenv(NodeNameEnv), "Name of the Node this daemon runs on (default $"+NodeNameEnv+", set from the downward API).")
}

func (o *NodeOptions) Complete() error { return nil }

func (o *NodeOptions) Validate() error {
	if o.Name == "" {
		return errors.New("--node.name: required (or set $" + NodeNameEnv + ")")
	}
	return nil
}

// NodeInformers hold informers that see one node only: the Node object itself
// (field selector metadata.name) and the Pods scheduled to it (spec.nodeName). A
// per-node daemon never lists all Pods of a cluster.
type NodeInformers struct {
	NodeName string
	// Node watches only the Node named NodeName.
	Node informers.SharedInformerFactory
	// Pods watches only Pods on NodeName (all namespaces).
	Pods informers.SharedInformerFactory
}

// NewNodeInformers returns factories scoped to nodeName. resync 0 disables periodic
// resync.
func NewNodeInformers(client kubernetes.Interface, nodeName string, resync time.Duration) *NodeInformers {
	byName := fields.OneTermEqualSelector(metav1.ObjectNameField, nodeName).String()
	onNode := fields.OneTermEqualSelector("spec.nodeName", nodeName).String()
	return &NodeInformers{
		NodeName: nodeName,
		Node: informers.NewSharedInformerFactoryWithOptions(client, resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = byName })),
		Pods: informers.NewSharedInformerFactoryWithOptions(client, resync,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = onNode })),
	}
}

// Start starts every informer requested so far; it does not block.
func (n *NodeInformers) Start(ctx context.Context) {
	n.Node.Start(ctx.Done())
	n.Pods.Start(ctx.Done())
}

// WaitForCacheSync blocks until every started informer has synced, or ctx ends.
func (n *NodeInformers) WaitForCacheSync(ctx context.Context) error {
	for _, f := range []informers.SharedInformerFactory{n.Node, n.Pods} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync: %w", typ, context.Cause(ctx))
			}
		}
	}
	return nil
}

// GetNode returns this node from the informer cache.
func (n *NodeInformers) GetNode() (*corev1.Node, error) {
	return n.Node.Core().V1().Nodes().Lister().Get(n.NodeName)
}

// HasSynced reports whether the given informers have synced; a readiness check.
func HasSynced(informers ...cache.SharedIndexInformer) func(context.Context) error {
	return func(context.Context) error {
		for _, i := range informers {
			if !i.HasSynced() {
				return errors.New("informer caches not synced")
			}
		}
		return nil
	}
}
