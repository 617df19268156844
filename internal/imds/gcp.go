package imds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultGCPEndpoint is the GCE metadata server.
	DefaultGCPEndpoint = "http://metadata.google.internal"
	// DefaultGCPLongPollTimeout is how long one long poll waits for a change
	// (timeout_sec), and the longest time Poll waits without one.
	DefaultGCPLongPollTimeout = 60 * time.Second
	// DefaultGCPReadTimeout bounds the reads that do not long-poll (the first
	// read of each item).
	DefaultGCPReadTimeout = 5 * time.Second
	// DefaultGCPRetryInterval is the first wait before an item whose read
	// failed is read again; it doubles up to DefaultGCPMaxRetryInterval.
	DefaultGCPRetryInterval    = time.Second
	DefaultGCPMaxRetryInterval = 30 * time.Second

	gcpMaintenancePath = "/computeMetadata/v1/instance/maintenance-event"
	gcpPreemptedPath   = "/computeMetadata/v1/instance/preempted"
	gcpUpcomingPath    = "/computeMetadata/v1/instance/upcoming-maintenance"
	// gcpHTTPMargin is how much longer than the long poll a request may take,
	// so the server's own timeout answer always arrives first.
	gcpHTTPMargin = 10 * time.Second
	// gcpMinGap is the least time between the starts of two requests for the
	// same item: a server that answers long polls at once (without a change, or
	// with a new ETag every time) cannot make a hot loop. A change is still seen
	// at once: the long poll that waits for it was started before it.
	gcpMinGap = 250 * time.Millisecond
	// gcpPreemptedMaxRetry caps the retry wait of instance/preempted: GCE stops
	// a preempted VM about 30 s after the notice, so a failing read of it is
	// retried at least this often.
	gcpPreemptedMaxRetry = 2 * time.Second
)

var (
	errLongPollTimeout = errors.New("LongPollTimeout must be between 1 s and 1 h in whole seconds")
	errClientTimeout   = errors.New("HTTPClient.Timeout must exceed LongPollTimeout")
	errNoETag          = errors.New("no ETag header")
	errNoAnswer        = errors.New("no answer within the long-poll timeout")
)

// GCPOptions configures a GCPClient.
type GCPOptions struct {
	// Endpoint is the metadata server base URL; default DefaultGCPEndpoint.
	Endpoint string
	// HTTPClient is used for all requests; default a direct (no proxy) client
	// whose timeout is LongPollTimeout + 10 s. A client with a timeout at or
	// below LongPollTimeout is refused.
	HTTPClient *http.Client
	// LongPollTimeout is sent as timeout_sec; default 60 s. Poll returns at
	// least this often, with or without a change.
	LongPollTimeout time.Duration
	// ReadTimeout bounds each read that does not long-poll; default 5 s.
	ReadTimeout time.Duration
	// RetryInterval is the first wait before an item whose read failed is read
	// again, doubling up to MaxRetryInterval; defaults 1 s and 30 s
	// (instance/preempted at most 2 s). A failing item never holds up the
	// others.
	RetryInterval, MaxRetryInterval time.Duration
	// Now is the clock used to estimate NotBefore; default time.Now. For tests.
	Now func() time.Time
}

// gcpItem is one metadata item the client watches.
type gcpItem int

const (
	itemMaintenance gcpItem = iota
	itemPreempted
	itemUpcoming
	gcpItems
)

var gcpItemPaths = [gcpItems]string{gcpMaintenancePath, gcpPreemptedPath, gcpUpcomingPath}

// gcpState is what the client knows about one item.
type gcpState struct {
	etag string
	// known: a good answer (or 404 for an optional item) was read.
	known bool
	// absent: the item answered 404; it is read again (without waiting for a
	// change) LongPollTimeout later.
	absent bool
	// maintenance-event: the value and when it was first seen (wall clock of
	// the client's Now), kept while the value stays, whatever the ETag does.
	value string
	seen  time.Time
	// preempted and upcoming-maintenance: what the last good answer means.
	events  []Event
	unknown []UnknownEvent

	failures int
	next     time.Time // earliest start of the next request
	started  time.Time // start of the last request
	call     *gcpCall  // the request in flight, if any
}

