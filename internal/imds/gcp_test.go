package imds_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func newGCP(t *testing.T, o imds.GCPOptions) (*imdsfake.GCP, *imds.GCPClient, *clock) {
	t.Helper()
	f := imdsfake.NewGCP()
	clk := newClock()
	srv := startFake(t, f)
	o.Endpoint, o.Now = srv.URL, clk.Now
	if o.RetryInterval == 0 {
		o.RetryInterval, o.MaxRetryInterval = 20*time.Millisecond, 100*time.Millisecond
	}
	c, err := imds.NewGCP(o)
	if err != nil {
		t.Fatal(err)
	}
	// Requests in flight are bound to the Poll's context: end them with the test.
	return f, c, clk
}

type pollResult struct {
	s   imds.Snapshot
	err error
}

func pollAsync(ctx context.Context, c imds.Client) <-chan pollResult {
	ch := make(chan pollResult, 1)
	go func() {
		s, err := c.Poll(ctx)
		ch <- pollResult{s, err}
	}()
	return ch
}

func receive(t *testing.T, ch <-chan pollResult) pollResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("Poll did not return")
		return pollResult{}
	}
}

// queries returns the queries of the requests for one item.
func queries(f *imdsfake.GCP, path string) []url.Values {
	var qs []url.Values
	for _, r := range f.Requests() {
		if r.Path == path {
			q, _ := url.ParseQuery(r.RawQuery)
			qs = append(qs, q)
		}
	}
	return qs
}

// waitingOnAll waits until every item has a long poll waiting.
func waitingOnAll(t *testing.T, f *imdsfake.GCP) {
	t.Helper()
	testkit.Eventually(t, "long polls on all three items", func() bool {
		return f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1 && f.WaitingOn(imdsfake.GCPPreemptedPath) == 1 &&
			f.WaitingOn(imdsfake.GCPUpcomingMaintenancePath) == 1
	})
}

const upcomingSnake = `{"can_reschedule":"true","latest_window_start_time":"2024-12-01T19:00:01Z",` +
	`"maintenance_reasons":["PLANNED_UPDATE"],"maintenance_status":"PENDING","type":"SCHEDULED",` +
	`"window_end_time":"2024-12-01T21:00:01Z","window_start_time":"2024-12-01T19:00:01Z"}`

