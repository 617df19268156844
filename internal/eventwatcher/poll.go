package eventwatcher

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
)

// pollLoop polls the metadata service until ctx ends. Polls start at least
// PollInterval apart; a client whose Poll blocks (a long poll) is polled again
// as soon as it returns, and an imds.LongPoller always at once. A failed poll
// keeps the last known events and is retried with backoff.
func (c *Controller) pollLoop(ctx context.Context) {
	bo := newBackoff(c.cfg.PollInterval, c.cfg.MaxRetryInterval)
	failures := 0
	for {
		start := time.Now()
		snap, err := c.source.Poll(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = validateSnapshot(snap)
		}
		wait := c.cfg.PollInterval - time.Since(start)
		if lp, ok := c.source.(imds.LongPoller); ok && lp.LongPolls() {
			wait = 0 // Poll waits for a change and spaces its own requests
		}
		if err != nil {
			failures++
			kind := errorKind(err)
			c.m.metadataErrors.WithLabelValues(kind).Inc()
			wait = bo.Next()
			c.log.Warn("metadata poll failed, keeping the last known events", "kind", kind, "failures", failures, "retryIn", wait.String(), "err", err)
		} else {
			if failures > 0 {
				c.log.Info("metadata poll succeeded again", "failures", failures)
			}
			failures = 0
			bo.Reset()
			c.observe(snap, time.Now())
			c.partErrors(snap.Errors)
		}
		if !sleep(ctx, wait) {
			return
		}
	}
}

// partErrors counts and logs the failures of parts of a source that did not
// stop its snapshot (a GCP item whose read failed keeps its last known events
// while the other items are still watched).
func (c *Controller) partErrors(errs []error) {
	for _, err := range errs {
		kind := errorKind(err)
		c.m.metadataErrors.WithLabelValues(kind).Inc()
		c.log.Warn("metadata read failed, keeping its last known events", "kind", kind, "err", err)
	}
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// observe takes a valid snapshot: it updates the tracked events, records
// transitions as Events and metrics, and triggers a reconcile pass on change.
func (c *Controller) observe(snap imds.Snapshot, now time.Time) {
	c.m.lastPoll.Set(float64(now.UnixNano()) / 1e9)
	c.mu.Lock()
	changed, transitions := c.tracker.update(snap, now)
	unknownChanged, fresh := c.tracker.updateUnknown(snap.Unknown)
	first := !c.haveSnapshot
	c.haveSnapshot = true
	current := c.tracker.list()
	c.mu.Unlock()
	c.polled.Store(true)

	c.m.events.Reset()
	for _, e := range current {
		c.m.events.WithLabelValues(e.Provider, string(e.Type), strings.ToLower(string(e.Status))).Inc()
	}
	for _, t := range transitions {
		c.recordTransition(t)
	}
	for _, u := range fresh {
		c.m.unknownTypes.WithLabelValues(u.Provider, u.RawType).Inc()
		c.log.Warn("metadata notice not understood, no action taken", "eventID", u.ID, "rawType", u.RawType, "rawStatus", u.RawStatus)
		c.event(corev1.EventTypeWarning, ReasonEventNotUnderstood, "The metadata service announced "+describeUnknown(u)+" that event-watcher does not understand; no action taken")
	}
	if changed || unknownChanged || first {
		c.kick()
	}
}

// recordTransition logs, counts and records one event's change on the Node.
func (c *Controller) recordTransition(t transition) {
	e := t.ev
	if t.status != statusRescheduled {
		c.m.eventTransitions.WithLabelValues(e.Provider, string(e.Type), t.status).Inc()
	}
	if t.first && !isKnown(e.Type) {
		c.m.unknownTypes.WithLabelValues(e.Provider, string(e.Type)).Inc()
		c.log.Warn("unknown event type, recording only", "eventID", e.ID, "type", string(e.Type), "rawType", e.RawType)
	}
	c.log.Info("scheduled event changed", "eventID", e.ID, "type", string(e.Type), "status", t.status,
		"notBefore", e.KnownNotBefore, "description", e.Description)
	desc := describe(e)
	if e.Description != "" {
		desc += ": " + e.Description
	}
	switch t.status {
	case statusScheduled:
		c.event(corev1.EventTypeWarning, ReasonEventScheduled, "Announced: "+desc)
	case statusRescheduled:
		c.event(corev1.EventTypeWarning, ReasonEventScheduled, "Rescheduled: "+desc)
	case statusStarted:
		c.event(corev1.EventTypeWarning, ReasonEventStarted, "Started: "+desc)
	case statusCanceled:
		c.event(corev1.EventTypeNormal, ReasonEventCanceled, "Canceled: "+desc+" (withdrawn before its start)")
	case statusCompleted:
		c.event(corev1.EventTypeNormal, ReasonEventCompleted, "Completed: "+desc)
	}
}

// errorKind classifies a metadata error for metadata_errors_total.
func errorKind(err error) string {
	var (
		re *imds.RequestError
		pe *imds.ParseError
	)
	switch {
	case errors.As(err, &pe):
		return "parse"
	case errors.Is(err, errInvalidSnapshot):
		return "invalid"
	case errors.As(err, &re):
		switch {
		case re.Status >= 500:
			return "http_5xx"
		case re.Status >= 400:
			return "http_4xx"
		case re.Status != 0:
			return "other"
		case isTimeout(re.Err):
			return "timeout"
		}
		return "transport"
	case isTimeout(err):
		return "timeout"
	}
	return "other"
}

func isTimeout(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
