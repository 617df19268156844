package imds

import (
	"strings"
	"testing"
	"time"
)

const awsSample = `[{"NotBefore":"21 Jan 2019 09:00:43 GMT","Code":"system-reboot","Description":"scheduled reboot",
"EventId":"instance-event-0d59937288b749b32","NotAfter":"21 Jan 2019 09:17:23 GMT","State":"active"}]`

var awsNow = time.Date(2019, 1, 20, 0, 0, 0, 0, time.UTC)

func TestParseAWSScheduled(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		events     int
		unknown    int
		err        bool
	}{
		{"sample", awsSample, 1, 0, false},
		{"empty", `[]`, 0, 0, false},
		{"null", `null`, 0, 0, false},
		{"completed", strings.Replace(awsSample, `"active"`, `"completed"`, 1), 0, 0, false},
		{"canceled", strings.Replace(awsSample, `"active"`, `"canceled"`, 1), 0, 0, false},
		{"unknown state", strings.Replace(awsSample, `"active"`, `"Active"`, 1), 0, 1, false},
		{"unknown code", strings.Replace(awsSample, `"system-reboot"`, `"system-teleport"`, 1), 0, 1, false},
		{"RFC 3339 time", strings.Replace(awsSample, "21 Jan 2019 09:00:43 GMT", "2019-01-21T09:00:43Z", 1), 0, 0, true},
		{"bad NotAfter", strings.Replace(awsSample, "21 Jan 2019 09:17:23 GMT", "later", 1), 0, 0, true},
		{"deadline", strings.Replace(awsSample, `"State"`, `"NotBeforeDeadline":"31 Jan 2019 09:00:43 GMT","State"`, 1), 1, 0, false},
		{"bad deadline", strings.Replace(awsSample, `"State"`, `"NotBeforeDeadline":"x","State"`, 1), 0, 0, true},
		{"no EventId", strings.Replace(awsSample, `"EventId":"instance-event-0d59937288b749b32",`, "", 1), 0, 0, true},
		{"object", `{}`, 0, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events, unknown, err := parseAWSScheduled([]byte(tc.body), awsNow)
			if (err != nil) != tc.err || len(events) != tc.events || len(unknown) != tc.unknown {
				t.Fatalf("got %+v %+v, %v", events, unknown, err)
			}
			checkEvents(t, AWS, events, unknown)
		})
	}
}

func TestParseAWSNotices(t *testing.T) {
	for _, body := range []string{`{"action": "terminate"}`, `{"time": "2017-09-18T08:22:00Z"}`,
		`{"action": "stop", "time": "18 Sep 2017 08:22:00 GMT"}`, `[]`, ``} {
		if e, u, err := parseAWSSpot([]byte(body), awsNow); err == nil {
			t.Errorf("spot %q: %+v %+v", body, e, u)
		}
	}
	for _, action := range []string{"terminate", "stop", "hibernate"} {
		e, u, err := parseAWSSpot([]byte(`{"action": "`+action+`", "time": "2017-09-18T08:22:00Z"}`), awsNow)
		if err != nil || u != nil || e.Type != TypePreempt || e.ID != "spot-20170918T082200Z" {
			t.Errorf("spot %s: %+v %+v %v", action, e, u, err)
		}
	}
	for _, body := range []string{`{}`, `{"noticeTime": "soon"}`, `[`} {
		if e, err := parseAWSRebalance([]byte(body)); err == nil {
			t.Errorf("rebalance %q: %+v", body, e)
		}
	}
}

func FuzzAWSScheduled(f *testing.F) {
	f.Add([]byte(awsSample), int64(0))
	f.Add([]byte(`[]`), int64(0))
	f.Add([]byte(`[{"Code":"instance-stop","EventId":"e","State":"active","NotBefore":"1 Jan 2000 00:00:00 GMT"},{"Code":"x","State":"canceled"}]`), int64(1e18))
	f.Fuzz(func(t *testing.T, body []byte, nowNanos int64) {
		now := time.Unix(0, nowNanos)
		events, unknown, err := parseAWSScheduled(body, now)
		if err != nil {
			if len(events)+len(unknown) != 0 {
				t.Fatalf("events with an error: %+v %+v", events, unknown)
			}
			return
		}
		checkEvents(t, AWS, events, unknown)
	})
}

func FuzzAWSNotices(f *testing.F) {
	f.Add([]byte(`{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`))
	f.Add([]byte(`{"action": "hibernate", "time": "2017-09-18T08:22:00.123+02:00"}`))
	f.Add([]byte(`{"noticeTime": "2020-10-27T08:22:00Z"}`))
	f.Add([]byte(`{"action": "vanish", "time": "9999-12-31T23:59:59Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		e, u, err := parseAWSSpot(body, awsNow)
		switch {
		case err != nil && (e != nil || u != nil):
			t.Fatalf("spot result with an error: %+v %+v", e, u)
		case err == nil && (e == nil) == (u == nil):
			t.Fatalf("spot: want exactly one of event and unknown: %+v %+v", e, u)
		case e != nil:
			checkEvents(t, AWS, []Event{*e}, nil)
		case u != nil:
			checkEvents(t, AWS, nil, []UnknownEvent{*u})
		}
		r, err := parseAWSRebalance(body)
		if (err == nil) != (r != nil) {
			t.Fatalf("rebalance: %+v, %v", r, err)
		}
		if r != nil {
			checkEvents(t, AWS, []Event{*r}, nil)
		}
	})
}
