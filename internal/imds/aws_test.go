package imds_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

func newAWS(t *testing.T, o imds.AWSOptions) (*imdsfake.AWS, *imds.AWSClient, *clock) {
	t.Helper()
	f := imdsfake.NewAWS()
	clk := newClock()
	f.SetNow(clk.Now)
	srv := startFake(t, f)
	o.Endpoint, o.Now = srv.URL, clk.Now
	c, err := imds.NewAWS(o)
	if err != nil {
		t.Fatal(err)
	}
	return f, c, clk
}

func TestAWSScheduledEvents(t *testing.T) {
	f, c, clk := newAWS(t, imds.AWSOptions{})
	now := clk.Now()
	future := now.Add(2 * time.Hour)
	past := now.Add(-time.Minute)
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "instance-event-0d59937288b749b32", Code: "system-reboot",
		Description: "scheduled reboot", NotBefore: imdsfake.AWSTime(future), NotAfter: imdsfake.AWSTime(future.Add(1000 * time.Second))})
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "e-stop", Code: "instance-stop", NotBefore: imdsfake.AWSTime(past), NotAfter: ""})
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "e-done", Code: "instance-reboot", State: "completed"})
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "e-cancel", Code: "system-maintenance", State: "canceled"})
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "e-new", Code: "instance-teleport"})
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: "e-odd", Code: "system-reboot", State: "pending"})

	s := mustPoll(t, c)
	want := []imds.Event{
		{ID: "instance-event-0d59937288b749b32", Provider: imds.AWS, Type: imds.TypeReboot, RawType: "system-reboot",
			Status: imds.StatusScheduled, NotBefore: future.Truncate(time.Second), Duration: 1000 * time.Second, Description: "scheduled reboot"},
		{ID: "e-stop", Provider: imds.AWS, Type: imds.TypeTerminate, RawType: "instance-stop",
			Status: imds.StatusStarted, Duration: imds.DurationUnknown},
	}
	if len(s.Events) != 2 || s.Events[0] != want[0] || s.Events[1] != want[1] {
		t.Fatalf("events %+v\nwant %+v", s.Events, want)
	}
	wantUnknown := []imds.UnknownEvent{
		{ID: "e-new", Provider: imds.AWS, RawType: "instance-teleport"},
		{ID: "e-odd", Provider: imds.AWS, RawType: "system-reboot", RawStatus: "pending"},
	}
	if len(s.Unknown) != 2 || s.Unknown[0] != wantUnknown[0] || s.Unknown[1] != wantUnknown[1] {
		t.Fatalf("unknown %+v", s.Unknown)
	}
	if s.Version != "" {
		t.Fatalf("Version %q", s.Version)
	}

	// The scheduled reboot starts once its NotBefore has passed.
	clk.Add(3 * time.Hour)
	s = mustPoll(t, c)
	if s.Events[0].Status != imds.StatusStarted || !s.Events[0].NotBefore.IsZero() {
		t.Fatalf("after NotBefore: %+v", s.Events[0])
	}
	if err := f.Complete("instance-event-0d59937288b749b32"); err != nil {
		t.Fatal(err)
	}
	if s = mustPoll(t, c); len(s.Events) != 1 || s.Events[0].ID != "e-stop" {
		t.Fatalf("after Complete: %+v", s.Events)
	}
}

func TestAWSCodes(t *testing.T) {
	f, c, _ := newAWS(t, imds.AWSOptions{})
	codes := map[string]imds.EventType{
		"instance-reboot": imds.TypeReboot, "system-reboot": imds.TypeReboot,
		"system-maintenance": imds.TypeMaintenance, "instance-retirement": imds.TypeTerminate,
		"instance-stop": imds.TypeTerminate,
	}
	for code := range codes {
		f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: code, Code: code})
	}
	s := mustPoll(t, c)
	if len(s.Events) != len(codes) {
		t.Fatalf("events %+v", s.Events)
	}
	for _, e := range s.Events {
		if e.Type != codes[e.RawType] || e.Status != imds.StatusScheduled || e.Duration != 2*time.Hour || e.Approvable {
			t.Errorf("event %+v", e)
		}
	}
	if err := c.Approve(ctxT(t), "instance-reboot"); !errors.Is(err, imds.ErrNotSupported) {
		t.Fatalf("Approve: %v", err)
	}
}

