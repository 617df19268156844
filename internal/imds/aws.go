package imds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

const (
	// DefaultAWSEndpoint is the EC2 Instance Metadata Service.
	DefaultAWSEndpoint = "http://169.254.169.254"
	// DefaultAWSTokenTTL is the default and longest IMDSv2 session token
	// lifetime (6 h).
	DefaultAWSTokenTTL = 21600 * time.Second

	awsScheduledPath = "/latest/meta-data/events/maintenance/scheduled"
	awsSpotPath      = "/latest/meta-data/spot/instance-action"
	awsRebalancePath = "/latest/meta-data/events/recommendations/rebalance"
	awsTimeout       = 5 * time.Second
)

var (
	errTokenTTL  = errors.New("TokenTTL must be between 1 s and 6 h")
	errNoSources = errors.New("all event sources are disabled")
)

// AWSOptions configures an AWSClient. The zero value reads all three sources.
type AWSOptions struct {
	// Endpoint is the metadata service base URL; default DefaultAWSEndpoint.
	Endpoint string
	// HTTPClient is used for all requests; default a direct (no proxy) client
	// with a 5 s timeout.
	HTTPClient *http.Client
	// TokenTTL is the IMDSv2 session token lifetime, 1 s .. 6 h in whole
	// seconds; default 6 h. The token is renewed shortly before it expires.
	TokenTTL time.Duration
	// DisableScheduledMaintenance, DisableSpot and DisableRebalance switch off
	// reading events/maintenance/scheduled, spot/instance-action and
	// events/recommendations/rebalance. All are read by default.
	DisableScheduledMaintenance bool
	DisableSpot                 bool
	DisableRebalance            bool
	// Now is the clock (token renewal, Started once NotBefore has passed);
	// default time.Now. For tests.
	Now func() time.Time
}

// AWSClient polls EC2 IMDSv2 for scheduled events, spot interruption notices
// and rebalance recommendations. It is safe for concurrent use.
type AWSClient struct {
	req                          requester
	tokens                       *awsTokens
	now                          func() time.Time
	scheduled, spot, rebalancing bool
}

var _ Client = (*AWSClient)(nil)

// NewAWS returns a client for EC2 IMDSv2.
func NewAWS(o AWSOptions) (*AWSClient, error) {
	base, err := normaliseEndpoint(o.Endpoint, DefaultAWSEndpoint)
	if err != nil {
		return nil, fmt.Errorf("imds: aws: %w", err)
	}
	ttl := o.TokenTTL
	if ttl == 0 {
		ttl = awsMaxTokenTTL
	}
	ttl = ttl.Truncate(time.Second)
	if ttl < time.Second || ttl > awsMaxTokenTTL {
		return nil, fmt.Errorf("imds: aws: %w (got %s)", errTokenTTL, o.TokenTTL)
	}
	if o.DisableScheduledMaintenance && o.DisableSpot && o.DisableRebalance {
		return nil, fmt.Errorf("imds: aws: %w", errNoSources)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(awsTimeout)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	req := requester{provider: AWS, base: base, client: hc}
	return &AWSClient{
		req:         req,
		tokens:      &awsTokens{req: req, ttl: ttl, now: now},
		now:         now,
		scheduled:   !o.DisableScheduledMaintenance,
		spot:        !o.DisableSpot,
		rebalancing: !o.DisableRebalance,
	}, nil
}

// Provider returns AWS.
func (c *AWSClient) Provider() string { return AWS }

// Poll reads the enabled sources. AWS has no document version, so
// Snapshot.Version is empty. A 404 from a source means it has nothing; 403
// (IMDS disabled), 503 and other statuses are *RequestError.
func (c *AWSClient) Poll(ctx context.Context) (Snapshot, error) {
	var snap Snapshot
	now := c.now()
	if c.scheduled {
		body, found, err := c.get(ctx, awsScheduledPath)
		if err != nil {
			return Snapshot{}, err
		}
		if found {
			events, unknown, err := parseAWSScheduled(body, now)
			if err != nil {
				return Snapshot{}, c.req.parseError(awsScheduledPath, err)
			}
			snap.Events = append(snap.Events, events...)
			snap.Unknown = append(snap.Unknown, unknown...)
		}
	}
	if c.spot {
		body, found, err := c.get(ctx, awsSpotPath)
		if err != nil {
			return Snapshot{}, err
		}
		if found {
			ev, unknown, err := parseAWSSpot(body, now)
			if err != nil {
				return Snapshot{}, c.req.parseError(awsSpotPath, err)
			}
			if ev != nil {
				snap.Events = append(snap.Events, *ev)
			}
			if unknown != nil {
				snap.Unknown = append(snap.Unknown, *unknown)
			}
		}
	}
	if c.rebalancing {
		body, found, err := c.get(ctx, awsRebalancePath)
		if err != nil {
			return Snapshot{}, err
		}
		if found {
			ev, err := parseAWSRebalance(body)
			if err != nil {
				return Snapshot{}, c.req.parseError(awsRebalancePath, err)
			}
			snap.Events = append(snap.Events, *ev)
		}
	}
	return snap, nil
}

// Approve returns ErrNotSupported: EC2 has no early start for events.
func (c *AWSClient) Approve(context.Context, string) error {
	return fmt.Errorf("aws approve: %w", ErrNotSupported)
}

// get reads one metadata item with the session token. On 401 the token is
// renewed once and the request repeated. found is false on 404.
func (c *AWSClient) get(ctx context.Context, path string) (body []byte, found bool, err error) {
	tok, err := c.tokens.get(ctx)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.req.do(ctx, http.MethodGet, path, path, http.Header{awsTokenHeader: {tok}}, nil)
	if err != nil {
		return nil, false, err
	}
	if resp.status == http.StatusUnauthorized {
		if tok, err = c.tokens.renew(ctx, tok); err != nil {
			return nil, false, err
		}
		if resp, err = c.req.do(ctx, http.MethodGet, path, path, http.Header{awsTokenHeader: {tok}}, nil); err != nil {
			return nil, false, err
		}
	}
	switch {
	case resp.status == http.StatusNotFound:
		return nil, false, nil
	case !ok(resp.status):
		return nil, false, c.req.statusError(path, resp)
	}
	return resp.body, true, nil
}
