package imds

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

var (
	errBadText = errors.New("not a metadata value")
	errBadBool = errors.New("want TRUE or FALSE")
)

// gcpMaintenanceType maps an instance/maintenance-event value to the
// normalised type (empty when unknown). Both TERMINATE_ and SHUTDOWN_ are seen.
// A live migration keeps the VM running (a pause of seconds): LiveMigrate, not
// Maintenance, so that its default action is not a drain.
func gcpMaintenanceType(value string) EventType {
	switch value {
	case "MIGRATE_ON_HOST_MAINTENANCE":
		return TypeLiveMigrate
	case "TERMINATE_ON_HOST_MAINTENANCE", "SHUTDOWN_ON_HOST_MAINTENANCE":
		return TypeTerminate
	}
	return ""
}

// gcpNotice is how long before host maintenance maintenance-event changes.
const gcpNotice = 60 * time.Second

// gcpMaintenanceValue checks the text of instance/maintenance-event. It
// returns the value, whether it is an event at all (not NONE), and its type
// (empty when the value is a well-formed word the client does not know).
// Text that is not an upper-case word is malformed.
func gcpMaintenanceValue(body []byte) (value string, present bool, typ EventType, err error) {
	value = strings.TrimSpace(string(body))
	if !isWord(value) {
		return "", false, "", errBadText
	}
	if value == "NONE" {
		return value, false, "", nil
	}
	return value, true, gcpMaintenanceType(value), nil
}

