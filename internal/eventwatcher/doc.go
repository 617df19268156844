// Package eventwatcher is the controller of the event-watcher daemon: it polls its
// own VM's instance metadata service through an imds.Client and turns scheduled
// maintenance and termination notices into objects on its Node (a ScheduledEvent
// condition, a taint, a label, Events), and optionally acts on them: cordon, drain
// through the Eviction API (honouring PodDisruptionBudgets), approve the event
// early, and uncordon when the event is over.
//
// The controller is level-triggered: each pass compares what the current events
// ask for with the Node (read from a single-node informer cache) and writes only
// the difference. What it must remember across restarts (that it cordoned the
// node, how far a drain got) lives in annotations on the Node, so a restarted
// controller resumes a drain and never uncordons a node someone else cordoned.
//
// Failures never end the controller: metadata errors keep the last known events
// and are retried with backoff, API errors are retried with backoff, and a drain
// blocked by a PodDisruptionBudget is retried with backoff and reported on the
// condition and in DrainFailed Events.
package eventwatcher
