package imdsfake

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Paths served by the AWS fake.
const (
	AWSTokenPath     = "/latest/api/token"
	AWSScheduledPath = "/latest/meta-data/events/maintenance/scheduled"
	AWSSpotPath      = "/latest/meta-data/spot/instance-action"
	AWSRebalancePath = "/latest/meta-data/events/recommendations/rebalance"
)

const (
	awsTTLHeader   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	awsTokenHeader = "X-Aws-Ec2-Metadata-Token"
	awsTimeLayout  = "2 Jan 2006 15:04:05 GMT"
)

// AWSScheduledEvent is one entry of events/maintenance/scheduled, as served.
type AWSScheduledEvent struct {
	// NotBefore, NotAfter and NotBeforeDeadline use "2 Jan 2006 15:04:05 GMT"
	// (see AWSTime).
	NotBefore         string `json:"NotBefore"`
	Code              string `json:"Code"`
	Description       string `json:"Description"`
	EventID           string `json:"EventId"`
	NotAfter          string `json:"NotAfter"`
	NotBeforeDeadline string `json:"NotBeforeDeadline,omitempty"`
	// State is active, completed or canceled.
	State string `json:"State"`
}

// AWSTime formats t as EC2 scheduled event times ("21 Jan 2019 09:00:43 GMT").
func AWSTime(t time.Time) string { return t.UTC().Format(awsTimeLayout) }

// AWS fakes EC2 IMDSv2. PUT /latest/api/token needs
// X-aws-ec2-metadata-token-ttl-seconds in 1..21600 (400 otherwise) and
// returns a token; every GET needs a current token in X-aws-ec2-metadata-token
// (401 when missing, unknown or expired by the fake's clock). Disable makes
// every request 403. Spot instance-action and rebalance answer 404 until set;
// unknown paths 404.
type AWS struct {
	base
	now       func() time.Time
	tokens    map[string]time.Time // token -> expiry
	disabled  bool
	scheduled []AWSScheduledEvent
	spot      []byte // instance-action document, nil when not marked
	rebalance []byte // rebalance document, nil when none
	nextID    int
}

// NewAWS returns an enabled fake with no events, on the real clock.
func NewAWS() *AWS {
	return &AWS{now: time.Now, tokens: map[string]time.Time{}}
}

// Start serves the fake on 127.0.0.1; Close the server when done.
func (a *AWS) Start() *Server { return serve(a) }

// SetNow sets the clock that decides token expiry; nil restores time.Now.
func (a *AWS) SetNow(now func() time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	a.now = now
}

// ExpireTokens invalidates every token issued so far.
func (a *AWS) ExpireTokens() {
	a.mu.Lock()
	defer a.mu.Unlock()
	clear(a.tokens)
}

// Disable makes every request answer 403, as when IMDS is turned off.
func (a *AWS) Disable() { a.setDisabled(true) }

// Enable undoes Disable.
func (a *AWS) Enable() { a.setDisabled(false) }

func (a *AWS) setDisabled(d bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.disabled = d
}

// AddScheduled adds ev, or replaces the event with the same EventID, and
// returns its id. Defaults: a generated EventID, State "active", NotBefore a
// day from now and NotAfter two hours later (when NotBefore was defaulted).
func (a *AWS) AddScheduled(ev AWSScheduledEvent) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ev.EventID == "" {
		a.nextID++
		ev.EventID = fmt.Sprintf("instance-event-%017x", a.nextID)
	}
	if ev.State == "" {
		ev.State = "active"
	}
	if ev.NotBefore == "" {
		nb := a.now().Add(24 * time.Hour)
		ev.NotBefore = AWSTime(nb)
		if ev.NotAfter == "" {
			ev.NotAfter = AWSTime(nb.Add(2 * time.Hour))
		}
	}
	if i := a.indexLocked(ev.EventID); i >= 0 {
		a.scheduled[i] = ev
	} else {
		a.scheduled = append(a.scheduled, ev)
	}
	return ev.EventID
}

// SetScheduledState sets the State of a scheduled event (active, completed,
// canceled or anything else, to test unknown states).
func (a *AWS) SetScheduledState(eventID, state string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	i := a.indexLocked(eventID)
	if i < 0 {
		return fmt.Errorf("set state of %q: %w", eventID, ErrNoSuchEvent)
	}
	a.scheduled[i].State = state
	return nil
}

