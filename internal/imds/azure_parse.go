package imds

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

var (
	errNoIncarnation = errors.New("no DocumentIncarnation")
	errNoEventID     = errors.New("event without EventId")
	errBadTime       = errors.New("bad time")
)

// azureDocument is the Scheduled Events document (api-version 2020-07-01).
type azureDocument struct {
	DocumentIncarnation *int64       `json:"DocumentIncarnation"`
	Events              []azureEvent `json:"Events"`
}

type azureEvent struct {
	EventID           string   `json:"EventId"`
	EventStatus       string   `json:"EventStatus"`
	EventType         string   `json:"EventType"`
	ResourceType      string   `json:"ResourceType"`
	Resources         []string `json:"Resources"`
	NotBefore         string   `json:"NotBefore"`
	Description       string   `json:"Description"`
	EventSource       string   `json:"EventSource"`
	DurationInSeconds *float64 `json:"DurationInSeconds"`
}

// azureType maps Azure's EventType to the normalised type. Anything else is
// unknown and never acted on.
func azureType(s string) (EventType, bool) {
	switch s {
	case "Freeze":
		return TypeFreeze, true
	case "Reboot":
		return TypeReboot, true
	case "Redeploy":
		return TypeRedeploy, true
	case "Preempt":
		return TypePreempt, true
	case "Terminate":
		return TypeTerminate, true
	}
	return "", false
}

// NotBefore layouts: RFC 1123 with a literal GMT zone, also with a one-digit day.
const (
	azureTimeLayout       = "Mon, 02 Jan 2006 15:04:05 GMT"
	azureTimeLayoutOneDay = "Mon, 2 Jan 2006 15:04:05 GMT"
)

// parseAzureDocument parses a Scheduled Events document and keeps the events
// that list one of resources (compared case-insensitively, as Azure resource
// names are). Events of other VMs in the group are dropped before anything
// else is looked at, so their content cannot fail the poll.
func parseAzureDocument(body []byte, resources []string) (Snapshot, error) {
	var doc azureDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return Snapshot{}, err
	}
	if doc.DocumentIncarnation == nil {
		return Snapshot{}, errNoIncarnation
	}
	snap := Snapshot{Version: strconv.FormatInt(*doc.DocumentIncarnation, 10)}
	for _, ev := range doc.Events {
		if !concerns(ev.Resources, resources) {
			continue
		}
		if ev.EventID == "" {
			return Snapshot{}, errNoEventID
		}
		typ, knownType := azureType(ev.EventType)
		status, knownStatus := azureStatus(ev.EventStatus)
		if !knownType || !knownStatus {
			u := UnknownEvent{ID: ev.EventID, Provider: Azure, RawType: ev.EventType}
			if !knownStatus {
				u.RawStatus = ev.EventStatus
			}
			snap.Unknown = append(snap.Unknown, u)
			continue
		}
		e := Event{
			ID:          ev.EventID,
			Provider:    Azure,
			Type:        typ,
			RawType:     ev.EventType,
			Status:      status,
			Duration:    azureDuration(ev.DurationInSeconds),
			Description: ev.Description,
			Approvable:  true,
		}
		if status == StatusScheduled && ev.NotBefore != "" {
			t, err := parseTime(ev.NotBefore, azureTimeLayout, azureTimeLayoutOneDay)
			if err != nil {
				return Snapshot{}, fmt.Errorf("event %s NotBefore: %w", ev.EventID, err)
			}
			e.NotBefore = t
		}
		snap.Events = append(snap.Events, e)
	}
	return snap, nil
}

func concerns(listed, ours []string) bool {
	for _, l := range listed {
		for _, o := range ours {
			if strings.EqualFold(l, o) {
				return true
			}
		}
	}
	return false
}

func azureStatus(s string) (Status, bool) {
	switch s {
	case "Scheduled":
		return StatusScheduled, true
	case "Started":
		return StatusStarted, true
	}
	return "", false
}

// azureDuration converts DurationInSeconds; -1, absent, negative or absurd
// values are unknown.
func azureDuration(secs *float64) time.Duration {
	if secs == nil || *secs < 0 || *secs > float64(math.MaxInt64/int64(time.Second)) {
		return DurationUnknown
	}
	return time.Duration(*secs * float64(time.Second))
}

// parseTime parses s with the first layout that fits; the result is UTC.
func parseTime(s string, layouts ...string) (time.Time, error) {
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%w: %q", errBadTime, s)
}