func TestAWSSpotAndRebalance(t *testing.T) {
	f, c, clk := newAWS(t, imds.AWSOptions{})
	at := clk.Now().Add(2 * time.Minute)
	f.SetSpotInstanceAction("terminate", at)
	f.SetRebalanceRecommendation(clk.Now().Add(-time.Minute))
	s := mustPoll(t, c)
	want := []imds.Event{
		{ID: "spot-20260411T120200Z", Provider: imds.AWS, Type: imds.TypePreempt, RawType: "spot-instance-action/terminate",
			Status: imds.StatusScheduled, NotBefore: at, Duration: imds.DurationUnknown, Description: "spot instance interruption: terminate"},
		{ID: "rebalance-20260411T115900Z", Provider: imds.AWS, Type: imds.TypeRebalance, RawType: "rebalance-recommendation",
			Status: imds.StatusStarted, Duration: imds.DurationUnknown, Description: "rebalance recommendation since 2026-04-11T11:59:00Z"},
	}
	if len(s.Events) != 2 || s.Events[0] != want[0] || s.Events[1] != want[1] {
		t.Fatalf("events %+v\nwant %+v", s.Events, want)
	}
	clk.Add(3 * time.Minute)
	s = mustPoll(t, c)
	if s.Events[0].ID != want[0].ID || s.Events[0].Status != imds.StatusStarted {
		t.Fatalf("spot after its time: %+v", s.Events[0])
	}

	f.SetSpotInstanceAction("vanish", at)
	f.ClearRebalanceRecommendation()
	s = mustPoll(t, c)
	if len(s.Events) != 0 || len(s.Unknown) != 1 || s.Unknown[0].RawType != "spot-instance-action/vanish" {
		t.Fatalf("unknown spot action: %+v", s)
	}
}

func TestAWSDisabledSources(t *testing.T) {
	f, c, _ := newAWS(t, imds.AWSOptions{DisableSpot: true, DisableRebalance: true})
	f.SetSpotInstanceAction("terminate", time.Now())
	if s := mustPoll(t, c); len(s.Events) != 0 {
		t.Fatalf("events %+v", s.Events)
	}
	reqs := f.Requests()
	if countRequests(reqs, http.MethodGet, imdsfake.AWSSpotPath)+countRequests(reqs, http.MethodGet, imdsfake.AWSRebalancePath) != 0 {
		t.Fatalf("disabled sources read: %+v", reqs)
	}
	if countRequests(reqs, http.MethodGet, imdsfake.AWSScheduledPath) != 1 {
		t.Fatalf("scheduled events not read: %+v", reqs)
	}
}

func TestAWSTokenCachedAndRenewedBeforeExpiry(t *testing.T) {
	f, c, clk := newAWS(t, imds.AWSOptions{TokenTTL: time.Minute})
	mustPoll(t, c)
	mustPoll(t, c)
	reqs := f.Requests()
	if n := countRequests(reqs, http.MethodPut, imdsfake.AWSTokenPath); n != 1 {
		t.Fatalf("%d token requests for two polls, want 1", n)
	}
	if reqs[0].Method != http.MethodPut || reqs[0].Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") != "60" {
		t.Fatalf("token request %+v", reqs[0])
	}
	tok := reqs[1].Header.Get("X-Aws-Ec2-Metadata-Token")
	if tok == "" {
		t.Fatalf("GET without token: %+v", reqs[1])
	}

	f.ClearRequests()
	clk.Add(55 * time.Second) // still valid for 5 s: renewed before it expires
	mustPoll(t, c)
	reqs = f.Requests()
	if reqs[0].Method != http.MethodPut {
		t.Fatalf("token not renewed first: %+v", reqs)
	}
	for _, r := range reqs {
		if r.Status != 200 && r.Status != 404 {
			t.Fatalf("request %s %s answered %d", r.Method, r.Path, r.Status)
		}
		if r.Method == http.MethodGet && r.Header.Get("X-Aws-Ec2-Metadata-Token") == tok {
			t.Fatalf("old token still used: %+v", r)
		}
	}
}

