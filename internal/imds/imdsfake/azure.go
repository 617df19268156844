package imdsfake

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// AzureScheduledEventsPath is the path of Azure Scheduled Events.
const AzureScheduledEventsPath = "/metadata/scheduledevents"

// ErrNoSuchEvent is returned for an event id the fake does not hold.
var ErrNoSuchEvent = errors.New("imdsfake: no such event")

// azureAPIVersion reports whether the fake accepts api-version v.
func azureAPIVersion(v string) bool {
	switch v {
	case "2017-03-01", "2017-08-01", "2017-11-01", "2019-01-01",
		"2019-04-01", "2019-07-01", "2019-08-01", "2020-07-01":
		return true
	}
	return false
}

// AzureEvent is one event of the Scheduled Events document, as served.
type AzureEvent struct {
	EventID      string   `json:"EventId"`
	EventStatus  string   `json:"EventStatus"`
	EventType    string   `json:"EventType"`
	ResourceType string   `json:"ResourceType"`
	Resources    []string `json:"Resources"`
	// NotBefore is RFC 1123 GMT (see AzureTime), "" once Started.
	NotBefore         string `json:"NotBefore"`
	Description       string `json:"Description"`
	EventSource       string `json:"EventSource"`
	DurationInSeconds int    `json:"DurationInSeconds"`
}

// AzureTime formats t as Azure's NotBefore ("Mon, 02 Jan 2006 15:04:05 GMT").
func AzureTime(t time.Time) string { return t.UTC().Format(http.TimeFormat) }

// Azure fakes Azure Scheduled Events for a group of VMs: every event is served
// to every caller whatever its Resources (clients must filter). It requires
// api-version and "Metadata: true" (400 without), rejects X-Forwarded-For
// (400), answers 429 above the rate limit (default 5 requests per one-second
// window, all methods counted), and increments DocumentIncarnation on every
// change. A POST of {"StartRequests":[{"EventId":"..."}]} records the ids
// (see Approvals) and starts those events; 400 if an id is unknown.
type Azure struct {
	base
	incarnation int64
	events      []AzureEvent
	approvals   []string
	nextID      int
	rateLimit   int
	winStart    time.Time
	winCount    int
}

// NewAzure returns a fake at DocumentIncarnation 1 with no events.
func NewAzure() *Azure {
	return &Azure{incarnation: 1, rateLimit: 5}
}

// Start serves the fake on 127.0.0.1; Close the server when done.
func (a *Azure) Start() *Server { return serve(a) }

// SetRateLimit sets the requests allowed per one-second window; 0 or less
// disables the limit. The default is 5, as on Azure.
func (a *Azure) SetRateLimit(perSecond int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rateLimit = perSecond
}

// Schedule adds ev, or replaces the event with the same EventID, and returns
// its id. Defaults: a generated EventID, EventStatus "Scheduled",
// ResourceType "VirtualMachine", EventSource "Platform", and for a Scheduled
// event NotBefore 15 minutes from now. DurationInSeconds is served as given
// (-1 means unknown).
func (a *Azure) Schedule(ev AzureEvent) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ev.EventID == "" {
		a.nextID++
		ev.EventID = fmt.Sprintf("%08X-AFDC-4513-B24B-%012X", a.nextID, a.nextID)
	}
	if ev.EventStatus == "" {
		ev.EventStatus = "Scheduled"
	}
	if ev.ResourceType == "" {
		ev.ResourceType = "VirtualMachine"
	}
	if ev.EventSource == "" {
		ev.EventSource = "Platform"
	}
	if ev.NotBefore == "" && ev.EventStatus == "Scheduled" {
		ev.NotBefore = AzureTime(time.Now().Add(15 * time.Minute))
	}
	ev.Resources = slices.Clone(ev.Resources)
	if i := a.indexLocked(ev.EventID); i >= 0 {
		a.events[i] = ev
	} else {
		a.events = append(a.events, ev)
	}
	a.incarnation++
	return ev.EventID
}

// StartEvent sets the event's status to Started and its NotBefore to "".
func (a *Azure) StartEvent(eventID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.indexLocked(eventID)
	if i < 0 {
		return fmt.Errorf("start %q: %w", eventID, ErrNoSuchEvent)
	}
	a.startLocked(i)
	return nil
}

// Complete removes a finished event (it simply disappears from the document).
func (a *Azure) Complete(eventID string) error { return a.remove(eventID, "complete") }

// Cancel removes a cancelled event (it simply disappears from the document).
func (a *Azure) Cancel(eventID string) error { return a.remove(eventID, "cancel") }

