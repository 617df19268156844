package imdsfake

import (
	"net/http"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/testkit"
)

var gcpHeaders = map[string]string{"Metadata-Flavor": "Google"}

type gcpAnswer struct {
	status     int
	body, etag string
}

// gcpGet runs one GET in a goroutine so a test can act while it waits.
func gcpGet(t *testing.T, url string) <-chan gcpAnswer {
	ch := make(chan gcpAnswer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Metadata-Flavor", "Google")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- gcpAnswer{}
			return
		}
		defer resp.Body.Close()
		var buf [256]byte
		n, _ := resp.Body.Read(buf[:])
		ch <- gcpAnswer{resp.StatusCode, string(buf[:n]), resp.Header.Get("ETag")}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan gcpAnswer) gcpAnswer {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
		return gcpAnswer{}
	}
}

func TestGCPHeaderAndPaths(t *testing.T) {
	f := NewGCP()
	srv := f.Start()
	defer srv.Close()
	if st, _, _ := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, nil, ""); st != 403 {
		t.Fatalf("no Metadata-Flavor: status %d, want 403", st)
	}
	if st, _, _ := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, map[string]string{"Metadata-Flavor": "google"}, ""); st != 403 {
		t.Fatalf("wrong Metadata-Flavor: status %d, want 403", st)
	}
	st, body, h := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, gcpHeaders, "")
	if st != 200 || body != "NONE" || h.Get("ETag") == "" {
		t.Fatalf("maintenance-event: %d %q etag %q", st, body, h.Get("ETag"))
	}
	if st, body, _ := do(t, http.MethodGet, srv.URL+GCPPreemptedPath, gcpHeaders, ""); st != 200 || body != "FALSE" {
		t.Fatalf("preempted: %d %q", st, body)
	}
	if st, _, _ := do(t, http.MethodGet, srv.URL+GCPUpcomingMaintenancePath+"?alt=json", gcpHeaders, ""); st != 404 {
		t.Fatalf("upcoming-maintenance: status %d, want 404", st)
	}
	f.SetUpcomingMaintenance(&GCPUpcomingMaintenance{MaintenanceStatus: "PENDING", WindowStartTime: "2024-12-01T19:00:01Z"})
	if st, body, _ := do(t, http.MethodGet, srv.URL+GCPUpcomingMaintenancePath+"?alt=json", gcpHeaders, ""); st != 200 ||
		body != `{"maintenance_status":"PENDING","window_start_time":"2024-12-01T19:00:01Z"}` {
		t.Fatalf("upcoming-maintenance: %d %q", st, body)
	}
	if st, _, _ := do(t, http.MethodPost, srv.URL+GCPPreemptedPath, gcpHeaders, ""); st != 405 {
		t.Fatalf("POST: status %d, want 405", st)
	}
}

func TestGCPLongPoll(t *testing.T) {
	f := NewGCP()
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + GCPMaintenanceEventPath
	_, etag := f.MaintenanceEvent()

	// No last_etag, or a different one: at once.
	if a := receive(t, gcpGet(t, url+"?wait_for_change=true")); a.body != "NONE" || a.etag != etag {
		t.Fatalf("without last_etag: %+v", a)
	}
	if a := receive(t, gcpGet(t, url+"?wait_for_change=true&last_etag=old")); a.body != "NONE" || a.etag != etag {
		t.Fatalf("other last_etag: %+v", a)
	}

	// Same etag: waits until the value changes.
	ch := gcpGet(t, url+"?wait_for_change=true&last_etag="+etag)
	testkit.Eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	f.SetMaintenanceEvent("NONE") // same value: no change
	select {
	case a := <-ch:
		t.Fatalf("answered without a change: %+v", a)
	default:
	}
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	a := receive(t, ch)
	if a.body != "MIGRATE_ON_HOST_MAINTENANCE" || a.etag == etag || a.etag == "" {
		t.Fatalf("after change: %+v (old etag %s)", a, etag)
	}

	// Same etag and timeout_sec: answers with the unchanged value and etag.
	start := time.Now()
	b := receive(t, gcpGet(t, url+"?wait_for_change=true&timeout_sec=1&last_etag="+a.etag))
	if b.body != a.body || b.etag != a.etag || time.Since(start) < time.Second {
		t.Fatalf("timeout answer %+v after %s", b, time.Since(start))
	}
	if st, _, _ := do(t, http.MethodGet, url+"?wait_for_change=true&timeout_sec=x&last_etag="+a.etag, gcpHeaders, ""); st != 400 {
		t.Fatalf("bad timeout_sec: status %d", st)
	}
}

func TestGCPPreemptedLongPoll(t *testing.T) {
	f := NewGCP()
	srv := f.Start()
	defer srv.Close()
	url := srv.URL + GCPPreemptedPath
	first := receive(t, gcpGet(t, url))
	ch := gcpGet(t, url+"?wait_for_change=true&last_etag="+first.etag)
	testkit.Eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	f.SetPreempted(true)
	if a := receive(t, ch); a.body != "TRUE" {
		t.Fatalf("preempted %+v", a)
	}
}

func TestGCPCloseEndsLongPolls(t *testing.T) {
	f := NewGCP()
	srv := f.Start()
	_, etag := f.MaintenanceEvent()
	ch := gcpGet(t, srv.URL+GCPMaintenanceEventPath+"?wait_for_change=true&last_etag="+etag)
	testkit.Eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(4 * time.Second):
		t.Fatal("Close blocked on a waiting long poll")
	}
	if a := receive(t, ch); a.status != 0 {
		t.Fatalf("aborted long poll answered %+v", a)
	}
	if f.Waiting() != 0 {
		t.Fatalf("Waiting %d after Close", f.Waiting())
	}
}

func TestGCPFaults(t *testing.T) {
	f := NewGCP()
	srv := f.Start()
	defer srv.Close()
	f.FailNext(1, 503)
	if st, _, _ := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, gcpHeaders, ""); st != 503 {
		t.Fatalf("FailNext: status %d", st)
	}
	f.MalformedNext(1)
	if _, body, _ := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, gcpHeaders, ""); body == "NONE" {
		t.Fatal("MalformedNext had no effect")
	}
	if _, body, _ := do(t, http.MethodGet, srv.URL+GCPMaintenanceEventPath, gcpHeaders, ""); body != "NONE" {
		t.Fatalf("after malformed: %q", body)
	}
	reqs := f.Requests()
	if len(reqs) != 3 || reqs[0].Status != 503 || reqs[1].Header.Get("Metadata-Flavor") != "Google" {
		t.Fatalf("request log %+v", reqs)
	}
}
