package imdsfake

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

var azureHeaders = map[string]string{"Metadata": "true"}

type azureDoc struct {
	DocumentIncarnation int64
	Events              []AzureEvent
}

func getAzure(t *testing.T, srv *Server) azureDoc {
	t.Helper()
	st, body, _ := do(t, http.MethodGet, srv.URL+AzureScheduledEventsPath+"?api-version=2020-07-01", azureHeaders, "")
	if st != http.StatusOK {
		t.Fatalf("status %d: %s", st, body)
	}
	var d azureDoc
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return d
}

func TestAzureRequestChecks(t *testing.T) {
	f := NewAzure()
	f.SetRateLimit(0)
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + AzureScheduledEventsPath
	for _, tc := range []struct {
		name   string
		method string
		url    string
		header map[string]string
		want   int
	}{
		{"ok", http.MethodGet, url + "?api-version=2020-07-01", azureHeaders, 200},
		{"older api-version", http.MethodGet, url + "?api-version=2017-11-01", azureHeaders, 200},
		{"no api-version", http.MethodGet, url, azureHeaders, 400},
		{"bad api-version", http.MethodGet, url + "?api-version=2030-01-01", azureHeaders, 400},
		{"no Metadata header", http.MethodGet, url + "?api-version=2020-07-01", nil, 400},
		{"Metadata false", http.MethodGet, url + "?api-version=2020-07-01", map[string]string{"Metadata": "false"}, 400},
		{"X-Forwarded-For", http.MethodGet, url + "?api-version=2020-07-01", map[string]string{"Metadata": "true", "X-Forwarded-For": "10.0.0.1"}, 400},
		{"other path", http.MethodGet, srv.URL + "/metadata/instance?api-version=2020-07-01", azureHeaders, 404},
		{"PUT", http.MethodPut, url + "?api-version=2020-07-01", azureHeaders, 405},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body, _ := do(t, tc.method, tc.url, tc.header, "")
			if st != tc.want {
				t.Fatalf("status %d, want %d (%s)", st, tc.want, body)
			}
		})
	}
}

func TestAzureLifecycle(t *testing.T) {
	f := NewAzure()
	srv := f.Start()
	defer srv.Close()

	d := getAzure(t, srv)
	if d.DocumentIncarnation != 1 || len(d.Events) != 0 {
		t.Fatalf("initial document %+v", d)
	}
	id := f.Schedule(AzureEvent{EventType: "Freeze", Resources: []string{"vm_0", "vm_1"}, DurationInSeconds: 5})
	d = getAzure(t, srv)
	if d.DocumentIncarnation != 2 || len(d.Events) != 1 {
		t.Fatalf("after Schedule %+v", d)
	}
	e := d.Events[0]
	if e.EventID != id || e.EventStatus != "Scheduled" || e.NotBefore == "" || e.ResourceType != "VirtualMachine" || e.EventSource != "Platform" {
		t.Fatalf("scheduled event %+v", e)
	}
	if err := f.StartEvent(id); err != nil {
		t.Fatal(err)
	}
	d = getAzure(t, srv)
	if d.DocumentIncarnation != 3 || d.Events[0].EventStatus != "Started" || d.Events[0].NotBefore != "" {
		t.Fatalf("after StartEvent %+v", d)
	}
	if err := f.Complete(id); err != nil {
		t.Fatal(err)
	}
	d = getAzure(t, srv)
	if d.DocumentIncarnation != 4 || len(d.Events) != 0 {
		t.Fatalf("after Complete %+v", d)
	}
	if err := f.Cancel(id); err == nil {
		t.Fatal("Cancel of a removed event succeeded")
	}
	if err := f.StartEvent("nope"); err == nil {
		t.Fatal("StartEvent of an unknown event succeeded")
	}
}

func TestAzureRateLimit(t *testing.T) {
	f := NewAzure()
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + AzureScheduledEventsPath + "?api-version=2020-07-01"
	var codes []int
	for range 8 {
		st, _, _ := do(t, http.MethodGet, url, azureHeaders, "")
		codes = append(codes, st)
	}
	// The window opens with the first request: if the sixth arrived within
	// one second of it, it must have been refused.
	reqs := f.Requests()
	if reqs[5].Time.Sub(reqs[0].Time) < time.Second && codes[5] != http.StatusTooManyRequests {
		t.Fatalf("sixth request within a second not refused: %v", codes)
	}
	if codes[0] != 200 || codes[4] != 200 {
		t.Fatalf("first five not all served: %v", codes)
	}
	f.SetRateLimit(0)
	for range 10 {
		if st, _, _ := do(t, http.MethodGet, url, azureHeaders, ""); st != 200 {
			t.Fatalf("limit disabled, status %d", st)
		}
	}
}

func TestAzureStartRequests(t *testing.T) {
	f := NewAzure()
	f.SetRateLimit(0)
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + AzureScheduledEventsPath + "?api-version=2020-07-01"
	id := f.Schedule(AzureEvent{EventType: "Reboot", Resources: []string{"vm_0"}, DurationInSeconds: -1})
	before := f.Incarnation()

	for _, tc := range []struct {
		name, body string
		header     map[string]string
		want       int
	}{
		{"unknown id", `{"StartRequests":[{"EventId":"nope"}]}`, azureHeaders, 400},
		{"bad JSON", `{"StartRequests":`, azureHeaders, 400},
		{"empty", `{"StartRequests":[]}`, azureHeaders, 400},
		{"no Metadata header", `{"StartRequests":[{"EventId":"` + id + `"}]}`, nil, 400},
	} {
		if st, body, _ := do(t, http.MethodPost, url, tc.header, tc.body); st != tc.want {
			t.Errorf("%s: status %d, want %d (%s)", tc.name, st, tc.want, body)
		}
	}
	if len(f.Approvals()) != 0 || f.Incarnation() != before {
		t.Fatal("a refused StartRequest changed state")
	}
	approve := `{"StartRequests":[{"EventId":"` + id + `"}]}`
	for range 2 { // approving again is accepted and changes nothing
		if st, body, _ := do(t, http.MethodPost, url, azureHeaders, approve); st != 200 {
			t.Fatalf("approve: status %d (%s)", st, body)
		}
	}
	if got := f.Approvals(); len(got) != 2 || got[0] != id {
		t.Fatalf("Approvals %v", got)
	}
	if f.Incarnation() != before+1 {
		t.Fatalf("incarnation %d, want %d", f.Incarnation(), before+1)
	}
	if e := f.Events()[0]; e.EventStatus != "Started" || e.NotBefore != "" {
		t.Fatalf("approved event %+v", e)
	}
	last := f.Requests()[len(f.Requests())-1]
	if last.Method != http.MethodPost || last.Body != approve || last.Header.Get("Metadata") != "true" || last.Status != 200 {
		t.Fatalf("request log %+v", last)
	}
}

func TestAzureFaults(t *testing.T) {
	f := NewAzure()
	f.SetRateLimit(0)
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + AzureScheduledEventsPath + "?api-version=2020-07-01"
	f.FailNext(2, 503)
	for range 2 {
		if st, _, _ := do(t, http.MethodGet, url, azureHeaders, ""); st != 503 {
			t.Fatalf("status %d, want 503", st)
		}
	}
	f.MalformedNext(1)
	_, body, _ := do(t, http.MethodGet, url, azureHeaders, "")
	if json.Valid([]byte(body)) {
		t.Fatalf("malformed answer is valid JSON: %s", body)
	}
	getAzure(t, srv)
	f.ClearRequests()
	if len(f.Requests()) != 0 {
		t.Fatal("ClearRequests kept requests")
	}
}
