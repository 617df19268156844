package imdsfake

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"
)

// Paths served by the GCP fake.
const (
	GCPMaintenanceEventPath    = "/computeMetadata/v1/instance/maintenance-event"
	GCPPreemptedPath           = "/computeMetadata/v1/instance/preempted"
	GCPUpcomingMaintenancePath = "/computeMetadata/v1/instance/upcoming-maintenance"
)

// GCPUpcomingMaintenance is instance/upcoming-maintenance?alt=json, as served.
// Times are RFC 3339.
type GCPUpcomingMaintenance struct {
	CanReschedule         string   `json:"can_reschedule,omitempty"`
	LatestWindowStartTime string   `json:"latest_window_start_time,omitempty"`
	MaintenanceReasons    []string `json:"maintenance_reasons,omitempty"`
	// MaintenanceStatus is PENDING or ONGOING.
	MaintenanceStatus string `json:"maintenance_status,omitempty"`
	Type              string `json:"type,omitempty"`
	WindowEndTime     string `json:"window_end_time,omitempty"`
	WindowStartTime   string `json:"window_start_time,omitempty"`
}

// gcpValue is a text item with an ETag that can be long-polled.
type gcpValue struct {
	value   string
	etag    string
	changed chan struct{} // closed and replaced on every change
}

// GCP fakes the GCE metadata server's maintenance items. Every request needs
// "Metadata-Flavor: Google" (403 without). maintenance-event (initially
// NONE) and preempted (initially FALSE) carry an ETag and support long polls:
// with wait_for_change=true and a last_etag equal to the current ETag the
// answer waits until the value changes or timeout_sec elapses (without
// timeout_sec, until the request ends); with another or no last_etag it
// answers at once. upcoming-maintenance answers 404 until set.
type GCP struct {
	base
	maintenance gcpValue
	preempted   gcpValue
	upcoming    []byte // nil: 404
	gen         uint64
	waiting     int
}

// NewGCP returns a fake with maintenance-event NONE, preempted FALSE and no
// upcoming maintenance.
func NewGCP() *GCP {
	g := &GCP{}
	g.setLocked(&g.maintenance, "NONE")
	g.setLocked(&g.preempted, "FALSE")
	return g
}

// Start serves the fake on 127.0.0.1; Close the server when done.
func (g *GCP) Start() *Server { return serve(g) }

// SetMaintenanceEvent sets instance/maintenance-event (NONE,
// MIGRATE_ON_HOST_MAINTENANCE, TERMINATE_ON_HOST_MAINTENANCE, ...). A new
// value gets a new ETag and wakes the long polls; the same value changes nothing.
func (g *GCP) SetMaintenanceEvent(value string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(&g.maintenance, value)
}

// MaintenanceEvent returns the current maintenance-event value and ETag.
func (g *GCP) MaintenanceEvent() (value, etag string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maintenance.value, g.maintenance.etag
}

// SetPreempted sets instance/preempted (TRUE/FALSE).
func (g *GCP) SetPreempted(preempted bool) {
	v := "FALSE"
	if preempted {
		v = "TRUE"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(&g.preempted, v)
}

// SetUpcomingMaintenance sets instance/upcoming-maintenance; nil makes it
// answer 404 (machine families without the item).
func (g *GCP) SetUpcomingMaintenance(m *GCPUpcomingMaintenance) {
	var b []byte
	if m != nil {
		b, _ = json.Marshal(m)
	}
	g.SetUpcomingMaintenanceBody(string(b))
}

// SetUpcomingMaintenanceBody serves body as upcoming-maintenance, e.g. "{ }"
// or an error object for "nothing scheduled"; "" makes it answer 404.
func (g *GCP) SetUpcomingMaintenanceBody(body string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if body == "" {
		g.upcoming = nil
		return
	}
	g.upcoming = []byte(body)
}

// Waiting returns how many long polls are currently waiting for a change.
// Tests wait for it before changing a value.
func (g *GCP) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

func (g *GCP) setLocked(v *gcpValue, value string) {
	if v.changed != nil && v.value == value {
		return
	}
	g.gen++
	h := fnv.New64a()
	fmt.Fprintf(h, "%d\x00%s", g.gen, value)
	v.value = value
	v.etag = fmt.Sprintf("%016x", h.Sum64())
	if v.changed != nil {
		close(v.changed)
	}
	v.changed = make(chan struct{})
}

// ServeHTTP implements http.Handler.
func (g *GCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := g.record(r)
	const ct = "application/text"
	w.Header().Set("Metadata-Flavor", "Google")
	switch {
	case rec.fail != 0:
		g.reply(w, rec, rec.fail, ct, http.StatusText(rec.fail))
	case r.Header.Get("Metadata-Flavor") != "Google":
		g.reply(w, rec, http.StatusForbidden, "text/html",
			"Your client does not have permission to get URL "+r.URL.Path+" from this server. Missing Metadata-Flavor:Google header.")
	case r.Method != http.MethodGet:
		g.reply(w, rec, http.StatusMethodNotAllowed, ct, "Method Not Allowed")
	case r.URL.Path == GCPMaintenanceEventPath:
		g.serveValue(w, r, rec, &g.maintenance)
	case r.URL.Path == GCPPreemptedPath:
		g.serveValue(w, r, rec, &g.preempted)
	case r.URL.Path == GCPUpcomingMaintenancePath:
		g.serveUpcoming(w, rec)
	default:
		g.reply(w, rec, http.StatusNotFound, "text/html", "Not Found")
	}
}

// serveValue answers a text item, long-polling when asked to.
func (g *GCP) serveValue(w http.ResponseWriter, r *http.Request, rec received, v *gcpValue) {
	q := r.URL.Query()
	if q.Get("wait_for_change") == "true" {
		var timeout <-chan time.Time
		if ts := q.Get("timeout_sec"); ts != "" {
			n, err := strconv.Atoi(ts)
			if err != nil || n < 1 {
				g.reply(w, rec, http.StatusBadRequest, "text/html", "Invalid timeout_sec")
				return
			}
			t := time.NewTimer(time.Duration(n) * time.Second)
			defer t.Stop()
			timeout = t.C
		}
		last := q.Get("last_etag")
		g.mu.Lock()
		wait := last != "" && last == v.etag
		changed := v.changed
		if wait {
			g.waiting++
		}
		g.mu.Unlock()
		if wait {
			select {
			case <-changed:
			case <-timeout:
			case <-r.Context().Done():
			}
			g.mu.Lock()
			g.waiting--
			g.mu.Unlock()
			if r.Context().Err() != nil {
				// The caller gave up or the server is closing: send nothing.
				panic(http.ErrAbortHandler)
			}
		}
	}
	g.mu.Lock()
	value, etag := v.value, v.etag
	g.mu.Unlock()
	if g.takeMalformed() {
		value = "<html>\x00garbage{" + value[:len(value)/2]
	}
	w.Header().Set("ETag", etag)
	g.reply(w, rec, http.StatusOK, "application/text", value)
}

func (g *GCP) serveUpcoming(w http.ResponseWriter, rec received) {
	g.mu.Lock()
	body := g.upcoming
	g.mu.Unlock()
	if body == nil {
		g.reply(w, rec, http.StatusNotFound, "text/html", "Not Found")
		return
	}
	if g.takeMalformed() {
		body = body[:len(body)*2/3]
	}
	g.reply(w, rec, http.StatusOK, "application/json", string(body))
}