// gcpCall is one request in flight. It outlives the Poll that started it (the
// next Poll takes its answer), but not that Poll's context.
type gcpCall struct {
	parent context.Context
	cancel context.CancelFunc
	done   chan gcpAnswer // buffered: the request's goroutine never blocks
}

type gcpAnswer struct {
	resp response
	err  error
}

// GCPClient watches instance/maintenance-event, instance/preempted and
// instance/upcoming-maintenance on the GCE metadata server, each with long
// polls of its own (wait_for_change, last_etag, timeout_sec), concurrently:
// a change of any item ends Poll at once, whatever the other requests are
// doing. Concurrent Polls are serialised; it is safe for concurrent use.
type GCPClient struct {
	req         requester
	longPoll    time.Duration
	readTimeout time.Duration
	retry       time.Duration
	maxRetry    time.Duration
	now         func() time.Time
	gate        *gate

	// guarded by gate
	items    [gcpItems]gcpState
	returned bool // a snapshot was returned
}

var (
	_ Client     = (*GCPClient)(nil)
	_ LongPoller = (*GCPClient)(nil)
)

// NewGCP returns a client for the GCE metadata server.
func NewGCP(o GCPOptions) (*GCPClient, error) {
	base, err := normaliseEndpoint(o.Endpoint, DefaultGCPEndpoint)
	if err != nil {
		return nil, fmt.Errorf("imds: gcp: %w", err)
	}
	lp := o.LongPollTimeout
	if lp == 0 {
		lp = DefaultGCPLongPollTimeout
	}
	if lp < time.Second || lp > time.Hour || lp%time.Second != 0 {
		return nil, fmt.Errorf("imds: gcp: %w (got %s)", errLongPollTimeout, o.LongPollTimeout)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(lp + gcpHTTPMargin)
	} else if hc.Timeout != 0 && hc.Timeout <= lp {
		return nil, fmt.Errorf("imds: gcp: %w (%s <= %s)", errClientTimeout, hc.Timeout, lp)
	}
	positive := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return d
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	retry := positive(o.RetryInterval, DefaultGCPRetryInterval)
	return &GCPClient{
		req:         requester{provider: GCP, base: base, client: hc},
		longPoll:    lp,
		readTimeout: positive(o.ReadTimeout, DefaultGCPReadTimeout),
		retry:       retry,
		maxRetry:    max(positive(o.MaxRetryInterval, DefaultGCPMaxRetryInterval), retry),
		now:         now,
		gate:        newGate(0),
	}, nil
}

// Provider returns GCP.
func (c *GCPClient) Provider() string { return GCP }

// LongPolls reports true: Poll waits for a change and spaces its own requests.
func (c *GCPClient) LongPolls() bool { return true }

