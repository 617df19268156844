package imds

import (
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
		{"MIGRATE_ON_HOST_MAINTENANCE", true, TypeMaintenance, false},
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
	if id := gcpMaintenanceID("TERMINATE_ON_HOST_MAINTENANCE", `"abc/def:0123456789abcdef"`); id != "gce-terminate-on-host-maintenance-abcdef0123456789" {
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
		{"empty object", `{ }`, false, false, false},
		{"error object", `{"error": "not found"}`, false, false, false},
		{"null", `null`, false, false, false},
		{"not JSON", `PENDING`, false, false, true},
		{"array", `[]`, false, false, true},
		{"bad start", `{"maintenance_status":"PENDING","window_start_time":"tomorrow"}`, false, false, true},
		{"bad end", `{"maintenance_status":"PENDING","window_start_time":"2024-12-01T19:00:01Z","window_end_time":"x"}`, false, false, true},
		{"unknown status", `{"maintenance_status":"DONE","window_start_time":"2024-12-01T19:00:01Z"}`, false, true, false},
		{"status only", `{"maintenance_status":"ONGOING"}`, true, false, false},
		{"wrong types", `{"maintenance_status": 1}`, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, u, err := parseGCPUpcoming([]byte(tc.body))
			if (e != nil) != tc.event || (u != nil) != tc.unknown || (err != nil) != tc.err {
				t.Fatalf("got %+v %+v %v", e, u, err)
			}
		})
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
			id := gcpMaintenanceID(value, etag)
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
	f.Add([]byte(`{"maintenance_status":"ONGOING","window_start_time":"2024-12-01T19:00:01+01:00","window_end_time":"2024-12-01T19:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, u, err := parseGCPUpcoming(body)
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
