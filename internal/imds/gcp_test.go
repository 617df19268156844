package imds_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

func newGCP(t *testing.T, o imds.GCPOptions) (*imdsfake.GCP, *imds.GCPClient, *clock) {
	t.Helper()
	f := imdsfake.NewGCP()
	clk := newClock()
	srv := startFake(t, f)
	o.Endpoint, o.Now = srv.URL, clk.Now
	c, err := imds.NewGCP(o)
	if err != nil {
		t.Fatal(err)
	}
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

// maintenanceQueries returns the queries of the maintenance-event requests.
func maintenanceQueries(f *imdsfake.GCP) []url.Values {
	var qs []url.Values
	for _, r := range f.Requests() {
		if r.Path == imdsfake.GCPMaintenanceEventPath {
			q, _ := url.ParseQuery(r.RawQuery)
			qs = append(qs, q)
		}
	}
	return qs
}

func TestGCPLongPollReturnsOnChange(t *testing.T) {
	f, c, clk := newGCP(t, imds.GCPOptions{})
	s := mustPoll(t, c) // the first poll answers at once
	_, etag := f.MaintenanceEvent()
	if s.Version != etag || len(s.Events) != 0 || len(s.Unknown) != 0 {
		t.Fatalf("first poll %+v (etag %s)", s, etag)
	}

	ch := pollAsync(ctxT(t), c)
	eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	r := receive(t, ch)
	if r.err != nil {
		t.Fatal(r.err)
	}
	_, etag2 := f.MaintenanceEvent()
	if r.s.Version != etag2 || len(r.s.Events) != 1 {
		t.Fatalf("after change %+v", r.s)
	}
	e := r.s.Events[0]
	if e.Type != imds.TypeMaintenance || e.RawType != "MIGRATE_ON_HOST_MAINTENANCE" || e.Status != imds.StatusScheduled ||
		!e.NotBefore.Equal(clk.Now().Add(time.Minute)) || e.Provider != imds.GCP || e.Approvable || e.ID == "" {
		t.Fatalf("event %+v", e)
	}

	qs := maintenanceQueries(f)
	if len(qs) != 2 || len(qs[0]) != 0 ||
		qs[1].Get("wait_for_change") != "true" || qs[1].Get("last_etag") != etag || qs[1].Get("timeout_sec") != "60" {
		t.Fatalf("queries %v", qs)
	}
	for _, req := range f.Requests() {
		if req.Header.Get("Metadata-Flavor") != "Google" || req.Status != 200 && req.Status != 404 {
			t.Fatalf("request %+v", req)
		}
	}
	if err := c.Approve(ctxT(t), e.ID); !errors.Is(err, imds.ErrNotSupported) {
		t.Fatalf("Approve: %v", err)
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
	second := mustPoll(t, c) // nothing changes: the server answers after timeout_sec
	if second.Version != first.Version || len(second.Events) != 1 || second.Events[0].ID != first.Events[0].ID {
		t.Fatalf("second %+v, first %+v", second, first)
	}
	if second.Events[0].Status != imds.StatusStarted || !second.Events[0].NotBefore.IsZero() {
		t.Fatalf("60 s after the notice the event is not Started: %+v", second.Events[0])
	}
	mustPoll(t, c)
	qs := maintenanceQueries(f)
	if len(qs) != 3 || qs[1].Get("last_etag") != first.Version || qs[2].Get("last_etag") != first.Version || qs[2].Get("timeout_sec") != "1" {
		t.Fatalf("queries %v", qs)
	}
}

func TestGCPMaintenanceValues(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	for _, tc := range []struct {
		value string
		typ   imds.EventType // "" = unknown
	}{
		{"MIGRATE_ON_HOST_MAINTENANCE", imds.TypeMaintenance},
		{"TERMINATE_ON_HOST_MAINTENANCE", imds.TypeTerminate},
		{"SHUTDOWN_ON_HOST_MAINTENANCE", imds.TypeTerminate},
		{"EXPLODE_ON_HOST_MAINTENANCE", ""},
		{"NONE", ""},
	} {
		f.SetMaintenanceEvent(tc.value)
		s := mustPoll(t, c)
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

func TestGCPPreemptedAndUpcoming(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	f.SetPreempted(true)
	s := mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].Type != imds.TypePreempt || s.Events[0].Status != imds.StatusStarted {
		t.Fatalf("preempted %+v", s)
	}
	f.SetPreempted(false)

	for _, body := range []string{"{ }", `{"error":{"code":404,"message":"no upcoming maintenance"}}`} {
		f.SetUpcomingMaintenanceBody(body)
		if s := mustPoll(t, c); len(s.Events)+len(s.Unknown) != 0 {
			t.Fatalf("%s: %+v", body, s)
		}
	}

	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{
		CanReschedule: "true", LatestWindowStartTime: "2024-12-01T19:00:01Z",
		MaintenanceReasons: []string{"PLANNED_UPDATE"}, MaintenanceStatus: "PENDING", Type: "SCHEDULED",
		WindowEndTime: "2024-12-01T21:00:01Z", WindowStartTime: "2024-12-01T19:00:01Z",
	})
	s = mustPoll(t, c)
	want := imds.Event{ID: "gce-upcoming-maintenance-20241201T190001Z", Provider: imds.GCP, Type: imds.TypeMaintenance,
		RawType: "upcoming-maintenance/SCHEDULED", Status: imds.StatusScheduled,
		NotBefore: time.Date(2024, 12, 1, 19, 0, 1, 0, time.UTC), Duration: 2 * time.Hour, Description: "PLANNED_UPDATE"}
	if len(s.Events) != 1 || s.Events[0] != want {
		t.Fatalf("upcoming %+v\nwant %+v", s.Events, want)
	}

	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{MaintenanceStatus: "ONGOING", Type: "SCHEDULED",
		WindowStartTime: "2024-12-01T19:00:01Z", WindowEndTime: "2024-12-01T21:00:01Z"})
	s = mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].ID != want.ID || s.Events[0].Status != imds.StatusStarted || !s.Events[0].NotBefore.IsZero() {
		t.Fatalf("ongoing %+v", s.Events)
	}

	f.SetUpcomingMaintenance(&imdsfake.GCPUpcomingMaintenance{MaintenanceStatus: "POSTPONED", WindowStartTime: "2024-12-01T19:00:01Z"})
	s = mustPoll(t, c)
	if len(s.Events) != 0 || len(s.Unknown) != 1 || s.Unknown[0].RawStatus != "POSTPONED" {
		t.Fatalf("unknown status %+v", s)
	}
}

