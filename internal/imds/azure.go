package imds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// DefaultAzureEndpoint is the Azure Instance Metadata Service.
	DefaultAzureEndpoint = "http://169.254.169.254"
	// DefaultAzureAPIVersion is the Scheduled Events API version the parser
	// is written for.
	DefaultAzureAPIVersion = "2020-07-01"

	azurePath = "/metadata/scheduledevents"
	// azureMinInterval keeps the client under Azure's limit of 5 requests/s per
	// VM (429 above), counting polls and approvals together.
	azureMinInterval = 200 * time.Millisecond
	azureTimeout     = 5 * time.Second
)

var errNoResources = errors.New("imds: AzureOptions.Resources is required (this VM's names in event Resources)")

// AzureOptions configures an AzureClient.
type AzureOptions struct {
	// Endpoint is the metadata service base URL; default DefaultAzureEndpoint.
	Endpoint string
	// HTTPClient is used for all requests; default a direct (no proxy) client
	// with a 5 s timeout. It must not add X-Forwarded-For: Azure rejects it.
	HTTPClient *http.Client
	// Resources are this VM's names as they appear in an event's Resources
	// (AzureResourceNames derives them from a Node's providerID). Events are
	// broadcast to the whole availability set / scale set; only events that
	// list one of these names concern this VM. Required.
	Resources []string
	// APIVersion is sent as api-version; default DefaultAzureAPIVersion.
	APIVersion string
}

// AzureClient polls Azure Scheduled Events. Requests (polls and approvals)
// are serialised, with at least 200 ms from the end of one to the start of
// the next, so the client never exceeds Azure's 5 requests/s whatever the
// network delay. It is safe for concurrent use.
type AzureClient struct {
	req       requester
	query     string
	resources []string
	gate      *gate

	// approvable holds the ids of this VM's actionable events in the last
	// successful Poll; guarded by gate.
	approvable map[string]bool
}

var _ Client = (*AzureClient)(nil)

// NewAzure returns a client for Azure Scheduled Events.
func NewAzure(o AzureOptions) (*AzureClient, error) {
	base, err := normaliseEndpoint(o.Endpoint, DefaultAzureEndpoint)
	if err != nil {
		return nil, fmt.Errorf("imds: azure: %w", err)
	}
	var res []string
	for _, r := range o.Resources {
		if r = strings.TrimSpace(r); r != "" {
			res = append(res, r)
		}
	}
	if len(res) == 0 {
		return nil, errNoResources
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient(azureTimeout)
	}
	v := o.APIVersion
	if v == "" {
		v = DefaultAzureAPIVersion
	}
	return &AzureClient{
		req:       requester{provider: Azure, base: base, client: hc},
		query:     "?api-version=" + url.QueryEscape(v),
		resources: res,
		gate:      newGate(azureMinInterval),
	}, nil
}

// Provider returns Azure.
func (c *AzureClient) Provider() string { return Azure }

// Poll fetches the Scheduled Events document. Snapshot.Version is the
// DocumentIncarnation; Events holds this VM's events of known type and status;
// Unknown holds this VM's events the client does not understand.
func (c *AzureClient) Poll(ctx context.Context) (Snapshot, error) {
	if err := c.acquire(ctx); err != nil {
		return Snapshot{}, err
	}
	defer c.gate.release() // held until the approvable ids are updated
	resp, err := c.send(ctx, http.MethodGet, nil)
	if err != nil {
		return Snapshot{}, err
	}
	if !ok(resp.status) {
		return Snapshot{}, c.req.statusError(azurePath, resp)
	}
	snap, err := parseAzureDocument(resp.body, c.resources)
	if err != nil {
		return Snapshot{}, c.req.parseError(azurePath, err)
	}
	c.approvable = make(map[string]bool, len(snap.Events))
	for _, e := range snap.Events {
		c.approvable[e.ID] = true
	}
	return snap, nil
}

// azureStartRequests is the approval body.
type azureStartRequests struct {
	StartRequests []azureStartRequest `json:"StartRequests"`
}

type azureStartRequest struct {
	EventID string `json:"EventId"`
}

// Approve starts the event now (POST StartRequests). It refuses, with
// ErrEventNotListed, any id that the last successful Poll did not return in
// Snapshot.Events: Azure starts an approved event for ALL VMs in its
// Resources, so this VM must only ever approve events that concern it, and
// never one it does not understand.
func (c *AzureClient) Approve(ctx context.Context, eventID string) error {
	body, err := json.Marshal(azureStartRequests{StartRequests: []azureStartRequest{{EventID: eventID}}})
	if err != nil {
		return fmt.Errorf("azure approve %q: %w", eventID, err)
	}
	if err := c.acquire(ctx); err != nil {
		return err
	}
	if !c.approvable[eventID] {
		c.gate.releaseUnused()
		return fmt.Errorf("azure approve %q: %w", eventID, ErrEventNotListed)
	}
	defer c.gate.release()
	resp, err := c.send(ctx, http.MethodPost, body)
	if err != nil {
		return err
	}
	if !ok(resp.status) {
		return c.req.statusError(azurePath, resp)
	}
	return nil
}

// acquire waits for the turn to send a request (see gate); gate.release
// must follow.
func (c *AzureClient) acquire(ctx context.Context) error {
	if err := c.gate.acquire(ctx); err != nil {
		return &RequestError{Provider: Azure, Path: azurePath, Err: err}
	}
	return nil
}

// send performs one request to the Scheduled Events URL; the caller holds
// the gate.
func (c *AzureClient) send(ctx context.Context, method string, body []byte) (response, error) {
	h := http.Header{"Metadata": {"true"}}
	if body != nil {
		h.Set("Content-Type", "application/json")
	}
	return c.req.do(ctx, method, azurePath+c.query, azurePath, h, body)
}
