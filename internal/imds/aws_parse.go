package imds

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

var (
	errNoTime   = errors.New("missing time")
	errNoAction = errors.New("missing action")
)

// awsTimeLayout is the layout of scheduled event times ("21 Jan 2019 09:00:43 GMT").
const awsTimeLayout = "2 Jan 2006 15:04:05 GMT"

// awsScheduledEvent is one entry of events/maintenance/scheduled.
type awsScheduledEvent struct {
	NotBefore         string `json:"NotBefore"`
	NotAfter          string `json:"NotAfter"`
	NotBeforeDeadline string `json:"NotBeforeDeadline"`
	Code              string `json:"Code"`
	Description       string `json:"Description"`
	EventID           string `json:"EventId"`
	State             string `json:"State"`
}

// awsCode maps a scheduled event code to the normalised type.
func awsCode(code string) (EventType, bool) {
	switch code {
	case "instance-reboot", "system-reboot":
		return TypeReboot, true
	case "system-maintenance":
		return TypeMaintenance, true
	case "instance-retirement", "instance-stop":
		return TypeTerminate, true
	}
	return "", false
}

// parseAWSScheduled parses the scheduled events array. Only State "active"
// events are current; completed and canceled ones are history. An active event
// is Started once its NotBefore has passed at now.
func parseAWSScheduled(body []byte, now time.Time) ([]Event, []UnknownEvent, error) {
	var list []awsScheduledEvent
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, nil, err
	}
	var events []Event
	var unknown []UnknownEvent
	for _, ev := range list {
		switch ev.State {
		case "completed", "canceled":
			continue
		case "active":
		default:
			unknown = append(unknown, UnknownEvent{ID: ev.EventID, Provider: AWS, RawType: ev.Code, RawStatus: ev.State})
			continue
		}
		if ev.EventID == "" {
			return nil, nil, errNoEventID
		}
		typ, known := awsCode(ev.Code)
		if !known {
			unknown = append(unknown, UnknownEvent{ID: ev.EventID, Provider: AWS, RawType: ev.Code})
			continue
		}
		var notBefore, notAfter time.Time
		var err error
		if ev.NotBefore != "" {
			if notBefore, err = parseTime(ev.NotBefore, awsTimeLayout); err != nil {
				return nil, nil, fmt.Errorf("event %s NotBefore: %w", ev.EventID, err)
			}
		}
		if ev.NotAfter != "" {
			if notAfter, err = parseTime(ev.NotAfter, awsTimeLayout); err != nil {
				return nil, nil, fmt.Errorf("event %s NotAfter: %w", ev.EventID, err)
			}
		}
		if ev.NotBeforeDeadline != "" {
			if _, err = parseTime(ev.NotBeforeDeadline, awsTimeLayout); err != nil {
				return nil, nil, fmt.Errorf("event %s NotBeforeDeadline: %w", ev.EventID, err)
			}
		}
		e := Event{
			ID:          ev.EventID,
			Provider:    AWS,
			Type:        typ,
			RawType:     ev.Code,
			Duration:    DurationUnknown,
			Description: ev.Description,
		}
		if !notBefore.IsZero() && notAfter.After(notBefore) {
			e.Duration = notAfter.Sub(notBefore)
		}
		e.Status, e.NotBefore = statusAt(notBefore, now)
		events = append(events, e)
	}
	return events, unknown, nil
}

// statusAt is Started (and no NotBefore) once notBefore has passed, else
// Scheduled with notBefore (zero when unknown).
func statusAt(notBefore, now time.Time) (Status, time.Time) {
	if !notBefore.IsZero() && !now.Before(notBefore) {
		return StatusStarted, time.Time{}
	}
	return StatusScheduled, notBefore
}

// awsSpotAction is spot/instance-action.
type awsSpotAction struct {
	Action string `json:"action"`
	Time   string `json:"time"`
}

// awsSpotActionKnown reports whether action is a documented interruption action.
func awsSpotActionKnown(action string) bool {
	switch action {
	case "terminate", "stop", "hibernate":
		return true
	}
	return false
}

// parseAWSSpot parses a spot interruption notice into a Preempt event whose
// ID is synthesised from the time (stable across polls, and usable as a
// Kubernetes label or taint value). An unknown action is reported, not acted on.
func parseAWSSpot(body []byte, now time.Time) (*Event, *UnknownEvent, error) {
	var a awsSpotAction
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, nil, err
	}
	if a.Action == "" {
		return nil, nil, errNoAction
	}
	if a.Time == "" {
		return nil, nil, errNoTime
	}
	t, err := parseTime(a.Time, time.RFC3339)
	if err != nil {
		return nil, nil, err
	}
	id := "spot-" + compactTime(t)
	rawType := "spot-instance-action/" + a.Action
	if !awsSpotActionKnown(a.Action) {
		return nil, &UnknownEvent{ID: id, Provider: AWS, RawType: rawType}, nil
	}
	e := &Event{
		ID:          id,
		Provider:    AWS,
		Type:        TypePreempt,
		RawType:     rawType,
		Duration:    DurationUnknown,
		Description: "spot instance interruption: " + a.Action,
	}
	e.Status, e.NotBefore = statusAt(t, now)
	return e, nil, nil
}

// awsRebalance is events/recommendations/rebalance.
type awsRebalance struct {
	NoticeTime string `json:"noticeTime"`
}

// parseAWSRebalance parses a rebalance recommendation. It is in effect from
// its notice time: Status Started, no NotBefore.
func parseAWSRebalance(body []byte) (*Event, error) {
	var r awsRebalance
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, err
	}
	if r.NoticeTime == "" {
		return nil, errNoTime
	}
	t, err := parseTime(r.NoticeTime, time.RFC3339)
	if err != nil {
		return nil, err
	}
	return &Event{
		ID:          "rebalance-" + compactTime(t),
		Provider:    AWS,
		Type:        TypeRebalance,
		RawType:     "rebalance-recommendation",
		Status:      StatusStarted,
		Duration:    DurationUnknown,
		Description: "rebalance recommendation since " + t.Format(time.RFC3339),
	}, nil
}

// compactTime formats t for synthesised ids: digits and letters only, so the
// id is a valid Kubernetes label/taint value.
func compactTime(t time.Time) string {
	return t.UTC().Format("20060102T150405Z")
}