func (a *Azure) remove(eventID, op string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.indexLocked(eventID)
	if i < 0 {
		return fmt.Errorf("%s %q: %w", op, eventID, ErrNoSuchEvent)
	}
	a.events = slices.Delete(a.events, i, i+1)
	a.incarnation++
	return nil
}

// Events returns a copy of the current events.
func (a *Azure) Events() []AzureEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.events)
	for i := range out {
		out[i].Resources = slices.Clone(out[i].Resources)
	}
	return out
}

// Incarnation returns the current DocumentIncarnation.
func (a *Azure) Incarnation() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.incarnation
}

// Approvals returns the event ids of accepted StartRequests, in order.
func (a *Azure) Approvals() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.approvals)
}

func (a *Azure) indexLocked(id string) int {
	return slices.IndexFunc(a.events, func(e AzureEvent) bool { return e.EventID == id })
}

func (a *Azure) startLocked(i int) {
	if a.events[i].EventStatus == "Started" && a.events[i].NotBefore == "" {
		return
	}
	a.events[i].EventStatus = "Started"
	a.events[i].NotBefore = ""
	a.incarnation++
}

// overLimit counts a request that arrived at now in the current one-second
// window, which opens with the first request after the previous one closed.
func (a *Azure) overLimit(now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.winStart.IsZero() || now.Sub(a.winStart) >= time.Second {
		a.winStart, a.winCount = now, 0
	}
	a.winCount++
	return a.rateLimit > 0 && a.winCount > a.rateLimit
}

func azureError(msg string) string {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return string(b)
}

// ServeHTTP implements http.Handler.
func (a *Azure) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := a.record(r)
	const ct = "application/json; charset=utf-8"
	switch {
	case a.overLimit(rec.at):
		a.reply(w, rec, http.StatusTooManyRequests, ct, azureError("Too many requests"))
		return
	case rec.fail != 0:
		a.reply(w, rec, rec.fail, ct, azureError("injected failure"))
		return
	case r.URL.Path != AzureScheduledEventsPath:
		a.reply(w, rec, http.StatusNotFound, ct, azureError("Not found"))
		return
	case len(r.Header.Values("X-Forwarded-For")) > 0:
		a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. X-Forwarded-For header is not allowed"))
		return
	case !strings.EqualFold(r.Header.Get("Metadata"), "true"):
		a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. Required metadata header not specified"))
		return
	}
	v := r.URL.Query().Get("api-version")
	if v == "" {
		a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. api-version was not specified in the request"))
		return
	}
	if !azureAPIVersion(v) {
		a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. api-version is invalid or was not specified in the request"))
		return
	}
	switch r.Method {
	case http.MethodGet:
		a.serveDocument(w, rec)
	case http.MethodPost:
		a.serveStartRequests(w, rec, rec.body)
	default:
		a.reply(w, rec, http.StatusMethodNotAllowed, ct, azureError("Method not allowed"))
	}
}

func (a *Azure) serveDocument(w http.ResponseWriter, rec received) {
	a.mu.Lock()
	doc := struct {
		DocumentIncarnation int64        `json:"DocumentIncarnation"`
		Events              []AzureEvent `json:"Events"`
	}{a.incarnation, slices.Clone(a.events)}
	if doc.Events == nil {
		doc.Events = []AzureEvent{}
	}
	out, err := json.Marshal(doc)
	a.mu.Unlock()
	if err != nil {
		a.reply(w, rec, http.StatusInternalServerError, "", err.Error())
		return
	}
	if a.takeMalformed() {
		out = out[:len(out)*2/3]
	}
	a.reply(w, rec, http.StatusOK, "application/json; charset=utf-8", string(out))
}

func (a *Azure) serveStartRequests(w http.ResponseWriter, rec received, body []byte) {
	const ct = "application/json; charset=utf-8"
	var req struct {
		StartRequests []struct {
			EventID string `json:"EventId"`
		} `json:"StartRequests"`
	}
	if err := json.Unmarshal(body, &req); err != nil || len(req.StartRequests) == 0 {
		a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. Invalid StartRequests body"))
		return
	}
	a.mu.Lock()
	for _, s := range req.StartRequests {
		if a.indexLocked(s.EventID) < 0 {
			a.mu.Unlock()
			a.reply(w, rec, http.StatusBadRequest, ct, azureError("Bad request. Unknown EventId "+s.EventID))
			return
		}
	}
	for _, s := range req.StartRequests {
		a.approvals = append(a.approvals, s.EventID)
		a.startLocked(a.indexLocked(s.EventID))
	}
	a.mu.Unlock()
	a.reply(w, rec, http.StatusOK, "", "")
}
