package mrsigner

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// ManagedResource facts (resources.gardener.cloud/v1alpha1). The gardener module is
// not a dependency: the controller reads the few fields it needs from unstructured
// objects.
var ManagedResourceGVR = schema.GroupVersionResource{Group: "resources.gardener.cloud", Version: "v1alpha1", Resource: "managedresources"}

const (
	// IgnoreAnnotation makes Gardener's resource manager skip a ManagedResource.
	IgnoreAnnotation = "resources.gardener.cloud/ignore"
	// QuarantineAnnotation records why mr-signer quarantined a ManagedResource.
	QuarantineAnnotation = "trellis.dev/quarantined"

	secretRefIndex = "secretRef"
)

// secretRefs returns the names in spec.secretRefs.
func secretRefs(mr *unstructured.Unstructured) []string {
	refs, _, _ := unstructured.NestedSlice(mr.Object, "spec", "secretRefs")
	names := make([]string, 0, len(refs))
	for _, r := range refs {
		if m, ok := r.(map[string]any); ok {
			if n, ok := m["name"].(string); ok && n != "" {
				names = append(names, n)
			}
		}
	}
	return names
}

// newManagedResourceInformer watches ManagedResources (in namespace, or all when
// empty) and indexes them by "<namespace>/<secret name>" of each secretRef.
func newManagedResourceInformer(dyn dynamic.Interface, namespace string, resync time.Duration) cache.SharedIndexInformer {
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, resync, namespace, func(*metav1.ListOptions) {})
	inf := f.ForResource(ManagedResourceGVR).Informer()
	_ = inf.AddIndexers(cache.Indexers{secretRefIndex: func(obj any) ([]string, error) {
		mr, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, nil
		}
		var keys []string
		for _, n := range secretRefs(mr) {
			keys = append(keys, mr.GetNamespace()+"/"+n)
		}
		return keys, nil
	}})
	return inf
}

// mrReferences answers whether a Secret is named by a ManagedResource.
type mrReferences struct{ inf cache.SharedIndexInformer }

func (r mrReferences) Referenced(namespace, name string) bool {
	if r.inf == nil {
		return false
	}
	objs, err := r.inf.GetIndexer().ByIndex(secretRefIndex, namespace+"/"+name)
	return err == nil && len(objs) > 0
}

// countQuarantined counts the cached ManagedResources with QuarantineAnnotation.
func countQuarantined(inf cache.SharedIndexInformer) int {
	n := 0
	for _, o := range inf.GetStore().List() {
		if mr, ok := o.(*unstructured.Unstructured); ok {
			if _, q := mr.GetAnnotations()[QuarantineAnnotation]; q {
				n++
			}
		}
	}
	return n
}