// The first Poll reads the three items at once; later Polls hold one long poll
// per item (wait_for_change, last_etag, timeout_sec, Metadata-Flavor), and a
// change of one item ends Poll while the others' long polls stay in flight.
func TestGCPLongPollsEachItem(t *testing.T) {
	t.Parallel()
	f, c, clk := newGCP(t, imds.GCPOptions{})
	f.SetUpcomingMaintenanceBody("{ }")
	s := mustPoll(t, c) // answers at once
	_, etag := f.MaintenanceEvent()
	if len(s.Events)+len(s.Unknown)+len(s.Errors) != 0 || !strings.HasPrefix(s.Version, etag+",") {
		t.Fatalf("first poll %+v (etag %s)", s, etag)
	}
	for _, p := range []string{imdsfake.GCPMaintenanceEventPath, imdsfake.GCPPreemptedPath, imdsfake.GCPUpcomingMaintenancePath} {
		if qs := queries(f, p); len(qs) != 1 || qs[0].Get("wait_for_change") != "" {
			t.Fatalf("first read of %s: %v", p, qs)
		}
	}

	ctx := ctxT(t)
	ch := pollAsync(ctx, c)
	waitingOnAll(t, f)
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	r := receive(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	_, etag2 := f.MaintenanceEvent()
	if !strings.HasPrefix(r.s.Version, etag2+",") || len(r.s.Events) != 1 {
		t.Fatalf("after change %+v", r.s)
	}
	e := r.s.Events[0]
	want := imds.Event{ID: "gce-migrate-on-host-maintenance", Provider: imds.GCP, Type: imds.TypeLiveMigrate,
		RawType: "MIGRATE_ON_HOST_MAINTENANCE", Status: imds.StatusScheduled, NotBefore: clk.Now().Add(time.Minute),
		Duration: imds.DurationUnknown, Description: "host maintenance: MIGRATE_ON_HOST_MAINTENANCE"}
	if e != want {
		t.Fatalf("event %+v\nwant  %+v", e, want)
	}
	// The other long polls were not interrupted.
	if f.WaitingOn(imdsfake.GCPPreemptedPath) != 1 || f.WaitingOn(imdsfake.GCPUpcomingMaintenancePath) != 1 {
		t.Fatal("a change of maintenance-event ended the other long polls")
	}
	for _, p := range []string{imdsfake.GCPMaintenanceEventPath, imdsfake.GCPPreemptedPath, imdsfake.GCPUpcomingMaintenancePath} {
		qs := queries(f, p)
		if len(qs) != 2 || qs[1].Get("wait_for_change") != "true" || qs[1].Get("last_etag") == "" || qs[1].Get("timeout_sec") != "60" {
			t.Fatalf("long poll of %s: %v", p, qs)
		}
	}
	if q := queries(f, imdsfake.GCPMaintenanceEventPath); q[1].Get("last_etag") != etag {
		t.Fatalf("last_etag %q, want %q", q[1].Get("last_etag"), etag)
	}
	if q := queries(f, imdsfake.GCPUpcomingMaintenancePath); q[1].Get("alt") != "json" {
		t.Fatalf("upcoming-maintenance without alt=json: %v", q[1])
	}
	for _, req := range f.Requests() {
		if req.Header.Get("Metadata-Flavor") != "Google" {
			t.Fatalf("request without Metadata-Flavor: %+v", req)
		}
	}
	if err := c.Approve(ctx, e.ID); !errors.Is(err, imds.ErrNotSupported) {
		t.Fatalf("Approve: %v", err)
	}

	// The next Poll takes over the long polls still in flight: no new request
	// for preempted, and preempted=TRUE ends it.
	ch = pollAsync(ctx, c)
	waitingOnAll(t, f)
	if n := len(queries(f, imdsfake.GCPPreemptedPath)); n != 2 {
		t.Fatalf("%d requests for preempted, want 2 (the long poll kept across Polls)", n)
	}
	f.SetPreempted(true)
	r = receive(t, ch)
	if r.err != nil || len(r.s.Events) != 2 {
		t.Fatalf("after preemption %+v %v", r.s, r.err)
	}
}

// A preemption is seen at once while a maintenance-event long poll is held,
// and also while maintenance-event answers 503 (as it may during maintenance).
func TestGCPPreemptionWhileMaintenanceLongPollHeld(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{})
	f.SetUpcomingMaintenanceBody("{ }")
	mustPoll(t, c)
	ctx := ctxT(t)
	ch := pollAsync(ctx, c)
	waitingOnAll(t, f)
	f.SetPreempted(true)
	r := receive(t, ch)
	if r.err != nil || len(r.s.Events) != 1 || r.s.Events[0].Type != imds.TypePreempt || r.s.Events[0].Status != imds.StatusStarted ||
		r.s.Events[0].ID != "gce-preempted" {
		t.Fatalf("preemption %+v %v", r.s, r.err)
	}
	if f.WaitingOn(imdsfake.GCPMaintenanceEventPath) != 1 {
		t.Fatal("the maintenance-event long poll is no longer held")
	}
	f.SetPreempted(false)
	if r := receive(t, pollAsync(ctx, c)); r.err != nil || len(r.s.Events) != 0 {
		t.Fatalf("preempted FALSE: %+v %v", r.s, r.err)
	}

	// maintenance-event fails over and over; preempted is still watched.
	f.FailNextOn(imdsfake.GCPMaintenanceEventPath, 1000, 503)
	f.RenewMaintenanceEventETag() // ends its long poll (same value); the next reads fail
	var errs []error
	testkit.Eventually(t, "maintenance-event failures reported", func() bool {
		r := receive(t, pollAsync(ctx, c))
		if r.err != nil {
			t.Fatalf("Poll failed although the other items answer: %v", r.err)
		}
		errs = append(errs, r.s.Errors...)
		return len(errs) >= 2
	})
	var re *imds.RequestError
	if !errors.As(errs[0], &re) || re.Status != 503 || re.Path != imdsfake.GCPMaintenanceEventPath {
		t.Fatalf("errors %v", errs)
	}
	f.SetPreempted(true)
	for {
		r := receive(t, pollAsync(ctx, c))
		if r.err != nil {
			t.Fatal(r.err)
		}
		if len(r.s.Events) == 1 && r.s.Events[0].Type == imds.TypePreempt {
			break
		}
		if len(r.s.Errors) == 0 || len(r.s.Events) != 0 {
			t.Fatalf("unexpected snapshot %+v", r.s)
		}
	}
}

