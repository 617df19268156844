package kube

import (
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Identity is how a daemon names itself to the API server, spelled one way: the
// source component of its Events, its field manager (FieldManager) and the
// start of its user agent (UserAgent), e.g. "trellis-wg-gateway".
func Identity(daemonName string) string { return "trellis-" + daemonName }

// EventOptions tune a recorder; the zero value is client-go's defaults.
type EventOptions struct {
	// Host is the Events' source host; empty means the hostname (the pod name).
	Host string
	// Correlator replaces client-go's spam filter and aggregation settings.
	Correlator *record.CorrelatorOptions
}

// eventScheme knows only the kinds trellis daemons record Events on (core/v1:
// Node, Service, ConfigMap; an ObjectReference or an unstructured object carries
// its own kind), not client-go's scheme of every API group.
var eventScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail
	}
	return s
}()

// NewEventRecorder is the one way a daemon records Events: as Identity(daemonName),
// to the API server, starting at once. It returns the recorder and a function
// that flushes and stops it. The daemon needs RBAC create and patch on events in
// the objects' namespaces.
func NewEventRecorder(client kubernetes.Interface, daemonName string, opts ...EventOptions) (record.EventRecorder, func()) {
	var o EventOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	var bopts []record.BroadcasterOption
	if o.Correlator != nil {
		bopts = append(bopts, record.WithCorrelatorOptions(*o.Correlator))
	}
	broadcaster := record.NewBroadcaster(bopts...)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	if o.Host == "" {
		o.Host, _ = os.Hostname() // only informative
	}
	recorder := broadcaster.NewRecorder(eventScheme, corev1.EventSource{Component: Identity(daemonName), Host: o.Host})
	return recorder, broadcaster.Shutdown
}