func TestGCPErrors(t *testing.T) {
	t.Parallel()
	f, c, _ := newGCP(t, imds.GCPOptions{LongPollTimeout: time.Second})
	for _, status := range []int{503, 500, 403} {
		f.FailNext(1, status)
		_, err := c.Poll(ctxT(t))
		wantRequestError(t, err, status)
	}
	f.MalformedNext(1)
	_, err := c.Poll(ctxT(t))
	wantParseError(t, err)
	mustPoll(t, c)

	// A change is not lost when a later read of the same Poll fails: the
	// ETag is only kept after a complete Poll, so the next one answers at once.
	_, oldETag := f.MaintenanceEvent()
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	f.SetUpcomingMaintenanceBody(`{"maintenance_status": "PENDING", "window_start_time": "soon"}`)
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)
	f.SetUpcomingMaintenanceBody("")
	f.ClearRequests()
	s := mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].Type != imds.TypeMaintenance {
		t.Fatalf("change lost: %+v", s)
	}
	if q := maintenanceQueries(f); q[0].Get("last_etag") != oldETag {
		t.Fatalf("retry used last_etag %q, want the old %q", q[0].Get("last_etag"), oldETag)
	}

	f.SetUpcomingMaintenanceBody("{")
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)
	f.SetUpcomingMaintenanceBody("")

	// preempted is read after the long poll: a 503 there fails the Poll, and
	// the change is seen again by the next one.
	mustPoll(t, c)
	ch := pollAsync(ctxT(t), c)
	eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	f.FailNext(1, 503) // the request after the long poll: preempted
	f.SetMaintenanceEvent("NONE")
	r := receive(t, ch)
	if re := wantRequestError(t, r.err, 503); re.Path != imdsfake.GCPPreemptedPath {
		t.Fatalf("error for %s, want preempted", re.Path)
	}
	if s := mustPoll(t, c); len(s.Events) != 0 {
		t.Fatalf("after NONE: %+v", s)
	}
}

func TestGCPPollTimeoutAndCancel(t *testing.T) {
	f, c, _ := newGCP(t, imds.GCPOptions{})
	mustPoll(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Poll(ctx) // blocks in the long poll until the context ends
	if re := wantRequestError(t, err, 0); !errors.Is(re, context.DeadlineExceeded) {
		t.Fatalf("timeout: %v", err)
	}
	eventually(t, "long poll abandoned", func() bool { return f.Waiting() == 0 })

	// The ETag is unchanged, so the client long-polls again and a change ends it.
	ch := pollAsync(ctxT(t), c)
	eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
	f.SetPreempted(true) // not the long-polled item: keeps waiting
	f.SetMaintenanceEvent("TERMINATE_ON_HOST_MAINTENANCE")
	r := receive(t, ch)
	if r.err != nil || len(r.s.Events) != 2 {
		t.Fatalf("after change %+v %v", r.s, r.err)
	}

	// A canceled context while waiting for another Poll's turn.
	blocked := pollAsync(ctxT(t), c)
	eventually(t, "long poll waiting", func() bool { return f.Waiting() == 1 })
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