// A new ETag with the same value is the same event: same ID, same NotBefore
// estimate. The same value after NONE is a new occurrence with a new estimate.
func TestGCPIdentityFollowsValueNotETag(t *testing.T) {
	t.Parallel()
	f, c, clk := newGCP(t, imds.GCPOptions{})
	f.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
	first := mustPoll(t, c)
	if len(first.Events) != 1 || first.Events[0].ID != "gce-terminate-on-host-maintenance" {
		t.Fatalf("first %+v", first)
	}
	ctx := ctxT(t)
	clk.Add(10 * time.Second)
	ch := pollAsync(ctx, c)
	testkit.Eventually(t, "long poll", func() bool { return f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1 })
	f.RenewMaintenanceEventETag()
	r := receive(t, ch)
	if r.err != nil || r.s.Version == first.Version {
		t.Fatalf("renewed ETag: %+v %v", r.s, r.err)
	}
	if len(r.s.Events) != 1 || r.s.Events[0] != first.Events[0] {
		t.Fatalf("a new ETag changed the event: %+v, was %+v", r.s.Events, first.Events)
	}

	ch = pollAsync(ctx, c)
	testkit.Eventually(t, "long poll", func() bool { return f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1 })
	f.SetMaintenanceEvent("NONE")
	if r := receive(t, ch); r.err != nil || len(r.s.Events) != 0 {
		t.Fatalf("NONE: %+v %v", r.s, r.err)
	}
	clk.Add(time.Hour)
	ch = pollAsync(ctx, c)
	testkit.Eventually(t, "long poll", func() bool { return f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1 })
	f.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
	r = receive(t, ch)
	if r.err != nil || len(r.s.Events) != 1 || r.s.Events[0].ID != first.Events[0].ID ||
		!r.s.Events[0].NotBefore.Equal(clk.Now().Add(time.Minute)) {
		t.Fatalf("second occurrence %+v %v", r.s, r.err)
	}
}

func TestGCPLongPollTimeoutKeepsETag(t *testing.T) {
	t.Parallel()
	f, c, clk := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	f.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
	first := mustPoll(t, c)
	if len(first.Events) != 1 || first.Events[0].Type != imds.TypeTerminate || first.Events[0].Status != imds.StatusScheduled {
		t.Fatalf("first %+v", first)
	}
	clk.Add(61 * time.Second)
	second := mustPoll(t, c) // nothing changes: Poll returns after the long-poll timeout
	if second.Version != first.Version || len(second.Events) != 1 || second.Events[0].ID != first.Events[0].ID {
		t.Fatalf("second %+v, first %+v", second, first)
	}
	if second.Events[0].Status != imds.StatusStarted || !second.Events[0].NotBefore.IsZero() {
		t.Fatalf("60 s after the notice the event is not Started: %+v", second.Events[0])
	}
	mustPoll(t, c)
	qs := queries(f, imdsfake.GCPMaintenanceEventPath)
	if len(qs) < 2 {
		t.Fatalf("queries %v", qs)
	}
	etag := strings.Split(first.Version, ",")[0]
	for _, q := range qs[1:] {
		if q.Get("last_etag") != etag || q.Get("timeout_sec") != "1" {
			t.Fatalf("queries %v", qs)
		}
	}
}

func TestGCPMaintenanceValues(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	mustPoll(t, c)
	for _, tc := range []struct {
		value string
		typ   imds.EventType // "" = unknown
	}{
		{"MIGRATE_ON_HOST_MAINTENANCE", imds.TypeLiveMigrate},
		{"TERMINATE_ON_HOST_MAINTENANCE", imds.TypeTerminate},
		{"SHUTDOWN_ON_HOST_MAINTENANCE", imds.TypeTerminate},
		{"EXPLODE_ON_HOST_MAINTENANCE", ""},
		{"NONE", ""},
	} {
		f.SetMaintenanceEvent(tc.value)
		s := pollUntil(t, c, func(s imds.Snapshot) bool { return strings.HasPrefix(s.Version, etagOf(f)+",") })
		switch {
		case tc.value == "NONE":
			if len(s.Events)+len(s.Unknown) != 0 {
				t.Errorf("NONE: %+v", s)
			}
		case tc.typ == "":
			if len(s.Events) != 0 || len(s.Unknown) != 1 || s.Unknown[0].RawType != tc.value || s.Unknown[0].Provider != imds.GCP {
				t.Errorf("%s: %+v", tc.value, s)
			}
		default:
			if len(s.Events) != 1 || s.Events[0].Type != tc.typ || s.Events[0].RawType != tc.value {
				t.Errorf("%s: %+v", tc.value, s)
			}
		}
	}
}

func etagOf(f *imdsfake.GCP) string {
	_, etag := f.MaintenanceEvent()
	return etag
}

// pollUntil polls until ok holds for a snapshot (other items' heartbeats may
// come first), failing on an error.
func pollUntil(t *testing.T, c imds.Client, ok func(imds.Snapshot) bool) imds.Snapshot {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := mustPoll(t, c)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such snapshot; last %+v", s)
		}
	}
}

