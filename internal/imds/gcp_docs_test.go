package imds_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
)

// docsServer is a minimal GCE metadata server written from Google's
// documentation, independent of imdsfake: items with ETags, 403 without
// "Metadata-Flavor: Google", and wait_for_change that returns at once when
// last_etag differs from the current ETag, else when the item changes or
// timeout_sec passes.
type docsServer struct {
	mu      sync.Mutex
	items   map[string]string // path -> body
	etags   map[string]int
	changed chan struct{}
}

func newDocsServer(t *testing.T, items map[string]string) (*docsServer, string) {
	d := &docsServer{items: items, etags: map[string]int{}, changed: make(chan struct{})}
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	return d, srv.URL
}

func (d *docsServer) set(path, body string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.items[path] = body
	d.etags[path]++
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *docsServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata-Flavor") != "Google" {
		http.Error(w, "Missing Metadata-Flavor:Google header.", http.StatusForbidden)
		return
	}
	etagOf := func() (string, string, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		body, ok := d.items[r.URL.Path]
		return body, "docs-" + strconv.Itoa(d.etags[r.URL.Path]), ok
	}
	body, etag, ok := etagOf()
	if !ok {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if q.Get("wait_for_change") == "true" && q.Get("last_etag") == etag {
		timeout := 60
		if ts := q.Get("timeout_sec"); ts != "" {
			timeout, _ = strconv.Atoi(ts)
		}
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		for q.Get("last_etag") == etag {
			d.mu.Lock()
			ch := d.changed
			d.mu.Unlock()
			select {
			case <-ch:
			case <-t.C:
				w.Header().Set("ETag", etag)
				_, _ = w.Write([]byte(body))
				return
			case <-r.Context().Done():
				return
			}
			body, etag, _ = etagOf()
		}
	}
	w.Header().Set("ETag", etag)
	_, _ = w.Write([]byte(body))
}

// The documented examples of the three items, and a live migration followed
// by a preemption while the maintenance-event long poll is held.
func TestGCPDocumentedExamples(t *testing.T) {
	t.Parallel()
	const (
		maint    = "/computeMetadata/v1/instance/maintenance-event"
		preempt  = "/computeMetadata/v1/instance/preempted"
		upcoming = "/computeMetadata/v1/instance/upcoming-maintenance"
	)
	// As documented for upcoming-maintenance?alt=json (design/reference/imds.md).
	docUpcoming := `{"can_reschedule":"true","latest_window_start_time":"2024-12-01T19:00:01Z",` +
		`"maintenance_reasons":["PLANNED_UPDATE"],"maintenance_status":"PENDING","type":"SCHEDULED",` +
		`"window_end_time":"2024-12-01T21:00:01Z","window_start_time":"2024-12-01T19:00:01Z"}`
	d, url := newDocsServer(t, map[string]string{maint: "NONE", preempt: "FALSE", upcoming: docUpcoming})
	c, err := imds.NewGCP(imds.GCPOptions{Endpoint: url})
	if err != nil {
		t.Fatal(err)
	}
	s := mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].ID != "gce-upcoming-maintenance-20241201T190001Z" || s.Events[0].Status != imds.StatusScheduled {
		t.Fatalf("documented upcoming maintenance: %+v", s)
	}

	ctx := ctxT(t)
	ch := pollAsync(ctx, c)
	d.set(maint, "MIGRATE_ON_HOST_MAINTENANCE")
	r := receive(t, ch)
	if r.err != nil || len(r.s.Events) != 2 {
		t.Fatalf("live migration: %+v %v", r.s, r.err)
	}
	ch = pollAsync(ctx, c)
	d.set(preempt, "TRUE")
	r = receive(t, ch)
	types := map[imds.EventType]bool{}
	for _, e := range r.s.Events {
		types[e.Type] = true
	}
	if r.err != nil || !types[imds.TypePreempt] || !types[imds.TypeLiveMigrate] || !types[imds.TypeMaintenance] {
		t.Fatalf("preemption: %+v %v", r.s, r.err)
	}

	// The Compute API's spelling of the same notice (instances.get
	// resourceStatus.upcomingMaintenance): the same event.
	ch = pollAsync(ctx, c)
	d.set(upcoming, `{"canReschedule": true, "latestWindowStartTime": "2024-12-01T19:00:01Z", "maintenanceReasons": ["PLANNED_UPDATE"],
		"maintenanceStatus": "PENDING", "type": "SCHEDULED", "windowEndTime": "2024-12-01T21:00:01Z", "windowStartTime": "2024-12-01T19:00:01Z"}`)
	r2 := receive(t, ch)
	if r2.err != nil || len(r2.s.Events) != 3 || len(r2.s.Unknown) != 0 {
		t.Fatalf("camelCase: %+v %v", r2.s, r2.err)
	}
	for i := range r2.s.Events {
		if r2.s.Events[i] != r.s.Events[i] {
			t.Fatalf("camelCase changed an event: %+v, was %+v", r2.s.Events[i], r.s.Events[i])
		}
	}
}
