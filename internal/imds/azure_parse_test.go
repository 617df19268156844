package imds

import (
	"strings"
	"testing"
)

const azureSample = `{"DocumentIncarnation": 2, "Events": [{"EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123",
"EventStatus": "Scheduled", "EventType": "Freeze", "ResourceType": "VirtualMachine",
"Resources": ["WestNO_0", "WestNO_1"], "NotBefore": "Mon, 11 Apr 2026 22:26:58 GMT",
"Description": "...", "EventSource": "Platform", "DurationInSeconds": 5}]}`

func TestParseAzureDocument(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		events     int
		unknown    int
		err        bool
	}{
		{"sample", azureSample, 1, 0, false},
		{"other VM", strings.ReplaceAll(azureSample, "WestNO_0", "WestNO_7"), 0, 0, false},
		{"empty", `{"DocumentIncarnation": 1, "Events": []}`, 0, 0, false},
		{"null events", `{"DocumentIncarnation": 1, "Events": null}`, 0, 0, false},
		{"no incarnation", `{"Events": []}`, 0, 0, true},
		{"string incarnation", `{"DocumentIncarnation": "1", "Events": []}`, 0, 0, true},
		{"not JSON", `<html>`, 0, 0, true},
		{"bad NotBefore", strings.Replace(azureSample, "Mon, 11 Apr 2026 22:26:58 GMT", "11/04/2026", 1), 0, 0, true},
		{"zone not GMT", strings.Replace(azureSample, "GMT", "PST", 1), 0, 0, true},
		{"one-digit day", strings.Replace(azureSample, "11 Apr", "1 Apr", 1), 1, 0, false},
		{"no EventId", strings.Replace(azureSample, `"EventId": "C7061BAC-AFDC-4513-B24B-AA5F13A16123",`, "", 1), 0, 0, true},
		{"unknown type", strings.Replace(azureSample, `"Freeze"`, `"Hibernate"`, 1), 0, 1, false},
		{"lower-case type", strings.Replace(azureSample, `"Freeze"`, `"freeze"`, 1), 0, 1, false},
		{"unknown status", strings.Replace(azureSample, `"Scheduled"`, `"Canceled"`, 1), 0, 1, false},
		{"huge duration", strings.Replace(azureSample, `"DurationInSeconds": 5`, `"DurationInSeconds": 1e300`, 1), 1, 0, false},
		{"fractional duration", strings.Replace(azureSample, `"DurationInSeconds": 5`, `"DurationInSeconds": 0.5`, 1), 1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := parseAzureDocument([]byte(tc.body), []string{"westno_0"})
			if (err != nil) != tc.err || len(s.Events) != tc.events || len(s.Unknown) != tc.unknown {
				t.Fatalf("got %+v, %v", s, err)
			}
			checkEvents(t, Azure, s.Events, s.Unknown)
		})
	}
}

func FuzzAzureDocument(f *testing.F) {
	f.Add([]byte(azureSample), "WestNO_0")
	f.Add([]byte(`{"DocumentIncarnation": 1, "Events": []}`), "vm")
	f.Add([]byte(`{"DocumentIncarnation": 3, "Events": [{"EventId": "x", "EventStatus": "Started", "EventType": "Reboot", "Resources": ["vm"], "NotBefore": "", "DurationInSeconds": -1}]}`), "vm")
	f.Add([]byte(`{"DocumentIncarnation": 9223372036854775807, "Events": [{"EventId": "x", "EventType": "Preempt", "EventStatus": "Scheduled", "Resources": ["vm"], "NotBefore": "Mon, 2 Jan 2006 15:04:05 GMT", "DurationInSeconds": 1e19}]}`), "VM")
	f.Fuzz(func(t *testing.T, body []byte, resource string) {
		s, err := parseAzureDocument(body, []string{resource})
		if err != nil {
			if len(s.Events)+len(s.Unknown) != 0 || s.Version != "" {
				t.Fatalf("events with an error: %+v", s)
			}
			return
		}
		checkEvents(t, Azure, s.Events, s.Unknown)
		for _, e := range s.Events {
			if e.Type == "" {
				t.Fatalf("untyped event %+v", e)
			}
		}
	})
}
