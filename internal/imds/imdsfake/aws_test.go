package imdsfake

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func awsToken(t *testing.T, srv *Server, ttl string) string {
	t.Helper()
	st, body, _ := do(t, http.MethodPut, srv.URL+AWSTokenPath, map[string]string{awsTTLHeader: ttl}, "")
	if st != 200 || body == "" {
		t.Fatalf("token: status %d body %q", st, body)
	}
	return body
}

func TestAWSToken(t *testing.T) {
	f := NewAWS()
	srv := f.Start()
	defer srv.Close()
	for _, ttl := range []string{"", "0", "21601", "-5", "abc", "1.5"} {
		h := map[string]string{}
		if ttl != "" {
			h[awsTTLHeader] = ttl
		}
		if st, _, _ := do(t, http.MethodPut, srv.URL+AWSTokenPath, h, ""); st != 400 {
			t.Errorf("TTL %q: status %d, want 400", ttl, st)
		}
	}
	if st, _, _ := do(t, http.MethodGet, srv.URL+AWSTokenPath, nil, ""); st != 405 {
		t.Errorf("GET token: status %d, want 405", st)
	}
	awsToken(t, srv, "1")
	tok := awsToken(t, srv, "21600")

	url := srv.URL + AWSScheduledPath
	if st, _, _ := do(t, http.MethodGet, url, nil, ""); st != 401 {
		t.Errorf("no token: status %d, want 401", st)
	}
	if st, _, _ := do(t, http.MethodGet, url, map[string]string{awsTokenHeader: "bogus"}, ""); st != 401 {
		t.Errorf("bogus token: status %d, want 401", st)
	}
	if st, body, _ := do(t, http.MethodGet, url, map[string]string{awsTokenHeader: tok}, ""); st != 200 || body != "[]" {
		t.Errorf("with token: status %d body %q", st, body)
	}
	f.ExpireTokens()
	if st, _, _ := do(t, http.MethodGet, url, map[string]string{awsTokenHeader: tok}, ""); st != 401 {
		t.Errorf("after ExpireTokens: status %d, want 401", st)
	}
}

func TestAWSTokenExpiresByClock(t *testing.T) {
	f := NewAWS()
	c := &clock{t: time.Date(2026, 4, 11, 12, 0, 0, 0, time.UTC)}
	f.SetNow(c.Now)
	srv := f.Start()
	defer srv.Close()
	tok := awsToken(t, srv, "10")
	h := map[string]string{awsTokenHeader: tok}
	c.Add(9 * time.Second)
	if st, _, _ := do(t, http.MethodGet, srv.URL+AWSScheduledPath, h, ""); st != 200 {
		t.Fatalf("before expiry: status %d", st)
	}
	c.Add(time.Second)
	if st, _, _ := do(t, http.MethodGet, srv.URL+AWSScheduledPath, h, ""); st != 401 {
		t.Fatalf("at expiry: status %d, want 401", st)
	}
}

func TestAWSItems(t *testing.T) {
	f := NewAWS()
	srv := f.Start()
	defer srv.Close()
	h := map[string]string{awsTokenHeader: awsToken(t, srv, "60")}
	get := func(path string) (int, string) {
		st, body, _ := do(t, http.MethodGet, srv.URL+path, h, "")
		return st, body
	}
	for _, p := range []string{AWSSpotPath, AWSRebalancePath, "/latest/meta-data/nothing"} {
		if st, _ := get(p); st != 404 {
			t.Errorf("%s: status %d, want 404", p, st)
		}
	}
	at := time.Date(2017, 9, 18, 8, 22, 0, 0, time.UTC)
	f.SetSpotInstanceAction("terminate", at)
	if st, body := get(AWSSpotPath); st != 200 || body != `{"action":"terminate","time":"2017-09-18T08:22:00Z"}` {
		t.Errorf("spot: %d %s", st, body)
	}
	f.SetRebalanceRecommendation(at)
	if st, body := get(AWSRebalancePath); st != 200 || body != `{"noticeTime":"2017-09-18T08:22:00Z"}` {
		t.Errorf("rebalance: %d %s", st, body)
	}
	f.ClearSpotInstanceAction()
	f.ClearRebalanceRecommendation()
	if st, _ := get(AWSSpotPath); st != 404 {
		t.Errorf("spot after clear: %d", st)
	}

	id := f.AddScheduled(AWSScheduledEvent{Code: "system-reboot", Description: "scheduled reboot",
		NotBefore: AWSTime(at), NotAfter: AWSTime(at.Add(time.Hour))})
	if err := f.Cancel(id); err != nil {
		t.Fatal(err)
	}
	_, body := get(AWSScheduledPath)
	var list []AWSScheduledEvent
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].EventID != id || list[0].State != "canceled" || list[0].NotBefore != "18 Sep 2017 08:22:00 GMT" {
		t.Fatalf("scheduled %+v", list)
	}
	if err := f.Complete("nope"); err == nil {
		t.Fatal("Complete of an unknown event succeeded")
	}
}

func TestAWSDisableAndFaults(t *testing.T) {
	f := NewAWS()
	srv := f.Start()
	defer srv.Close()
	f.Disable()
	if st, _, _ := do(t, http.MethodPut, srv.URL+AWSTokenPath, map[string]string{awsTTLHeader: "60"}, ""); st != 403 {
		t.Fatalf("disabled token: status %d, want 403", st)
	}
	f.Enable()
	h := map[string]string{awsTokenHeader: awsToken(t, srv, "60")}
	f.FailNext(1, 503)
	if st, _, _ := do(t, http.MethodGet, srv.URL+AWSScheduledPath, h, ""); st != 503 {
		t.Fatalf("FailNext: status %d", st)
	}
	f.MalformedNext(1)
	if _, body, _ := do(t, http.MethodGet, srv.URL+AWSScheduledPath, h, ""); json.Valid([]byte(body)) {
		t.Fatalf("malformed answer is valid JSON: %q", body)
	}
	reqs := f.Requests()
	if len(reqs) != 4 || reqs[0].Status != 403 || reqs[1].Method != http.MethodPut || reqs[2].Status != 503 {
		t.Fatalf("request log %+v", reqs)
	}
}