func TestAWSTokenRefreshOn401(t *testing.T) {
	f, c, _ := newAWS(t, imds.AWSOptions{})
	mustPoll(t, c)
	f.ExpireTokens()
	f.ClearRequests()
	mustPoll(t, c)
	reqs := f.Requests()
	if len(reqs) < 3 || reqs[0].Status != 401 || reqs[1].Method != http.MethodPut || reqs[2].Path != reqs[0].Path || reqs[2].Status != 200 {
		t.Fatalf("no renew-and-retry on 401: %+v", reqs)
	}
	if n := countRequests(reqs, http.MethodPut, imdsfake.AWSTokenPath); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}

	// A second 401 after renewing is an error, not a loop.
	f.ClearRequests()
	f.FailNext(3, 401)
	_, err := c.Poll(ctxT(t))
	wantRequestError(t, err, 401)
	if n := len(f.Requests()); n != 2 {
		t.Fatalf("%d requests for a persistent 401, want 2 (GET, PUT)", n)
	}
}

func TestAWSErrors(t *testing.T) {
	f, c, _ := newAWS(t, imds.AWSOptions{})
	f.Disable()
	_, err := c.Poll(ctxT(t))
	if re := wantRequestError(t, err, 403); re.Path != "/latest/api/token" || re.Provider != imds.AWS {
		t.Fatalf("disabled: %+v", re)
	}
	f.Enable()
	mustPoll(t, c)
	f.Disable()
	_, err = c.Poll(ctxT(t))
	wantRequestError(t, err, 403)
	f.Enable()

	f.FailNext(1, 503)
	_, err = c.Poll(ctxT(t))
	wantRequestError(t, err, 503)

	f.MalformedNext(1)
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)

	id := f.AddScheduled(imdsfake.AWSScheduledEvent{Code: "system-reboot", NotBefore: "2019-01-21T09:00:43Z"})
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)
	f.AddScheduled(imdsfake.AWSScheduledEvent{EventID: id, Code: "system-reboot", NotBefore: "21 Jan 2019 09:00:43 GMT", NotAfter: "21 Jan 2019 09:17:23 GMT"})
	s := mustPoll(t, c)
	if s.Events[0].ID != id || s.Events[0].Duration != 1000*time.Second {
		t.Fatalf("event %+v", s.Events[0])
	}
}

func TestAWSMalformedPerSource(t *testing.T) {
	for _, tc := range []struct {
		path string
		o    imds.AWSOptions
	}{
		{imdsfake.AWSScheduledPath, imds.AWSOptions{DisableSpot: true, DisableRebalance: true}},
		{imdsfake.AWSSpotPath, imds.AWSOptions{DisableScheduledMaintenance: true, DisableRebalance: true}},
		{imdsfake.AWSRebalancePath, imds.AWSOptions{DisableScheduledMaintenance: true, DisableSpot: true}},
	} {
		f, c, _ := newAWS(t, tc.o)
		f.SetSpotInstanceAction("terminate", time.Now())
		f.SetRebalanceRecommendation(time.Now())
		f.MalformedNext(1)
		_, err := c.Poll(ctxT(t))
		var pe *imds.ParseError
		if !errors.As(err, &pe) || pe.Path != tc.path {
			t.Errorf("%s: %v, want *ParseError for it", tc.path, err)
		}
		mustPoll(t, c)
	}
}

func TestNewAWSValidates(t *testing.T) {
	for name, o := range map[string]imds.AWSOptions{
		"TTL too long":  {TokenTTL: 21601 * time.Second},
		"TTL too short": {TokenTTL: 500 * time.Millisecond},
		"TTL negative":  {TokenTTL: -time.Second},
		"nothing to do": {DisableScheduledMaintenance: true, DisableSpot: true, DisableRebalance: true},
		"bad endpoint":  {Endpoint: "ftp://169.254.169.254"},
	} {
		if _, err := imds.NewAWS(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := imds.NewAWS(imds.AWSOptions{TokenTTL: 21600 * time.Second}); err != nil {
		t.Errorf("6 h TTL: %v", err)
	}
}