// isWord reports whether s looks like a metadata enum value (A-Z, 0-9, _).
func isWord(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// gcpMaintenanceID is the identity of a maintenance-event value: the value
// itself, as a valid Kubernetes label or taint value (at most 63
// characters). It does not follow the ETag: the metadata server may send a
// new ETag with the same value, and that is the same event. The same value
// after NONE is a new occurrence, which the caller sees as the event ending
// and a new one starting.
func gcpMaintenanceID(value string) string {
	name := strings.Trim(strings.ToLower(strings.ReplaceAll(value, "_", "-")), "-")
	if len(name) > 48 {
		name = strings.TrimRight(name[:48], "-")
	}
	if name == "" {
		name = "maintenance"
	}
	return "gce-" + name
}

// gcpPreemptedID is the id of the preemption notice.
const gcpPreemptedID = "gce-preempted"

// gcpMaintenanceEvent is the event for a maintenance-event value first seen
// at seen: GCE announces it 60 s ahead, so NotBefore is seen + 60 s.
func gcpMaintenanceEvent(value string, typ EventType, seen, now time.Time) Event {
	e := Event{ID: gcpMaintenanceID(value), Provider: GCP, Type: typ, RawType: value, Duration: DurationUnknown,
		Description: "host maintenance: " + value}
	e.Status, e.NotBefore = statusAt(seen.Add(gcpNotice), now)
	return e
}

// parseGCPPreempted parses instance/preempted.
func parseGCPPreempted(body []byte) (bool, error) {
	switch strings.TrimSpace(string(body)) {
	case "TRUE":
		return true, nil
	case "FALSE":
		return false, nil
	}
	return false, errBadBool
}

// gcpPreemptedEvent is the Started Preempt event of preempted=TRUE: GCE stops
// the VM about 30 s later.
func gcpPreemptedEvent() Event {
	return Event{ID: gcpPreemptedID, Provider: GCP, Type: TypePreempt, RawType: "preempted", Status: StatusStarted,
		Duration: DurationUnknown, Description: "instance preempted, stopped about 30 s after the notice"}
}

// gcpUpcomingKeys are the fields of upcoming-maintenance that the client reads,
// by normalised name (lower case, no underscores): the metadata server writes
// snake_case (window_start_time), the Compute API camelCase (windowStartTime).
const (
	gcpKeyWindowStart = "windowstarttime"
	gcpKeyWindowEnd   = "windowendtime"
	gcpKeyLatestStart = "latestwindowstarttime"
	gcpKeyStatus      = "maintenancestatus"
	gcpKeyType        = "type"
	gcpKeyReasons     = "maintenancereasons"
	gcpKeyReschedule  = "canreschedule"
	gcpKeyOnShutdown  = "maintenanceonshutdown"
	gcpKeyDate        = "date" // deprecated alias of window start in the Compute API
	gcpKeyError       = "error"
)

// gcpUpcomingRawType is the RawType of upcoming maintenance; a known-good
// type word is appended ("upcoming-maintenance/SCHEDULED").
const gcpUpcomingRawType = "upcoming-maintenance"

// gcpUpcomingID is the id of an upcoming-maintenance document whose window
// is not known.
const gcpUpcomingID = "gce-upcoming-maintenance"

// parseGCPUpcoming parses instance/upcoming-maintenance?alt=json in either
// spelling. Nothing is scheduled (nil, nil, nil) for `{ }`, `null` and an
// error object. A window with status PENDING is Scheduled at the window start;
// ONGOING is Started. Everything else that is valid JSON but not understood
// (another status, no status, a field of the wrong type, a bad time, an
// object with none of the known fields, the same field in both spellings
// with different values, a non-object) is an UnknownEvent: reported, never
// read as "no maintenance". Only text that is not JSON is an error.
// The event's identity is its window start (the value of the document), not
// the ETag.
func parseGCPUpcoming(body []byte) (*Event, *UnknownEvent, error) {
	body = bytes.TrimSpace(body)
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, nil, err
	}
	unknown := func(rawType, status string) (*Event, *UnknownEvent, error) {
		return nil, &UnknownEvent{ID: gcpUpcomingID, Provider: GCP, RawType: rawType, RawStatus: status}, nil
	}
	if doc == nil {
		return nil, nil, nil
	}
	obj, isObject := doc.(map[string]any)
	if !isObject {
		return unknown(gcpUpcomingRawType, "")
	}
	fields := make(map[string]any, len(obj))
	for k, v := range obj {
		n := strings.ToLower(strings.ReplaceAll(k, "_", ""))
		if prev, dup := fields[n]; dup && !sameJSON(prev, v) {
			return unknown(gcpUpcomingRawType, "")
		}
		fields[n] = v
	}
	if len(fields) == 0 {
		return nil, nil, nil
	}
	if _, isError := fields[gcpKeyError]; isError && fields[gcpKeyStatus] == nil && fields[gcpKeyWindowStart] == nil {
		return nil, nil, nil
	}
	known := false
	for _, k := range []string{gcpKeyWindowStart, gcpKeyWindowEnd, gcpKeyLatestStart, gcpKeyStatus, gcpKeyType, gcpKeyReasons, gcpKeyReschedule, gcpKeyOnShutdown, gcpKeyDate} {
		if _, ok := fields[k]; ok {
			known = true
		}
	}
	if !known {
		return unknown(gcpUpcomingRawType, "")
	}

	str := func(k string) (string, bool) {
		switch v := fields[k].(type) {
		case nil:
			return "", true
		case string:
			return v, true
		}
		return "", false
	}
	status, ok1 := str(gcpKeyStatus)
	typ, ok2 := str(gcpKeyType)
	startText, ok3 := str(gcpKeyWindowStart)
	endText, ok4 := str(gcpKeyWindowEnd)
	dateText, ok5 := str(gcpKeyDate)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return unknown(gcpUpcomingRawType, "")
	}
	rawType := gcpUpcomingRawType
	if typ != "" {
		if !isWord(typ) || len(typ) > 40 {
			return unknown(gcpUpcomingRawType, "")
		}
		rawType += "/" + typ
	}
	if startText == "" {
		startText = dateText
	}
	var start, end time.Time
	var err error
	if startText != "" {
		if start, err = parseTime(startText, time.RFC3339Nano); err != nil {
			return unknown(rawType, "")
		}
	}
	if endText != "" {
		if end, err = parseTime(endText, time.RFC3339Nano); err != nil {
			return unknown(rawType, "")
		}
	}
	reasons, ok := stringList(fields[gcpKeyReasons])
	if !ok {
		return unknown(rawType, "")
	}
	id := gcpUpcomingID
	if !start.IsZero() {
		id += "-" + compactTime(start)
	}
	if status != "" && (!isWord(status) || len(status) > 40) {
		status = "?"
	}
	e := &Event{
		ID:          id,
		Provider:    GCP,
		Type:        TypeMaintenance,
		RawType:     rawType,
		Duration:    DurationUnknown,
		Description: strings.Join(reasons, ", "),
	}
	if !start.IsZero() && end.After(start) {
		e.Duration = end.Sub(start)
	}
	switch status {
	case "PENDING":
		// Without a window start the time is unknown (NotBefore zero).
		e.Status, e.NotBefore = StatusScheduled, start
	case "ONGOING":
		e.Status = StatusStarted
	default:
		return nil, &UnknownEvent{ID: id, Provider: GCP, RawType: rawType, RawStatus: status}, nil
	}
	return e, nil, nil
}

// stringList reads a JSON array of strings (absent or null: empty); each
// entry is kept only when it is a metadata word, so a Description never
// carries arbitrary text.
func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	var out []string
	for _, x := range list {
		s, ok := x.(string)
		if !ok {
			return nil, false
		}
		if isWord(s) && len(out) < 8 {
			out = append(out, s)
		}
	}
	return out, true
}

// sameJSON compares two decoded JSON values.
func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
