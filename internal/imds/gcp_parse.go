package imds

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

var (
	errBadText = errors.New("not a metadata value")
	errBadBool = errors.New("want TRUE or FALSE")
)

// gcpMaintenanceType maps an instance/maintenance-event value to the
// normalised type (empty when unknown). Both TERMINATE_ and SHUTDOWN_ are seen.
func gcpMaintenanceType(value string) EventType {
	switch value {
	case "MIGRATE_ON_HOST_MAINTENANCE":
		return TypeMaintenance
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

// gcpMaintenanceID synthesises a stable id for a maintenance-event value:
// the value and the ETag (which changes with the value), restricted to a
// valid Kubernetes label or taint value (at most 63 characters).
func gcpMaintenanceID(value, etag string) string {
	name := strings.Trim(strings.ToLower(strings.ReplaceAll(value, "_", "-")), "-")
	if len(name) > 40 {
		name = strings.TrimRight(name[:40], "-")
	}
	if name == "" {
		name = "maintenance"
	}
	id := "gce-" + name
	if tag := alnum(etag, 16); tag != "" {
		id += "-" + tag
	}
	return id
}

// alnum keeps at most n ASCII letters and digits of s.
func alnum(s string, n int) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() == n {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	return b.String()
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

// gcpUpcoming is instance/upcoming-maintenance?alt=json.
type gcpUpcoming struct {
	CanReschedule         string   `json:"can_reschedule"`
	LatestWindowStartTime string   `json:"latest_window_start_time"`
	MaintenanceReasons    []string `json:"maintenance_reasons"`
	MaintenanceStatus     string   `json:"maintenance_status"`
	Type                  string   `json:"type"`
	WindowEndTime         string   `json:"window_end_time"`
	WindowStartTime       string   `json:"window_start_time"`
}

// parseGCPUpcoming parses upcoming maintenance. `{ }`, an error object or any
// object without a window and status means nothing is scheduled (nil, nil).
// PENDING is Scheduled, ONGOING is Started; another status is unknown.
func parseGCPUpcoming(body []byte) (*Event, *UnknownEvent, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, err
	}
	if _, isError := raw["error"]; isError {
		return nil, nil, nil
	}
	var u gcpUpcoming
	if err := json.Unmarshal(body, &u); err != nil {
		return nil, nil, err
	}
	if u.WindowStartTime == "" && u.MaintenanceStatus == "" {
		return nil, nil, nil
	}
	var start, end time.Time
	var err error
	if u.WindowStartTime != "" {
		if start, err = parseTime(u.WindowStartTime, time.RFC3339); err != nil {
			return nil, nil, fmt.Errorf("window_start_time: %w", err)
		}
	}
	if u.WindowEndTime != "" {
		if end, err = parseTime(u.WindowEndTime, time.RFC3339); err != nil {
			return nil, nil, fmt.Errorf("window_end_time: %w", err)
		}
	}
	id := "gce-upcoming-maintenance"
	if !start.IsZero() {
		id += "-" + compactTime(start)
	}
	rawType := "upcoming-maintenance"
	if u.Type != "" {
		rawType += "/" + u.Type
	}
	e := &Event{
		ID:          id,
		Provider:    GCP,
		Type:        TypeMaintenance,
		RawType:     rawType,
		Duration:    DurationUnknown,
		Description: strings.Join(u.MaintenanceReasons, ", "),
	}
	if !start.IsZero() && end.After(start) {
		e.Duration = end.Sub(start)
	}
	switch u.MaintenanceStatus {
	case "PENDING":
		e.Status, e.NotBefore = StatusScheduled, start
	case "ONGOING":
		e.Status = StatusStarted
	default:
		return nil, &UnknownEvent{ID: id, Provider: GCP, RawType: rawType, RawStatus: u.MaintenanceStatus}, nil
	}
	return e, nil, nil
}
