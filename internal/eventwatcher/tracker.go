package eventwatcher

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
)

// tracked is one current event with what earlier polls told about it.
type tracked struct {
	imds.Event
	// KnownNotBefore is the last non-zero NotBefore seen: Azure clears NotBefore
	// once an event has started.
	KnownNotBefore time.Time
	// StartedSeen: a poll reported the event Started.
	StartedSeen bool
	// Approved: this process asked the cloud to start the event and the cloud
	// accepted (Azure StartRequests answered 200).
	Approved bool
}

// Event statuses in metrics and transitions.
const (
	statusScheduled   = "scheduled"
	statusStarted     = "started"
	statusRescheduled = "rescheduled"
	statusCompleted   = "completed"
	statusCanceled    = "canceled"
)

// transition is a change of one event between two polls.
type transition struct {
	ev     tracked
	status string // one of the status* constants
	// first: the event was not known before (new, or first poll after a start).
	first bool
}

// tracker follows the events of one VM from poll to poll.
type tracker struct {
	events map[string]*tracked
	// unknown are the notices the metadata client did not understand, by key.
	unknown map[string]imds.UnknownEvent
}

func unknownKey(u imds.UnknownEvent) string {
	return u.Provider + "\x00" + u.ID + "\x00" + u.RawType + "\x00" + u.RawStatus
}

// updateUnknown replaces the notices not understood; it returns those not
// seen at the previous poll, and whether the set changed.
func (t *tracker) updateUnknown(list []imds.UnknownEvent) (changed bool, fresh []imds.UnknownEvent) {
	next := make(map[string]imds.UnknownEvent, len(list))
	for _, u := range list {
		k := unknownKey(u)
		if _, ok := next[k]; ok {
			continue
		}
		next[k] = u
		if _, ok := t.unknown[k]; !ok {
			fresh = append(fresh, u)
		}
	}
	changed = len(fresh) > 0 || len(next) != len(t.unknown)
	t.unknown = next
	return changed, fresh
}

// unknownList returns the notices not understood, sorted.
func (t *tracker) unknownList() []imds.UnknownEvent {
	keys := make([]string, 0, len(t.unknown))
	for k := range t.unknown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]imds.UnknownEvent, len(keys))
	for i, k := range keys {
		out[i] = t.unknown[k]
	}
	return out
}

// describeUnknown names a notice that was not understood.
func describeUnknown(u imds.UnknownEvent) string {
	s := u.Provider + " notice " + strconv.Quote(u.RawType)
	if u.RawStatus != "" {
		s += " with status " + strconv.Quote(u.RawStatus)
	}
	if u.ID != "" {
		s += " (" + u.ID + ")"
	}
	return s
}

// errInvalidSnapshot marks a snapshot that cannot be acted on.
var errInvalidSnapshot = errors.New("invalid snapshot")

// validateSnapshot rejects data the controller does not understand, so no action
// is taken on it and the last known state stays.
func validateSnapshot(s imds.Snapshot) error {
	for i, e := range s.Events {
		if e.ID == "" {
			return fmt.Errorf("%w: event %d (%s %s) has no ID", errInvalidSnapshot, i, e.Provider, e.Type)
		}
		if e.Status != imds.StatusScheduled && e.Status != imds.StatusStarted {
			return fmt.Errorf("%w: event %s has status %q", errInvalidSnapshot, e.ID, e.Status)
		}
	}
	return nil
}

// update replaces the current events with a validated snapshot taken at now. It
// reports whether anything the controller acts on changed, and the transitions
// in a stable order (by event ID).
func (t *tracker) update(s imds.Snapshot, now time.Time) (changed bool, out []transition) {
	if t.events == nil {
		t.events = map[string]*tracked{}
	}
	seen := make(map[string]bool, len(s.Events))
	for _, e := range s.Events {
		seen[e.ID] = true
		old, ok := t.events[e.ID]
		if !ok {
			tr := &tracked{Event: e, KnownNotBefore: e.NotBefore, StartedSeen: e.Status == imds.StatusStarted}
			t.events[e.ID] = tr
			status := statusScheduled
			if tr.StartedSeen {
				status = statusStarted
			}
			out = append(out, transition{ev: *tr, status: status, first: true})
			changed = true
			continue
		}
		if !sameEvent(old.Event, e) {
			changed = true
		}
		prev := *old
		old.Event = e
		if !e.NotBefore.IsZero() {
			old.KnownNotBefore = e.NotBefore
		}
		switch {
		case e.Status == imds.StatusStarted && !prev.StartedSeen:
			old.StartedSeen = true
			out = append(out, transition{ev: *old, status: statusStarted})
		case !e.NotBefore.IsZero() && !prev.KnownNotBefore.IsZero() && !e.NotBefore.Equal(prev.KnownNotBefore):
			out = append(out, transition{ev: *old, status: statusRescheduled})
		}
	}
	for id, old := range t.events {
		if seen[id] {
			continue
		}
		delete(t.events, id)
		changed = true
		out = append(out, transition{ev: *old, status: vanished(*old, now)})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ev.ID < out[j].ev.ID })
	return changed, out
}

// markApproved records that the cloud accepted our request to start event id.
func (t *tracker) markApproved(id string) {
	if e, ok := t.events[id]; ok {
		e.Approved = true
	}
}

// vanished tells how an event that left the snapshot ended: Azure and AWS drop
// an event once it is over. Seen started, or approved by us (it then starts at
// once, and a short one can be over before the next poll), means it ran; gone while still
// scheduled before its NotBefore means it was canceled; anything else (gone
// after NotBefore without being seen started, e.g. a Freeze of a few seconds
// between two polls) is taken as completed.
func vanished(t tracked, now time.Time) string {
	if t.StartedSeen || t.Approved {
		return statusCompleted
	}
	if !t.KnownNotBefore.IsZero() && now.Before(t.KnownNotBefore) {
		return statusCanceled
	}
	return statusCompleted
}

// list returns the current events sorted by ID.
func (t *tracker) list() []tracked {
	out := make([]tracked, 0, len(t.events))
	for _, e := range t.events {
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// sameEvent compares what the controller acts on or reports.
func sameEvent(a, b imds.Event) bool {
	return a.ID == b.ID && a.Provider == b.Provider && a.Type == b.Type && a.RawType == b.RawType &&
		a.Status == b.Status && a.NotBefore.Equal(b.NotBefore) && a.Duration == b.Duration &&
		a.Description == b.Description && a.Approvable == b.Approvable
}