func TestGCPPreemptedAndUpcoming(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	f.SetPreempted(true)
	s := mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].Type != imds.TypePreempt || s.Events[0].Status != imds.StatusStarted {
		t.Fatalf("preempted %+v", s)
	}
	f.SetPreempted(false)
	pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 0 })

	for _, body := range []string{"{ }", `{"error":{"code":404,"message":"no upcoming maintenance"}}`, "null"} {
		prev := s.Version
		f.SetUpcomingMaintenanceBody(body)
		s = pollUntil(t, c, func(s imds.Snapshot) bool { return s.Version != prev })
		if len(s.Events)+len(s.Unknown) != 0 {
			t.Fatalf("%s: %+v", body, s)
		}
	}

	want := imds.Event{ID: "gce-upcoming-maintenance-20241201T190001Z", Provider: imds.GCP, Type: imds.TypeMaintenance,
		RawType: "upcoming-maintenance/SCHEDULED", Status: imds.StatusScheduled,
		NotBefore: time.Date(2024, 12, 1, 19, 0, 1, 0, time.UTC), Duration: 2 * time.Hour, Description: "PLANNED_UPDATE"}
	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{
		CanReschedule: "true", LatestWindowStartTime: "2024-12-01T19:00:01Z",
		MaintenanceReasons: []string{"PLANNED_UPDATE"}, MaintenanceStatus: "PENDING", Type: "SCHEDULED",
		WindowEndTime: "2024-12-01T21:00:01Z", WindowStartTime: "2024-12-01T19:00:01Z",
	})
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) > 0 })
	if len(s.Events) != 1 || s.Events[0] != want {
		t.Fatalf("upcoming %+v\nwant %+v", s.Events, want)
	}

	// The Compute API's camelCase spelling is the same event, not "nothing".
	f.SetUpcomingMaintenanceBody(`{"canReschedule": true, "latestWindowStartTime": "2024-12-01T19:00:01Z",
		"maintenanceReasons": ["PLANNED_UPDATE"], "maintenanceStatus": "PENDING", "type": "SCHEDULED",
		"windowEndTime": "2024-12-01T21:00:01Z", "windowStartTime": "2024-12-01T19:00:01Z"}`)
	prev := s.Version
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return s.Version != prev })
	if len(s.Events) != 1 || s.Events[0] != want {
		t.Fatalf("camelCase %+v\nwant %+v", s.Events, want)
	}

	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{MaintenanceStatus: "ONGOING", Type: "SCHEDULED",
		WindowStartTime: "2024-12-01T19:00:01Z", WindowEndTime: "2024-12-01T21:00:01Z"})
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 1 && s.Events[0].Status == imds.StatusStarted })
	if s.Events[0].ID != want.ID || !s.Events[0].NotBefore.IsZero() {
		t.Fatalf("ongoing %+v", s.Events)
	}

	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{MaintenanceStatus: "POSTPONED", WindowStartTime: "2024-12-01T19:00:01Z"})
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 0 })
	if len(s.Unknown) != 1 || s.Unknown[0].RawStatus != "POSTPONED" {
		t.Fatalf("unknown status %+v", s)
	}

	// A document in a shape the client does not understand is reported, never
	// read as "no maintenance".
	f.SetUpcomingMaintenanceBody(`{"maintenanceWindow": {"start": "2024-12-01T19:00:01Z"}}`)
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Unknown) == 1 && s.Unknown[0].RawStatus == "" })
	if len(s.Events) != 0 || s.Unknown[0].ID != "gce-upcoming-maintenance" || s.Unknown[0].RawType != "upcoming-maintenance" {
		t.Fatalf("unknown shape %+v", s)
	}
	f.SetUpcomingMaintenanceBody("")
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Unknown) == 0 })
	if len(s.Events) != 0 {
		t.Fatalf("404: %+v", s)
	}
}