// Poll returns the current events. The first Poll reads the three items at
// once and returns when all have answered; later Polls return as soon as any
// item changed (or an item's read failed: Snapshot.Errors, with that item's
// last known events), and at the latest after LongPollTimeout without a
// change. Requests in flight when Poll returns stay in flight for the next
// Poll (bound to the context of the Poll that started them), so a change that
// happens between two Polls is not missed and not delayed.
//
// Identity: a maintenance-event value is one event for as long as the value
// stays, whatever its ETag; GCE announces it 60 s ahead, so its NotBefore is
// first seen + 60 s. preempted=TRUE is a Started Preempt event (GCE stops the
// VM about 30 s later). Upcoming maintenance is identified by its window.
// Snapshot.Version is the items' ETags.
//
// Poll fails only while an item has never been read successfully (the first
// Polls) or when ctx ends.
func (c *GCPClient) Poll(ctx context.Context) (Snapshot, error) {
	if err := c.gate.acquire(ctx); err != nil {
		return Snapshot{}, &RequestError{Provider: GCP, Path: gcpMaintenancePath, Err: err}
	}
	defer c.gate.release()

	heartbeat := time.NewTimer(c.longPoll)
	defer heartbeat.Stop()
	var errs []error
	changed := false
	for {
		wake := c.startDue(ctx)
		if c.allKnown() {
			if changed || len(errs) > 0 || !c.returned {
				c.returned = true
				return c.snapshot(errs), nil
			}
		} else if len(errs) > 0 {
			return Snapshot{}, errs[0]
		}

		var answers [gcpItems]<-chan gcpAnswer
		for i := range c.items {
			if call := c.items[i].call; call != nil {
				answers[i] = call.done
			}
		}
		var retry <-chan time.Time
		var retryTimer *time.Timer
		if !wake.IsZero() {
			retryTimer = time.NewTimer(time.Until(wake))
			retry = retryTimer.C
		}
		select {
		case a := <-answers[itemMaintenance]:
			c.finish(ctx, itemMaintenance, a, &changed, &errs)
		case a := <-answers[itemPreempted]:
			c.finish(ctx, itemPreempted, a, &changed, &errs)
		case a := <-answers[itemUpcoming]:
			c.finish(ctx, itemUpcoming, a, &changed, &errs)
		case <-retry:
		case <-heartbeat.C:
			if c.allKnown() {
				c.returned = true
				return c.snapshot(errs), nil
			}
			return Snapshot{}, &RequestError{Provider: GCP, Path: c.firstUnknownPath(), Err: errNoAnswer}
		case <-ctx.Done():
			return Snapshot{}, &RequestError{Provider: GCP, Path: gcpMaintenancePath, Err: ctx.Err()}
		}
		if retryTimer != nil {
			retryTimer.Stop()
		}
	}
}

// Approve returns ErrNotSupported: GCE has no early start for events.
func (c *GCPClient) Approve(context.Context, string) error {
	return fmt.Errorf("gcp approve: %w", ErrNotSupported)
}

// startDue starts a request for every item that has none in flight and is
// due; it returns when the next item not yet due will be (zero: none).
func (c *GCPClient) startDue(ctx context.Context) time.Time {
	var wake time.Time
	now := time.Now()
	for i := range c.items {
		s := &c.items[i]
		if s.call != nil && s.call.parent.Err() != nil {
			s.call.cancel()
			s.call = nil // started by a Poll whose context has ended
		}
		if s.call != nil {
			continue
		}
		if now.Before(s.next) {
			if wake.IsZero() || s.next.Before(wake) {
				wake = s.next
			}
			continue
		}
		c.start(ctx, gcpItem(i))
	}
	return wake
}

// start sends one request for item: a long poll when its ETag is known, else
// a plain read.
func (c *GCPClient) start(ctx context.Context, item gcpItem) {
	s := &c.items[item]
	path := gcpItemPaths[item]
	q := url.Values{}
	if item == itemUpcoming {
		q.Set("alt", "json")
	}
	timeout := c.readTimeout
	if s.known && !s.absent && s.etag != "" {
		q.Set("wait_for_change", "true")
		q.Set("last_etag", s.etag)
		q.Set("timeout_sec", strconv.Itoa(int(c.longPoll/time.Second)))
		timeout = c.longPoll + gcpHTTPMargin
	}
	target := path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	call := &gcpCall{parent: ctx, cancel: cancel, done: make(chan gcpAnswer, 1)}
	s.call, s.started = call, time.Now()
	go func() {
		resp, err := c.req.do(rctx, http.MethodGet, target, path, http.Header{"Metadata-Flavor": {"Google"}}, nil)
		call.done <- gcpAnswer{resp: resp, err: err}
	}()
}

