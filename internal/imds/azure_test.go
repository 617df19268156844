package imds_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
)

func newAzure(t *testing.T, resources ...string) (*imdsfake.Azure, *imds.AzureClient) {
	t.Helper()
	f := imdsfake.NewAzure()
	srv := startFake(t, f)
	c, err := imds.NewAzure(imds.AzureOptions{Endpoint: srv.URL, Resources: resources})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestAzureLifecycle(t *testing.T) {
	t.Parallel()
	f, c := newAzure(t, "WestNO_0")
	if c.Provider() != imds.Azure {
		t.Fatalf("Provider %q", c.Provider())
	}
	s := mustPoll(t, c)
	if s.Version != "1" || len(s.Events) != 0 || len(s.Unknown) != 0 {
		t.Fatalf("incarnation 1: %+v", s)
	}

	notBefore := time.Date(2026, 4, 11, 22, 26, 58, 0, time.UTC)
	id := f.Schedule(imdsfake.AzureEvent{
		EventID: "C7061BAC-AFDC-4513-B24B-AA5F13A16123", EventType: "Freeze",
		Resources: []string{"WestNO_0", "WestNO_1"}, NotBefore: "Mon, 11 Apr 2026 22:26:58 GMT",
		Description: "host update", DurationInSeconds: 5,
	})
	s = mustPoll(t, c)
	want := imds.Event{ID: id, Provider: imds.Azure, Type: imds.TypeFreeze, RawType: "Freeze",
		Status: imds.StatusScheduled, NotBefore: notBefore, Duration: 5 * time.Second,
		Description: "host update", Approvable: true}
	if s.Version != "2" || len(s.Events) != 1 || s.Events[0] != want {
		t.Fatalf("incarnation 2: %+v\nwant event %+v", s, want)
	}

	if err := f.StartEvent(id); err != nil {
		t.Fatal(err)
	}
	s = mustPoll(t, c)
	want.Status, want.NotBefore = imds.StatusStarted, time.Time{}
	if s.Version != "3" || len(s.Events) != 1 || s.Events[0] != want {
		t.Fatalf("incarnation 3: %+v", s)
	}

	if err := f.Complete(id); err != nil {
		t.Fatal(err)
	}
	s = mustPoll(t, c)
	if s.Version != "4" || len(s.Events) != 0 {
		t.Fatalf("incarnation 4: %+v", s)
	}

	for _, r := range f.Requests() {
		if r.Method != http.MethodGet || r.RawQuery != "api-version=2020-07-01" ||
			r.Header.Get("Metadata") != "true" || len(r.Header.Values("X-Forwarded-For")) != 0 {
			t.Fatalf("request %+v", r)
		}
	}
}

func TestAzureEventTypes(t *testing.T) {
	f, c := newAzure(t, "vm0")
	types := map[string]imds.EventType{
		"Freeze": imds.TypeFreeze, "Reboot": imds.TypeReboot, "Redeploy": imds.TypeRedeploy,
		"Preempt": imds.TypePreempt, "Terminate": imds.TypeTerminate,
	}
	for raw := range types {
		f.Schedule(imdsfake.AzureEvent{EventID: raw, EventType: raw, Resources: []string{"vm0"}, DurationInSeconds: -1})
	}
	f.Schedule(imdsfake.AzureEvent{EventID: "new", EventType: "LiveMigrate", Resources: []string{"vm0"}})
	f.Schedule(imdsfake.AzureEvent{EventID: "odd-status", EventType: "Reboot", EventStatus: "Completed", Resources: []string{"vm0"}})
	f.Schedule(imdsfake.AzureEvent{EventID: "other-new", EventType: "LiveMigrate", Resources: []string{"vm1"}})
	s := mustPoll(t, c)
	if len(s.Events) != len(types) {
		t.Fatalf("events %+v", s.Events)
	}
	for _, e := range s.Events {
		if types[e.RawType] != e.Type || e.Duration != imds.DurationUnknown || !e.Approvable {
			t.Errorf("event %+v", e)
		}
	}
	wantUnknown := []imds.UnknownEvent{
		{ID: "new", Provider: imds.Azure, RawType: "LiveMigrate"},
		{ID: "odd-status", Provider: imds.Azure, RawType: "Reboot", RawStatus: "Completed"},
	}
	if len(s.Unknown) != 2 || s.Unknown[0] != wantUnknown[0] || s.Unknown[1] != wantUnknown[1] {
		t.Fatalf("unknown %+v, want %+v", s.Unknown, wantUnknown)
	}
	for _, id := range []string{"new", "odd-status", "other-new"} {
		if err := c.Approve(ctxT(t), id); !errors.Is(err, imds.ErrEventNotListed) {
			t.Errorf("Approve(%s): %v, want ErrEventNotListed", id, err)
		}
	}
	if len(f.Approvals()) != 0 {
		t.Fatalf("approvals %v", f.Approvals())
	}
}

func TestAzureFiltersOtherVMs(t *testing.T) {
	f, c := newAzure(t, "aks-pool-vmss_3")
	mine := f.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"aks-pool-vmss_2", "AKS-POOL-VMSS_3"}})
	f.Schedule(imdsfake.AzureEvent{EventType: "Redeploy", Resources: []string{"aks-pool-vmss_2"}})
	f.Schedule(imdsfake.AzureEvent{EventType: "Terminate", Resources: nil})
	f.Schedule(imdsfake.AzureEvent{EventType: "Freeze", Resources: []string{"aks-pool-vmss_30"}, NotBefore: "garbage"})
	s := mustPoll(t, c)
	if len(s.Events) != 1 || s.Events[0].ID != mine || len(s.Unknown) != 0 {
		t.Fatalf("snapshot %+v, want only %s", s, mine)
	}
}

