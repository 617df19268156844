package imds

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const gcpUpcomingSample = `{"can_reschedule":"true","latest_window_start_time":"2024-12-01T19:00:01Z",
"maintenance_reasons":["PLANNED_UPDATE"],"maintenance_status":"PENDING","type":"SCHEDULED",
"window_end_time":"2024-12-01T21:00:01Z","window_start_time":"2024-12-01T19:00:01Z"}`

func TestGCPMaintenanceValue(t *testing.T) {
	for _, tc := range []struct {
		body    string
		present bool
		typ     EventType
		err     bool
	}{
		{"NONE", false, "", false},
		{"NONE\n", false, "", false},
		{"MIGRATE_ON_HOST_MAINTENANCE", true, TypeLiveMigrate, false},
		{"TERMINATE_ON_HOST_MAINTENANCE", true, TypeTerminate, false},
		{"SHUTDOWN_ON_HOST_MAINTENANCE", true, TypeTerminate, false},
		{"NEW_KIND_OF_MAINTENANCE", true, "", false},
		{"", false, "", true},
		{"<html>garbage", false, "", true},
		{"none", false, "", true},
	} {
		_, present, typ, err := gcpMaintenanceValue([]byte(tc.body))
		if present != tc.present || typ != tc.typ || (err != nil) != tc.err {
			t.Errorf("%q: %v %q %v", tc.body, present, typ, err)
		}
	}
	if id := gcpMaintenanceID("TERMINATE_ON_HOST_MAINTENANCE"); id != "gce-terminate-on-host-maintenance" {
		t.Errorf("id %q", id)
	}
}

func TestParseGCPUpcoming(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		event      bool
		unknown    bool
		err        bool
	}{
		{"sample", gcpUpcomingSample, true, false, false},
		{"camelCase", `{"canReschedule":true,"latestWindowStartTime":"2024-12-01T19:00:01Z","maintenanceReasons":["PLANNED_UPDATE"],` +
			`"maintenanceStatus":"PENDING","type":"SCHEDULED","windowEndTime":"2024-12-01T21:00:01Z","windowStartTime":"2024-12-01T19:00:01Z"}`, true, false, false},
		{"mixed spellings that agree", `{"maintenance_status":"PENDING","maintenanceStatus":"PENDING","windowStartTime":"2024-12-01T19:00:01Z"}`, true, false, false},
		{"deprecated date", `{"maintenanceStatus":"PENDING","date":"2024-12-01T19:00:01Z"}`, true, false, false},
		{"empty object", `{ }`, false, false, false},
		{"error object", `{"error": "not found"}`, false, false, false},
		{"null", `null`, false, false, false},
		{"not JSON", `PENDING`, false, false, true},
		{"truncated", `{"maintenance_status":"PEN`, false, false, true},
		{"array", `[]`, false, true, false},
		{"string", `"PENDING"`, false, true, false},
		{"unknown fields only", `{"maintenanceWindow":{"start":"2024-12-01T19:00:01Z"}}`, false, true, false},
		{"spellings that disagree", `{"maintenance_status":"PENDING","maintenanceStatus":"ONGOING","window_start_time":"2024-12-01T19:00:01Z"}`, false, true, false},
		{"bad start", `{"maintenance_status":"PENDING","window_start_time":"tomorrow"}`, false, true, false},
		{"bad end", `{"maintenance_status":"PENDING","window_start_time":"2024-12-01T19:00:01Z","window_end_time":"x"}`, false, true, false},
		{"unknown status", `{"maintenance_status":"DONE","window_start_time":"2024-12-01T19:00:01Z"}`, false, true, false},
		{"no status", `{"window_start_time":"2024-12-01T19:00:01Z"}`, false, true, false},
		{"status only", `{"maintenance_status":"ONGOING"}`, true, false, false},
		{"pending without window", `{"maintenanceStatus":"PENDING","type":"UNSCHEDULED"}`, true, false, false},
		{"wrong types", `{"maintenance_status": 1}`, false, true, false},
		{"wrong reasons", `{"maintenance_status":"PENDING","maintenance_reasons":"PLANNED_UPDATE"}`, false, true, false},
		{"odd type word", `{"maintenance_status":"PENDING","type":"<script>"}`, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, u, err := parseGCPUpcoming([]byte(tc.body))
			if (e != nil) != tc.event || (u != nil) != tc.unknown || (err != nil) != tc.err {
				t.Fatalf("got %+v %+v %v", e, u, err)
			}
			if e != nil {
				checkEvents(t, GCP, []Event{*e}, nil)
			}
		})
	}
	// Both spellings of the documented sample are the same event.
	a, _, _ := parseGCPUpcoming([]byte(gcpUpcomingSample))
	b, _, _ := parseGCPUpcoming([]byte(`{"canReschedule":"true","latestWindowStartTime":"2024-12-01T19:00:01Z","maintenanceReasons":["PLANNED_UPDATE"],` +
		`"maintenanceStatus":"PENDING","type":"SCHEDULED","windowEndTime":"2024-12-01T21:00:01Z","windowStartTime":"2024-12-01T19:00:01Z"}`))
	want := Event{ID: "gce-upcoming-maintenance-20241201T190001Z", Provider: GCP, Type: TypeMaintenance, RawType: "upcoming-maintenance/SCHEDULED",
		Status: StatusScheduled, NotBefore: time.Date(2024, 12, 1, 19, 0, 1, 0, time.UTC), Duration: 2 * time.Hour, Description: "PLANNED_UPDATE"}
	if a == nil || b == nil || *a != want || *b != want {
		t.Fatalf("snake %+v camel %+v want %+v", a, b, want)
	}
}

