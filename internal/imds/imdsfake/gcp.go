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

// gcpValue is an item with an ETag that can be long-polled.
type gcpValue struct {
	value   string
	absent  bool // answers 404 (upcoming-maintenance on families without it)
	etag    string
	changed chan struct{} // closed and replaced on every change
	waiting int           // long polls waiting for a change of this item
	failN   int           // the next failN requests for this item fail with failStatus
	failSt  int
}

// GCP fakes the GCE metadata server's maintenance items. Every request needs
// "Metadata-Flavor: Google" (403 without). maintenance-event (initially
// NONE), preempted (initially FALSE) and upcoming-maintenance (initially
// absent: 404) carry an ETag and support long polls: with wait_for_change=true
// and a last_etag equal to the current ETag the answer waits until the item
// changes or timeout_sec elapses (without timeout_sec, until the request
// ends); with another or no last_etag it answers at once. An absent item
// answers 404 at once, also to a long poll.
type GCP struct {
	base
	maintenance gcpValue
	preempted   gcpValue
	upcoming    gcpValue
	gen         uint64
}

// NewGCP returns a fake with maintenance-event NONE, preempted FALSE and no
// upcoming maintenance.
func NewGCP() *GCP {
	g := &GCP{}
	g.setLocked(&g.maintenance, "NONE", false)
	g.setLocked(&g.preempted, "FALSE", false)
	g.upcoming.absent = true
	g.setLocked(&g.upcoming, "", true)
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
	g.setLocked(&g.maintenance, value, false)
}

// RenewMaintenanceEventETag gives maintenance-event a new ETag with the same
// value and wakes its long polls, as GCE may do.
func (g *GCP) RenewMaintenanceEventETag() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setLocked(&g.maintenance, g.maintenance.value, true)
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
	g.setLocked(&g.preempted, v, false)
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
// or an error object for "nothing scheduled", or the Compute API's camelCase
// spelling; "" makes it answer 404. A new body gets a new ETag and wakes the
// long polls.
func (g *GCP) SetUpcomingMaintenanceBody(body string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if body == "" {
		if !g.upcoming.absent {
			g.upcoming.absent = true
			g.setLocked(&g.upcoming, "", true)
		}
		return
	}
	wasAbsent := g.upcoming.absent
	g.upcoming.absent = false
	g.setLocked(&g.upcoming, body, wasAbsent)
}

// FailNextOn makes the next n requests for one item (path, e.g.
// GCPMaintenanceEventPath) fail with status, before anything else is checked;
// requests for the other items are answered as usual.
func (g *GCP) FailNextOn(path string, n, status int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v := g.item(path); v != nil {
		v.failN, v.failSt = max(n, 0), status
	}
}

// Waiting returns how many long polls are currently waiting for a change.
// Tests wait for it before changing a value.
func (g *GCP) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.maintenance.waiting + g.preempted.waiting + g.upcoming.waiting
}

// WaitingOn returns how many long polls for one item (path) are waiting.
func (g *GCP) WaitingOn(path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if v := g.item(path); v != nil {
		return v.waiting
	}
	return 0
}

func (g *GCP) item(path string) *gcpValue {
	switch path {
	case GCPMaintenanceEventPath:
		return &g.maintenance
	case GCPPreemptedPath:
		return &g.preempted
	case GCPUpcomingMaintenancePath:
		return &g.upcoming
	}
	return nil
}

// setLocked sets an item's value; a new value (or force) gets a new ETag and
// wakes the item's long polls.
func (g *GCP) setLocked(v *gcpValue, value string, force bool) {
	if v.changed != nil && v.value == value && !force {
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
	v := g.item(r.URL.Path)
	if rec.fail == 0 && v != nil {
		g.mu.Lock()
		if v.failN > 0 {
			v.failN--
			rec.fail = v.failSt
		}
		g.mu.Unlock()
	}
	switch {
	case rec.fail != 0:
		g.reply(w, rec, rec.fail, ct, http.StatusText(rec.fail))
	case r.Header.Get("Metadata-Flavor") != "Google":
		g.reply(w, rec, http.StatusForbidden, "text/html",
			"Your client does not have permission to get URL "+r.URL.Path+" from this server. Missing Metadata-Flavor:Google header.")
	case r.Method != http.MethodGet:
		g.reply(w, rec, http.StatusMethodNotAllowed, ct, "Method Not Allowed")
	case v == nil:
		g.reply(w, rec, http.StatusNotFound, "text/html", "Not Found")
	default:
		g.serveValue(w, r, rec, v)
	}
}

// serveValue answers an item, long-polling when asked to.
func (g *GCP) serveValue(w http.ResponseWriter, r *http.Request, rec received, v *gcpValue) {
	q := r.URL.Query()
	g.mu.Lock()
	absent := v.absent
	g.mu.Unlock()
	if absent {
		g.reply(w, rec, http.StatusNotFound, "text/html", "Not Found")
		return
	}
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
			v.waiting++
		}
		g.mu.Unlock()
		if wait {
			select {
			case <-changed:
			case <-timeout:
			case <-r.Context().Done():
			}
			g.mu.Lock()
			v.waiting--
			g.mu.Unlock()
			if r.Context().Err() != nil {
				// The caller gave up or the server is closing: send nothing.
				panic(http.ErrAbortHandler)
			}
		}
	}
	g.mu.Lock()
	value, etag, absent := v.value, v.etag, v.absent
	g.mu.Unlock()
	if absent {
		g.reply(w, rec, http.StatusNotFound, "text/html", "Not Found")
		return
	}
	contentType := "application/text"
	if v == &g.upcoming {
		contentType = "application/json"
	}
	if g.takeMalformed() {
		if contentType == "application/json" {
			value = value[:len(value)*2/3]
		} else {
			value = "<html>\x00garbage{" + value[:len(value)/2]
		}
	}
	w.Header().Set("ETag", etag)
	g.reply(w, rec, http.StatusOK, contentType, value)
}