func TestAzureApproveOnlyOwnEvents(t *testing.T) {
	t.Parallel()
	f, c := newAzure(t, "vmss_0")
	mine := f.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"vmss_0", "vmss_1"}})
	theirs := f.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"vmss_1"}})

	if err := c.Approve(ctxT(t), mine); !errors.Is(err, imds.ErrEventNotListed) {
		t.Fatalf("Approve before any Poll: %v", err)
	}
	mustPoll(t, c)
	if err := c.Approve(ctxT(t), theirs); !errors.Is(err, imds.ErrEventNotListed) {
		t.Fatalf("Approve of another VM's event: %v", err)
	}
	if err := c.Approve(ctxT(t), "made-up"); !errors.Is(err, imds.ErrEventNotListed) {
		t.Fatalf("Approve of an unknown id: %v", err)
	}
	if err := c.Approve(ctxT(t), mine); err != nil {
		t.Fatalf("Approve: %v", err)
	}
	if got := f.Approvals(); len(got) != 1 || got[0] != mine {
		t.Fatalf("approvals %v", got)
	}
	post := f.Requests()[len(f.Requests())-1]
	if post.Method != http.MethodPost || post.Body != `{"StartRequests":[{"EventId":"`+mine+`"}]}` ||
		post.Header.Get("Metadata") != "true" || post.RawQuery != "api-version=2020-07-01" || post.Status != 200 {
		t.Fatalf("approval request %+v", post)
	}
	s := mustPoll(t, c)
	if s.Events[0].Status != imds.StatusStarted {
		t.Fatalf("approved event %+v", s.Events[0])
	}
	if err := f.Complete(mine); err != nil {
		t.Fatal(err)
	}
	mustPoll(t, c)
	if err := c.Approve(ctxT(t), mine); !errors.Is(err, imds.ErrEventNotListed) {
		t.Fatalf("Approve of a finished event: %v", err)
	}
}

func TestAzureStaysUnderRateLimit(t *testing.T) {
	t.Parallel()
	f, c := newAzure(t, "vm0") // the fake refuses more than 5 requests per second
	id := f.Schedule(imdsfake.AzureEvent{EventType: "Freeze", Resources: []string{"vm0"}})
	mustPoll(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 3 {
		wg.Go(func() {
			for i := range 4 {
				var err error
				if g == 0 && i%2 == 1 {
					err = c.Approve(ctxT(t), id)
				} else {
					_, err = c.Poll(ctxT(t))
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("request failed: %v", err)
	}
	reqs := f.Requests()
	if len(reqs) != 13 {
		t.Fatalf("%d requests, want 13", len(reqs))
	}
	for i := 1; i < len(reqs); i++ {
		if gap := reqs[i].Time.Sub(reqs[i-1].Time); gap < 200*time.Millisecond {
			t.Errorf("requests %d and %d only %s apart", i-1, i, gap)
		}
		if reqs[i].Status == http.StatusTooManyRequests {
			t.Errorf("request %d refused with 429", i)
		}
	}
}

func TestAzureErrors(t *testing.T) {
	t.Parallel()
	f, c := newAzure(t, "vm0")
	for _, status := range []int{500, 503, 429, 400} {
		f.FailNext(1, status)
		_, err := c.Poll(ctxT(t))
		wantRequestError(t, err, status)
	}
	f.MalformedNext(1)
	_, err := c.Poll(ctxT(t))
	wantParseError(t, err)

	id := f.Schedule(imdsfake.AzureEvent{EventType: "Reboot", Resources: []string{"vm0"}, NotBefore: "2026-04-11T22:26:58Z"})
	_, err = c.Poll(ctxT(t))
	wantParseError(t, err)
	f.Schedule(imdsfake.AzureEvent{EventID: id, EventType: "Reboot", Resources: []string{"vm0"}, NotBefore: "Sat, 11 Apr 2026 22:26:58 GMT"})
	s := mustPoll(t, c)
	if !s.Events[0].NotBefore.Equal(time.Date(2026, 4, 11, 22, 26, 58, 0, time.UTC)) {
		t.Fatalf("NotBefore %v", s.Events[0].NotBefore)
	}

	f.FailNext(1, 503)
	wantRequestError(t, c.Approve(ctxT(t), id), 503)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Poll(ctx)
	if re := wantRequestError(t, err, 0); !errors.Is(re, context.Canceled) {
		t.Fatalf("canceled Poll: %v", err)
	}
}

func TestAzureTimeout(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(srv.Close)
	c, err := imds.NewAzure(imds.AzureOptions{Endpoint: srv.URL, Resources: []string{"vm0"},
		HTTPClient: &http.Client{Timeout: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Poll(ctxT(t))
	wantRequestError(t, err, 0)
}

func TestNewAzureValidates(t *testing.T) {
	for name, o := range map[string]imds.AzureOptions{
		"no resources":    {},
		"blank resources": {Resources: []string{" ", ""}},
		"bad endpoint":    {Resources: []string{"vm0"}, Endpoint: "169.254.169.254"},
		"query endpoint":  {Resources: []string{"vm0"}, Endpoint: "http://169.254.169.254/?x=1"},
	} {
		if _, err := imds.NewAzure(o); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := imds.NewAzure(imds.AzureOptions{Resources: []string{"vm0"}}); err != nil {
		t.Errorf("defaults: %v", err)
	}
}
