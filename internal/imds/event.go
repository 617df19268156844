// Package imds reads scheduled maintenance and termination notices from the
// instance metadata services of Azure, AWS and GCP, and normalises them into one
// Event model. It knows nothing about Kubernetes.
package imds

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Provider names.
const (
	Azure = "azure"
	AWS   = "aws"
	GCP   = "gcp"
)

// EventType is a normalised kind of event. RawType keeps the cloud's own word.
type EventType string

const (
	// Reboot: the VM (or its host) is rebooted; the VM comes back.
	// Azure Reboot, AWS instance-reboot / system-reboot.
	TypeReboot EventType = "Reboot"
	// Redeploy: the VM moves to another host (Azure Redeploy).
	TypeRedeploy EventType = "Redeploy"
	// Freeze: the VM is paused for a few seconds (Azure Freeze).
	TypeFreeze EventType = "Freeze"
	// Maintenance: host maintenance whose impact on the VM is not announced
	// (AWS system-maintenance, GCP upcoming maintenance).
	TypeMaintenance EventType = "Maintenance"
	// LiveMigrate: the VM keeps running and moves to another host, with a
	// pause of a few seconds (GCP MIGRATE_ON_HOST_MAINTENANCE).
	TypeLiveMigrate EventType = "LiveMigrate"
	// Preempt: a spot/preemptible VM is taken away (Azure Preempt, AWS spot
	// instance-action, GCP preempted).
	TypePreempt EventType = "Preempt"
	// Terminate: the VM is deleted or stopped (Azure Terminate, AWS
	// instance-retirement / instance-stop, GCP TERMINATE_ON_HOST_MAINTENANCE).
	TypeTerminate EventType = "Terminate"
	// Rebalance: AWS rebalance recommendation (a spot VM is at elevated risk).
	TypeRebalance EventType = "Rebalance"
)

// Status of an event.
type Status string

const (
	StatusScheduled Status = "Scheduled"
	StatusStarted   Status = "Started"
)

// Event is one announced event that concerns this VM.
type Event struct {
	// ID is stable across polls for the same event (Azure EventId, AWS EventId,
	// synthesised for spot/rebalance/GCP notices from their content).
	ID       string
	Provider string
	Type     EventType
	// RawType is the cloud's own name (e.g. "system-reboot", "Freeze",
	// "TERMINATE_ON_HOST_MAINTENANCE").
	RawType string
	Status  Status
	// NotBefore is the earliest start; zero when unknown or already started.
	NotBefore time.Time
	// Duration is the expected impact; negative when unknown.
	Duration    time.Duration
	Description string
	// Approvable: the cloud accepts an early start (Azure only).
	Approvable bool
}

// DurationUnknown is Event.Duration when the cloud does not say how long the
// impact lasts (Azure DurationInSeconds -1, AWS without NotAfter, ...).
const DurationUnknown time.Duration = -1

// Snapshot is the complete set of current events of this VM at one poll.
type Snapshot struct {
	// Events are the events the client understood; only these may be acted on.
	Events []Event
	// Version changes whenever the cloud's document changes (Azure
	// DocumentIncarnation, GCP the ETags of the items read); empty when the
	// cloud has none. It is transport state: an event's identity is its ID.
	Version string
	// Unknown lists notices for this VM that the client did not understand (a
	// new event type, code, action or status). They are never in Events and
	// never approvable: the caller counts and reports them (e.g. a metric
	// "unknown event type" with RawType) and takes no action.
	Unknown []UnknownEvent
	// Errors are failures of a part of the source that did not stop the
	// snapshot (GCP reads three items independently): the events of a failing
	// part are its last known ones. Callers count and log them like a failed
	// Poll; Poll itself fails only when there is no last known state.
	Errors []error
}

// LongPoller is implemented by clients whose Poll waits until something
// changed (or a heartbeat timeout) and that space their own requests. Callers
// poll such a client again as soon as Poll returns, without a poll interval:
// otherwise a change that follows another one closely would wait for it.
type LongPoller interface {
	Client
	// LongPolls reports whether Poll waits for changes.
	LongPolls() bool
}

// UnknownEvent is a notice for this VM that the client reports but does not act on.
type UnknownEvent struct {
	// ID is the cloud's or the synthesised event id; empty when there is none.
	ID       string
	Provider string
	// RawType is the cloud's own type word (Azure EventType, AWS Code or spot
	// action, GCP value); not understood unless RawStatus is set.
	RawType string
	// RawStatus is the cloud's status word when that is what was not
	// understood (Azure EventStatus, AWS State, GCP maintenance_status).
	RawStatus string
}

// Client polls one cloud's metadata service.
type Client interface {
	// Provider returns the provider name (Azure, AWS, GCP).
	Provider() string
	// Poll returns the current events of this VM. It may block up to the
	// client's long-poll timeout (GCP waits for a change). Errors are
	// *RequestError (HTTP status, transport) or *ParseError (malformed data);
	// on error the caller keeps its previous state and retries with backoff.
	Poll(ctx context.Context) (Snapshot, error)
	// Approve asks the cloud to start the event now (Azure StartRequests).
	// ErrNotSupported on clouds without approval; ErrEventNotListed for an id
	// that the last successful Poll did not return in Snapshot.Events.
	Approve(ctx context.Context, eventID string) error
}

// ErrNotSupported is returned by Approve on clouds without early approval.
var ErrNotSupported = errors.New("imds: not supported by this provider")

// ErrEventNotListed is returned by Approve for an event id that the last
// successful Poll did not list as an actionable event of this VM.
var ErrEventNotListed = errors.New("imds: event not listed for this VM by the last poll")

// RequestError is a failed request to the metadata service.
type RequestError struct {
	Provider string
	Path     string
	// Status is the HTTP status, 0 for transport errors (timeouts, refused).
	Status int
	Err    error
}

func (e *RequestError) Error() string {
	if e.Status != 0 {
		return e.Provider + " metadata " + e.Path + ": HTTP " + strconv.Itoa(e.Status) + errSuffix(e.Err)
	}
	return e.Provider + " metadata " + e.Path + errSuffix(e.Err)
}
func (e *RequestError) Unwrap() error { return e.Err }

// ParseError is a response the client did not understand; no action is taken
// on it.
type ParseError struct {
	Provider string
	Path     string
	Err      error
}

func (e *ParseError) Error() string {
	return e.Provider + " metadata " + e.Path + ": malformed response: " + e.Err.Error()
}
func (e *ParseError) Unwrap() error { return e.Err }

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return ": " + err.Error()
}
