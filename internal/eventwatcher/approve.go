package eventwatcher

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
)

// syncApprove asks the cloud to start each approvable, still scheduled event
// that needed a drain, once that drain has finished. It returns notes for the
// condition and when to retry a failed approval (0: nothing to retry).
func (c *Controller) syncApprove(ctx context.Context, d desired, now time.Time) ([]string, time.Duration) {
	for id := range c.approved {
		if !containsEvent(d.events, id) {
			delete(c.approved, id)
		}
	}
	if !c.cfg.Approve || !c.drain.active || c.drain.state != DrainStateDrained {
		return nil, 0
	}
	var notes []string
	for _, e := range d.events {
		if ok, done := c.approved[e.ID]; done {
			if ok {
				notes = append(notes, "approved "+e.ID)
			}
			continue
		}
		if e.Status != imds.StatusScheduled || !e.Approvable || c.actionFor(e.Type) != ActionDrain {
			continue
		}
		if now.Before(c.approveNext) {
			return notes, c.approveNext.Sub(now)
		}
		actx, cancel := context.WithTimeout(ctx, apiTimeout)
		err := c.source.Approve(actx, e.ID)
		cancel()
		switch {
		case err == nil:
			c.approved[e.ID] = true
			c.mu.Lock()
			c.tracker.markApproved(e.ID)
			c.mu.Unlock()
			c.approveBackoff.Reset()
			c.m.action("approve", resultSuccess)
			c.log.Info("event approved", "eventID", e.ID)
			c.event(corev1.EventTypeNormal, ReasonApproved, "Approved "+describe(e)+" to start now: the node is drained")
			notes = append(notes, "approved "+e.ID)
		case errors.Is(err, imds.ErrNotSupported):
			c.approved[e.ID] = false // nothing to retry
			c.m.action("approve", resultUnsupported)
		default:
			if ctx.Err() != nil {
				return notes, 0
			}
			delay := c.approveBackoff.Next()
			c.approveNext = now.Add(delay)
			c.m.action("approve", resultError)
			if !errors.Is(err, imds.ErrEventNotListed) { // a race with the client's own poll, not a failure
				c.m.metadataErrors.WithLabelValues(errorKind(err)).Inc()
			}
			c.log.Warn("approving the event failed, retrying", "eventID", e.ID, "retryIn", delay.String(), "err", err)
			c.event(corev1.EventTypeWarning, ReasonApproveFailed, "Approving event "+e.ID+" failed, retrying in "+delay.String()+": "+err.Error())
			return notes, delay
		}
	}
	return notes, 0
}

func containsEvent(events []tracked, id string) bool {
	for _, e := range events {
		if e.ID == id {
			return true
		}
	}
	return false
}
