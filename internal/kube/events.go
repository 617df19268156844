package kube

import (
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// NewEventRecorder returns a recorder that writes Events to the API server as
// component (e.g. "wg-gateway"), and a function that flushes and stops it. The
// daemon needs RBAC create and patch on events in the objects' namespaces.
func NewEventRecorder(client kubernetes.Interface, component string) (record.EventRecorder, func()) {
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	host, _ := os.Hostname() // the pod name in a cluster; only informative
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: component, Host: host})
	return recorder, broadcaster.Shutdown
}
