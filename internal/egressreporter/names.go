package egressreporter

import (
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/trellis-garden/trellis/internal/kube"
)

const (
	// Name is the reporter's binary and daemon name.
	Name = "egress-reporter"
	// ProbeName is the probe subcommand's daemon name (logs, metric namespace).
	ProbeName = "egress-probe"

	// ShootInfoNamespace and ShootInfoName name Gardener's shoot-info ConfigMap.
	ShootInfoNamespace = "kube-system"
	ShootInfoName      = "shoot-info"
	// EgressCIDRsKey is the one key of shoot-info the reporter owns.
	EgressCIDRsKey = "egressCIDRs"

	// AddressAnnotation is set by the probe on its Node: the egress addresses it
	// found, comma-separated (one per probed family).
	AddressAnnotation = "trellis.dev/egress-address"
	// ObservedAtAnnotation is when the probe found them (RFC 3339, UTC).
	ObservedAtAnnotation = "trellis.dev/egress-observed-at"

	// Event reasons, on the shoot-info ConfigMap.
	ReasonChanged  = "EgressCIDRsChanged"
	ReasonConflict = "EgressCIDRsConflict"

	// Sources.
	SourceInfrastructure = "infrastructure"
	SourceProbe          = "probe"
	SourceStatic         = "static"
)

// FieldManager is the reporter's server-side apply field manager.
var FieldManager = kube.FieldManager(Name)

// ProbeFieldManager is the probe's field manager on Nodes.
var ProbeFieldManager = kube.FieldManager(ProbeName)

// InfrastructureGVR is Gardener's Infrastructure resource, read with the dynamic
// client (the gardener module is not a dependency).
var InfrastructureGVR = schema.GroupVersionResource{Group: "extensions.gardener.cloud", Version: "v1alpha1", Resource: "infrastructures"}