// finish takes the answer of item's request in flight.
func (c *GCPClient) finish(ctx context.Context, item gcpItem, a gcpAnswer, changed *bool, errs *[]error) {
	s := &c.items[item]
	call := s.call
	s.call = nil
	call.cancel()
	if a.err != nil && call.parent.Err() != nil {
		return // the Poll that started it ended: not the service's fault
	}
	now := time.Now()
	path := gcpItemPaths[item]
	err := a.err
	if err == nil && a.resp.status == http.StatusNotFound && item != itemMaintenance {
		// An optional item this machine family does not have: nothing.
		*changed = *changed || !s.known || !s.absent
		s.known, s.absent, s.etag, s.events, s.unknown = true, true, "", nil, nil
		s.failures, s.next = 0, now.Add(c.longPoll)
		return
	}
	if err == nil && !ok(a.resp.status) {
		err = c.req.statusError(path, a.resp)
	}
	etag := ""
	if err == nil {
		// Without an ETag the next long poll would return at once.
		if etag = a.resp.header.Get("ETag"); etag == "" {
			err = c.req.parseError(path, errNoETag)
		}
	}
	if err == nil && s.known && !s.absent && etag == s.etag {
		s.failures, s.next = 0, s.started.Add(gcpMinGap) // timed out without a change
		return
	}
	if err == nil {
		err = c.apply(item, a.resp.body)
	}
	if err != nil {
		s.failures++
		wait := c.backoff(s.failures)
		if item == itemPreempted {
			wait = min(wait, gcpPreemptedMaxRetry)
		}
		s.next = now.Add(wait)
		*errs = append(*errs, err)
		return
	}
	s.known, s.absent, s.etag = true, false, etag
	s.failures, s.next = 0, s.started.Add(gcpMinGap)
	*changed = true
}

// apply parses a changed item; on error the item's state stays.
func (c *GCPClient) apply(item gcpItem, body []byte) error {
	s := &c.items[item]
	path := gcpItemPaths[item]
	switch item {
	case itemMaintenance:
		value, _, _, err := gcpMaintenanceValue(body)
		if err != nil {
			return c.req.parseError(path, err)
		}
		if value != s.value || s.seen.IsZero() {
			s.value, s.seen = value, c.now()
		}
	case itemPreempted:
		preempted, err := parseGCPPreempted(body)
		if err != nil {
			return c.req.parseError(path, err)
		}
		s.events = nil
		if preempted {
			s.events = []Event{gcpPreemptedEvent()}
		}
	case itemUpcoming:
		ev, unknown, err := parseGCPUpcoming(body)
		if err != nil {
			return c.req.parseError(path, err)
		}
		s.events, s.unknown = nil, nil
		if ev != nil {
			s.events = []Event{*ev}
		}
		if unknown != nil {
			s.unknown = []UnknownEvent{*unknown}
		}
	}
	return nil
}

// backoff is the wait after the n-th failure in a row of one item.
func (c *GCPClient) backoff(n int) time.Duration {
	d := c.retry
	for i := 1; i < n && d < c.maxRetry; i++ {
		d *= 2
	}
	return min(d, c.maxRetry)
}

func (c *GCPClient) allKnown() bool {
	for i := range c.items {
		if !c.items[i].known {
			return false
		}
	}
	return true
}

func (c *GCPClient) firstUnknownPath() string {
	for i := range c.items {
		if !c.items[i].known {
			return gcpItemPaths[i]
		}
	}
	return gcpMaintenancePath
}

// snapshot assembles the items' last known state.
func (c *GCPClient) snapshot(errs []error) Snapshot {
	snap := Snapshot{Errors: errs}
	m := &c.items[itemMaintenance]
	if m.value != "" && m.value != "NONE" {
		if typ := gcpMaintenanceType(m.value); typ == "" {
			snap.Unknown = append(snap.Unknown, UnknownEvent{ID: gcpMaintenanceID(m.value), Provider: GCP, RawType: m.value})
		} else {
			snap.Events = append(snap.Events, gcpMaintenanceEvent(m.value, typ, m.seen, c.now()))
		}
	}
	tags := make([]string, 0, gcpItems)
	for i := range c.items {
		s := &c.items[i]
		snap.Events = append(snap.Events, s.events...)
		snap.Unknown = append(snap.Unknown, s.unknown...)
		tags = append(tags, s.etag)
	}
	snap.Version = strings.Join(tags, ",")
	return snap
}