// Complete marks a scheduled event completed (it stays listed, as on EC2).
func (a *AWS) Complete(eventID string) error { return a.SetScheduledState(eventID, "completed") }

// Cancel marks a scheduled event canceled (it stays listed, as on EC2).
func (a *AWS) Cancel(eventID string) error { return a.SetScheduledState(eventID, "canceled") }

// Scheduled returns a copy of the scheduled events.
func (a *AWS) Scheduled() []AWSScheduledEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.scheduled)
}

// SetSpotInstanceAction marks the spot instance for interruption: action
// terminate, stop or hibernate at t.
func (a *AWS) SetSpotInstanceAction(action string, t time.Time) {
	b, _ := json.Marshal(map[string]string{"action": action, "time": t.UTC().Format(time.RFC3339)})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.spot = b
}

// ClearSpotInstanceAction makes spot/instance-action answer 404 again.
func (a *AWS) ClearSpotInstanceAction() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.spot = nil
}

// SetRebalanceRecommendation issues a rebalance recommendation at t.
func (a *AWS) SetRebalanceRecommendation(t time.Time) {
	b, _ := json.Marshal(map[string]string{"noticeTime": t.UTC().Format(time.RFC3339)})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rebalance = b
}

// ClearRebalanceRecommendation makes the rebalance item answer 404 again.
func (a *AWS) ClearRebalanceRecommendation() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.rebalance = nil
}

func (a *AWS) indexLocked(id string) int {
	return slices.IndexFunc(a.scheduled, func(e AWSScheduledEvent) bool { return e.EventID == id })
}

// ServeHTTP implements http.Handler.
func (a *AWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := a.record(r)
	const ct = "text/plain"
	a.mu.Lock()
	disabled := a.disabled
	a.mu.Unlock()
	switch {
	case rec.fail != 0:
		a.reply(w, rec, rec.fail, ct, http.StatusText(rec.fail))
	case disabled:
		a.reply(w, rec, http.StatusForbidden, ct, "Forbidden")
	case r.URL.Path == AWSTokenPath:
		a.serveToken(w, r, rec)
	case r.Method != http.MethodGet:
		a.reply(w, rec, http.StatusMethodNotAllowed, ct, "Method Not Allowed")
	case !a.validToken(r.Header.Get(awsTokenHeader)):
		a.reply(w, rec, http.StatusUnauthorized, ct, "Unauthorized")
	default:
		a.serveItem(w, r, rec)
	}
}

func (a *AWS) serveToken(w http.ResponseWriter, r *http.Request, rec received) {
	const ct = "text/plain"
	if r.Method != http.MethodPut {
		a.reply(w, rec, http.StatusMethodNotAllowed, ct, "Method Not Allowed")
		return
	}
	ttl, err := strconv.Atoi(strings.TrimSpace(r.Header.Get(awsTTLHeader)))
	if err != nil || ttl < 1 || ttl > 21600 {
		a.reply(w, rec, http.StatusBadRequest, ct, "Bad Request")
		return
	}
	tok := rand.Text()
	a.mu.Lock()
	now := a.now()
	for t, exp := range a.tokens {
		if !now.Before(exp) {
			delete(a.tokens, t)
		}
	}
	a.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
	a.mu.Unlock()
	w.Header().Set(awsTTLHeader, strconv.Itoa(ttl))
	a.reply(w, rec, http.StatusOK, ct, tok)
}

func (a *AWS) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, found := a.tokens[tok]
	return found && a.now().Before(exp)
}

func (a *AWS) serveItem(w http.ResponseWriter, r *http.Request, rec received) {
	const ct = "text/plain"
	var doc []byte
	a.mu.Lock()
	switch r.URL.Path {
	case AWSScheduledPath:
		list := a.scheduled
		if list == nil {
			list = []AWSScheduledEvent{}
		}
		doc, _ = json.Marshal(list)
	case AWSSpotPath:
		doc = slices.Clone(a.spot)
	case AWSRebalancePath:
		doc = slices.Clone(a.rebalance)
	}
	a.mu.Unlock()
	if doc == nil {
		a.reply(w, rec, http.StatusNotFound, ct, "Not Found")
		return
	}
	if a.takeMalformed() {
		doc = doc[:len(doc)*2/3]
	}
	a.reply(w, rec, http.StatusOK, ct, string(doc))
}
