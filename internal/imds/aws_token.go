package imds

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	awsTokenPath      = "/latest/api/token"
	awsTokenTTLHeader = "X-aws-ec2-metadata-token-ttl-seconds"
	awsTokenHeader    = "X-aws-ec2-metadata-token"
	// awsMaxTokenTTL is IMDSv2's upper bound (6 h), also the default.
	awsMaxTokenTTL = DefaultAWSTokenTTL
	// awsMaxRefreshMargin bounds how long before expiry a token is renewed.
	awsMaxRefreshMargin = time.Minute
)

var errBadToken = errors.New("empty or multi-line token")

// awsTokens caches the IMDSv2 session token and renews it before expiry.
type awsTokens struct {
	req requester
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	token   string
	renewAt time.Time
}

// get returns a valid token, fetching a new one when there is none or it is
// close to expiry.
func (t *awsTokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.now().Before(t.renewAt) {
		return t.token, nil
	}
	return t.fetchLocked(ctx)
}

// renew fetches a new token after the service refused stale (401), unless
// another caller already replaced it.
func (t *awsTokens) renew(ctx context.Context, stale string) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && t.token != stale && t.now().Before(t.renewAt) {
		return t.token, nil
	}
	return t.fetchLocked(ctx)
}

func (t *awsTokens) fetchLocked(ctx context.Context) (string, error) {
	t.token = ""
	issued := t.now()
	h := http.Header{awsTokenTTLHeader: {strconv.Itoa(int(t.ttl / time.Second))}}
	resp, err := t.req.do(ctx, http.MethodPut, awsTokenPath, awsTokenPath, h, nil)
	if err != nil {
		return "", err
	}
	if !ok(resp.status) {
		return "", t.req.statusError(awsTokenPath, resp)
	}
	tok := strings.TrimSpace(string(resp.body))
	if tok == "" || strings.ContainsAny(tok, "\r\n") {
		return "", t.req.parseError(awsTokenPath, errBadToken)
	}
	margin := min(t.ttl/10, awsMaxRefreshMargin)
	t.token = tok
	t.renewAt = issued.Add(t.ttl - margin)
	return tok, nil
}
