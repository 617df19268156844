package imds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

const (
	// DefaultGCPEndpoint is the GCE metadata server.
	DefaultGCPEndpoint = "http://metadata.google.internal"
	// DefaultGCPLongPollTimeout is how long one Poll waits for a change.
	DefaultGCPLongPollTimeout = 60 * time.Second
	// DefaultGCPReadTimeout bounds the reads that do not long-poll.
	DefaultGCPReadTimeout = 5 * time.Second

	gcpMaintenancePath = "/computeMetadata/v1/instance/maintenance-event"
	gcpPreemptedPath   = "/computeMetadata/v1/instance/preempted"
	gcpUpcomingPath    = "/computeMetadata/v1/instance/upcoming-maintenance"
	// gcpHTTPMargin is how much longer than the long poll the default HTTP
	// client waits, so the server's own timeout answer always arrives first.
	gcpHTTPMargin = 10 * time.Second
)

var (
	errLongPollTimeout = errors.New("LongPollTimeout must be between 1 s and 1 h in whole seconds")
	errClientTimeout   = errors.New("HTTPClient.Timeout must exceed LongPollTimeout")
	errNoETag          = errors.New("no ETag header")
)

// GCPOptions configures a GCPClient.
type GCPOptions struct {
	// Endpoint is the metadata server base URL; default DefaultGCPEndpoint.
	Endpoint string
	// HTTPClient is used for all requests; default a direct (no proxy) client
	// whose timeout is LongPollTimeout + 10 s. A client with a timeout at or
	// below LongPollTimeout is refused.
	HTTPClient *http.Client
	// LongPollTimeout is sent as timeout_sec; default 60 s.
	LongPollTimeout time.Duration
	// ReadTimeout bounds each read that does not long-poll (preempted,
	// upcoming-maintenance); default 5 s.
	ReadTimeout time.Duration
	// Now is the clock used to estimate NotBefore; default time.Now. For tests.
	Now func() time.Time
}

// GCPClient long-polls the GCE metadata server. Concurrent Polls are
// serialised (each one long-polls); it is safe for concurrent use.
type GCPClient struct {
	req         requester
	longPoll    time.Duration
	readTimeout time.Duration
	now         func() time.Time
	gate        *gate

	// guarded by gate
	etag     string
	seenID   string
	seenTime time.Time
}

var _ Client = (*GCPClient)(nil)

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
	rt := o.ReadTimeout
	if rt <= 0 {
		rt = DefaultGCPReadTimeout
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &GCPClient{
		req:         requester{provider: GCP, base: base, client: hc},
		longPoll:    lp,
		readTimeout: rt,
		now:         now,
		gate:        newGate(0),
	}, nil
}

// Provider returns GCP.
func (c *GCPClient) Provider() string { return GCP }

// Poll waits up to LongPollTimeout for instance/maintenance-event to change
// (the first Poll answers at once), then reads instance/preempted and
// instance/upcoming-maintenance. Snapshot.Version is the maintenance-event
// ETag. A maintenance-event value is announced 60 s ahead, so its NotBefore
// is estimated as first seen + 60 s. The ETag is only kept when the whole
// Poll succeeds, so a change is never lost to a failing later read.
func (c *GCPClient) Poll(ctx context.Context) (Snapshot, error) {
	if err := c.gate.acquire(ctx); err != nil {
		return Snapshot{}, &RequestError{Provider: GCP, Path: gcpMaintenancePath, Err: err}
	}
	defer c.gate.release()

	path := gcpMaintenancePath
	if c.etag != "" {
		path += "?wait_for_change=true&last_etag=" + url.QueryEscape(c.etag) +
			"&timeout_sec=" + strconv.Itoa(int(c.longPoll/time.Second))
	}
	body, etag, err := c.read(ctx, path, gcpMaintenancePath)
	if err != nil {
		return Snapshot{}, err
	}
	if etag == "" {
		// Without an ETag the next long poll would return at once: a hot loop.
		return Snapshot{}, c.req.parseError(gcpMaintenancePath, errNoETag)
	}
	value, present, typ, err := gcpMaintenanceValue(body)
	if err != nil {
		return Snapshot{}, c.req.parseError(gcpMaintenancePath, err)
	}
	snap := Snapshot{Version: etag}
	now := c.now()
	seenID, seenTime := "", time.Time{}
	if present {
		id := gcpMaintenanceID(value, etag)
		seenID, seenTime = id, now
		if id == c.seenID {
			seenTime = c.seenTime
		}
		if typ == "" {
			snap.Unknown = append(snap.Unknown, UnknownEvent{ID: id, Provider: GCP, RawType: value})
		} else {
			e := Event{ID: id, Provider: GCP, Type: typ, RawType: value, Duration: DurationUnknown,
				Description: "host maintenance: " + value}
			e.Status, e.NotBefore = statusAt(seenTime.Add(gcpNotice), now)
			snap.Events = append(snap.Events, e)
		}
	}

	if err := c.readPreempted(ctx, &snap); err != nil {
		return Snapshot{}, err
	}
	if err := c.readUpcoming(ctx, &snap); err != nil {
		return Snapshot{}, err
	}
	c.etag, c.seenID, c.seenTime = etag, seenID, seenTime
	return snap, nil
}

// Approve returns ErrNotSupported: GCE has no early start for events.
func (c *GCPClient) Approve(context.Context, string) error {
	return fmt.Errorf("gcp approve: %w", ErrNotSupported)
}

// readPreempted reads instance/preempted; TRUE adds a Started Preempt event.
func (c *GCPClient) readPreempted(ctx context.Context, snap *Snapshot) error {
	ctx, cancel := context.WithTimeout(ctx, c.readTimeout)
	defer cancel()
	body, _, err := c.read(ctx, gcpPreemptedPath, gcpPreemptedPath)
	var re *RequestError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	preempted, err := parseGCPPreempted(body)
	if err != nil {
		return c.req.parseError(gcpPreemptedPath, err)
	}
	if preempted {
		snap.Events = append(snap.Events, Event{ID: "gce-preempted", Provider: GCP, Type: TypePreempt,
			RawType: "preempted", Status: StatusStarted, Duration: DurationUnknown,
			Description: "instance preempted"})
	}
	return nil
}

// readUpcoming reads the optional upcoming-maintenance item; 404 (machine
// families without it) means nothing is scheduled.
func (c *GCPClient) readUpcoming(ctx context.Context, snap *Snapshot) error {
	ctx, cancel := context.WithTimeout(ctx, c.readTimeout)
	defer cancel()
	body, _, err := c.read(ctx, gcpUpcomingPath+"?alt=json", gcpUpcomingPath)
	var re *RequestError
	if errors.As(err, &re) && re.Status == http.StatusNotFound {
		return nil
	}
	if err != nil {
		return err
	}
	ev, unknown, err := parseGCPUpcoming(body)
	if err != nil {
		return c.req.parseError(gcpUpcomingPath, err)
	}
	if ev != nil {
		snap.Events = append(snap.Events, *ev)
	}
	if unknown != nil {
		snap.Unknown = append(snap.Unknown, *unknown)
	}
	return nil
}

// read GETs one item and returns its body and ETag; non-2xx is a *RequestError.
func (c *GCPClient) read(ctx context.Context, path, errPath string) ([]byte, string, error) {
	resp, err := c.req.do(ctx, http.MethodGet, path, errPath, http.Header{"Metadata-Flavor": {"Google"}}, nil)
	if err != nil {
		return nil, "", err
	}
	if !ok(resp.status) {
		return nil, "", c.req.statusError(errPath, resp)
	}
	return resp.body, resp.header.Get("ETag"), nil
}