func FuzzGCPMaintenanceEvent(f *testing.F) {
	for _, s := range []string{"NONE", "MIGRATE_ON_HOST_MAINTENANCE", "TERMINATE_ON_HOST_MAINTENANCE\n", "SHUTDOWN_ON_HOST_MAINTENANCE", "X", "TRUE", "FALSE", "\x00"} {
		f.Add([]byte(s), `"0123456789abcdef"`)
	}
	f.Fuzz(func(t *testing.T, body []byte, etag string) {
		value, present, typ, err := gcpMaintenanceValue(body)
		if err != nil && (present || typ != "") {
			t.Fatalf("result with an error: %v %q", present, typ)
		}
		if typ != "" && !knownTypes[typ] {
			t.Fatalf("type %q", typ)
		}
		if present {
			id := gcpMaintenanceID(value)
			if len(id) > 63 || !isLabelValue(id) {
				t.Fatalf("id %q is not a label value", id)
			}
		}
		_, _ = parseGCPPreempted(body)
	})
}

func FuzzGCPUpcoming(f *testing.F) {
	f.Add([]byte(gcpUpcomingSample))
	f.Add([]byte(`{ }`))
	f.Add([]byte(`{"error": {"code": 404}}`))
	f.Add([]byte(`{"maintenanceStatus":"PENDING","windowStartTime":"2024-12-01T19:00:01Z","maintenance_status":"PENDING"}`))
	f.Add([]byte(`[{"maintenance_status":"PENDING"}]`))
	f.Add([]byte(`{"maintenance_status":"ONGOING","window_start_time":"2024-12-01T19:00:01+01:00","window_end_time":"2024-12-01T19:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, u, err := parseGCPUpcoming(body)
		if err == nil && e == nil && u == nil && !gcpUpcomingEmpty(body) {
			t.Fatalf("%q read as nothing scheduled", body)
		}
		if err != nil && (e != nil || u != nil) {
			t.Fatalf("result with an error: %+v %+v", e, u)
		}
		if e != nil && u != nil {
			t.Fatalf("both event and unknown: %+v %+v", e, u)
		}
		if e != nil {
			checkEvents(t, GCP, []Event{*e}, nil)
			if e.Status == StatusScheduled && !e.NotBefore.IsZero() && e.NotBefore.Location() != time.UTC {
				t.Fatalf("NotBefore not UTC: %v", e.NotBefore)
			}
		}
		if u != nil {
			checkEvents(t, GCP, nil, []UnknownEvent{*u})
		}
	})
}

// gcpUpcomingEmpty is the fuzz oracle for "nothing scheduled": null, an
// empty object, or an object with an "error" key and no status or window in
// either spelling.
func gcpUpcomingEmpty(body []byte) bool {
	var doc any
	if json.Unmarshal(body, &doc) != nil {
		return false
	}
	if doc == nil {
		return true
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return false
	}
	if len(obj) == 0 {
		return true
	}
	hasError := false
	for k := range obj {
		switch strings.ToLower(strings.ReplaceAll(k, "_", "")) {
		case "error":
			hasError = true
		case "maintenancestatus", "windowstarttime":
			return false
		}
	}
	return hasError
}

// isLabelValue: letters, digits, '-', '_', '.'; starts and ends alphanumeric.
func isLabelValue(s string) bool {
	for i, r := range s {
		alnum := (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !alnum && ((i == 0 || i == len(s)-1) || (r != '-' && r != '_' && r != '.')) {
			return false
		}
	}
	return s != ""
}
