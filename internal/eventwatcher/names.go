package eventwatcher

import corev1 "k8s.io/api/core/v1"

// Names of what event-watcher writes on its Node.
const (
	// ConditionType is the Node condition: True while an event is announced.
	ConditionType corev1.NodeConditionType = "ScheduledEvent"
	// ConditionReasonScheduled is the condition's reason while events exist.
	ConditionReasonScheduled = "EventScheduled"
	// ConditionReasonNone is the condition's reason when no event is announced.
	ConditionReasonNone = "NoScheduledEvents"

	// TaintKey is the taint set by the taint, cordon and drain actions; its value
	// is the event type (e.g. Reboot).
	TaintKey = "trellis.dev/scheduled-event"
	// TimeLabel holds the event's NotBefore as unix seconds.
	TimeLabel = "trellis.dev/scheduled-event-time"

	// CordonedAnnotation is set, in the same write as spec.unschedulable, when
	// event-watcher cordons the node; its value is the event ID. Only a node with
	// this annotation is uncordoned by event-watcher.
	CordonedAnnotation = "trellis.dev/cordoned-for-event"
	// DrainStateAnnotation is the drain progress: DrainStateDraining or
	// DrainStateDrained.
	DrainStateAnnotation = "trellis.dev/drain-state"
	// DrainEventAnnotation is the ID of the event the drain started for.
	DrainEventAnnotation = "trellis.dev/drain-event"
	// DrainStartedAnnotation is when the drain started (RFC 3339); the drain
	// deadline without a NotBefore and the drain duration count from it.
	DrainStartedAnnotation = "trellis.dev/drain-started"

	// FieldManager names event-watcher's writes in managedFields: kube.Identity(Name),
	// also the source component of its Events and the start of its user agent.
	FieldManager = "trellis-" + Name
	// Component is the source component of the Events it records (kube.NewEventRecorder).
	Component = FieldManager
)

// Drain states in DrainStateAnnotation.
const (
	DrainStateDraining = "Draining"
	DrainStateDrained  = "Drained"
)

// Reasons of the Events recorded on the Node.
const (
	ReasonEventScheduled = "EventScheduled"
	ReasonEventStarted   = "EventStarted"
	ReasonEventCanceled  = "EventCanceled"
	ReasonEventCompleted = "EventCompleted"
	ReasonCordon         = "Cordon"
	ReasonDrain          = "Drain"
	ReasonDrainFailed    = "DrainFailed"
	// ReasonPodNotEvicted: the drain policy leaves a pod on the node (no
	// controller, or emptyDir data), as kubectl drain would refuse it.
	ReasonPodNotEvicted = "PodNotEvicted"
	// ReasonPodStuckTerminating: a pod kept terminating past
	// --drain.terminating-timeout; the drain no longer waits for it.
	ReasonPodStuckTerminating = "PodStuckTerminating"
	ReasonApproved            = "Approved"
	ReasonApproveFailed       = "ApproveFailed"
	ReasonUncordon            = "Uncordon"
	// ReasonEventNotUnderstood: the metadata client reported a notice it could
	// not parse into an event (a new type or status); nothing is done about it.
	ReasonEventNotUnderstood = "EventNotUnderstood"
)