func TestGCPErrors(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	// Before a first complete reading, a failure fails Poll.
	for _, status := range []int{503, 500, 403} {
		f.FailNextOn(imdsfake.GCPPreemptedPath, 1, status)
		_, err := c.Poll(ctxT(t))
		if re := wantRequestError(t, err, status); re.Path != imdsfake.GCPPreemptedPath {
			t.Fatalf("error for %s", re.Path)
		}
	}
	f.MalformedNext(1)
	_, err := c.Poll(ctxT(t))
	wantParseError(t, err)
	mustPoll(t, c)

	// After it, a failing item is reported in Snapshot.Errors and keeps its
	// last known events; the change it hides is seen once it answers again.
	f.SetPreempted(true)
	pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 1 })
	f.SetUpcomingMaintenanceBody(upcomingSnake)
	pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 2 })
	f.SetUpcomingMaintenanceBody(`{"maintenance_status":"PENDING"`) // not JSON
	s := pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Errors) > 0 })
	wantParseError(t, s.Errors[0])
	if len(s.Events) != 2 {
		t.Fatalf("a malformed item dropped its last known event: %+v", s)
	}
	// The preempted long poll times out after 1 s; the reads after it fail.
	f.FailNextOn(imdsfake.GCPPreemptedPath, 3, 503)
	s = pollUntil(t, c, func(s imds.Snapshot) bool {
		for _, err := range s.Errors {
			var re *imds.RequestError
			if errors.As(err, &re) && re.Status == 503 {
				return true
			}
		}
		return false
	})
	if len(s.Events) != 2 {
		t.Fatalf("a failing item dropped its last known event: %+v", s)
	}
	f.SetPreempted(false)
	f.SetUpcomingMaintenanceBody("")
	s = pollUntil(t, c, func(s imds.Snapshot) bool { return len(s.Events) == 0 && len(s.Errors) == 0 })
	if len(s.Unknown) != 0 {
		t.Fatalf("after recovery %+v", s)
	}
}

func TestGCPPollTimeoutAndCancel(t *testing.T) {
	f, c, _ := newGCP(t, imds.GCPOptions{})
	f.SetUpcomingMaintenanceBody("{ }")
	mustPoll(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Poll(ctx) // blocks in the long polls until the context ends
	if re := wantRequestError(t, err, 0); !errors.Is(re, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	testkit.Eventually(t, "long polls abandoned", func() bool { return f.Waiting() == 0 })

	// The ETags are unchanged, so the client long-polls again and a change ends it.
	ch := pollAsync(ctxT(t), c)
	waitingOnAll(t, f)
	f.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
	r := receive(t, ch)
	if r.err != nil || len(r.s.Events) != 1 {
		t.Fatalf("after change %+v %v", r.s, r.err)
	}

	// A canceled context while waiting for another Poll's turn.
	blocked := pollAsync(ctxT(t), c)
	waitingOnAll(t, f)
	ctx2, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = c.Poll(ctx2)
	wantRequestError(t, err, 0)
	f.SetMaintenanceEvent("NONE")
	if r := receive(t, blocked); r.err != nil {
		t.Fatal(r.err)
	}
}

func TestGCPWithoutETag(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("NONE"))
	}))
	t.Cleanup(srv.Close)
	c, err := imds.NewGCP(imds.GCPOptions{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)
}

// A hostile server answers every long poll at once with a new ETag: the
// client's requests per item stay at least 250 ms apart, never a hot loop.
func TestGCPNoHotLoop(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var n int
	starts := map[string][]time.Time{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		w.Header().Set("ETag", strings.Repeat("e", n%7+1)+string(rune('a'+n%26)))
		starts[r.URL.Path] = append(starts[r.URL.Path], time.Now())
		mu.Unlock()
		switch r.URL.Path {
		case imdsfake.GCPPreemptedPath:
			_, _ = w.Write([]byte("FALSE"))
		case imdsfake.GCPUpcomingMaintenancePath:
			_, _ = w.Write([]byte("{}"))
		default:
			_, _ = w.Write([]byte("NONE"))
		}
	}))
	t.Cleanup(srv.Close)
	c, err := imds.NewGCP(imds.GCPOptions{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	for range 12 {
		mustPoll(t, c)
	}
	mu.Lock()
	defer mu.Unlock()
	for path, ts := range starts {
		for i := 1; i < len(ts); i++ {
			if gap := ts[i].Sub(ts[i-1]); gap < 200*time.Millisecond {
				t.Fatalf("%s: requests %s apart", path, gap)
			}
		}
	}
}

func TestNewGCPValidates(t *testing.T) {
	for name, o := range map[string]imds.GCPOptions{
		"client timeout below long poll": {HTTPClient: &http.Client{Timeout: 30 * time.Second}},
		"client timeout equal":           {HTTPClient: &http.Client{Timeout: time.Minute}},
		"fractional long poll":           {LongPollTimeout: 1500 * time.Millisecond},
		"long poll too long":             {LongPollTimeout: 2 * time.Hour},
		"bad endpoint":                   {Endpoint: "metadata.google.internal"},
	} {
		if _, err := imds.NewGCP(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := imds.NewGCP(imds.GCPOptions{HTTPClient: &http.Client{Timeout: 61 * time.Second}}); err != nil {
		t.Errorf("61 s client: %v", err)
	}
}
