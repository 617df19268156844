package eventwatcher

import (
	"context"
	"errors"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
)

// sync runs one reconcile pass against the cached node: spec (taint, cordon,
// uncordon), label, drain, approval, then the condition, which reports what the
// steps found. A failing step does not stop the independent ones after it; only
// the drain waits for a successful cordon. It returns when the next pass is due.
func (c *Controller) sync(ctx context.Context, node *corev1.Node, events []tracked, unknown []imds.UnknownEvent, now time.Time) (time.Duration, error) {
	d := c.desire(events)
	c.pruneNoted(d)
	next := resyncInterval
	after := func(wait time.Duration) {
		if wait > 0 && wait < next {
			next = wait
		}
	}
	var (
		errs  []error
		notes []string
	)
	if c.cfg.DryRun {
		c.noteDryRun(d)
	} else {
		ch, specErr := c.syncSpec(ctx, node, c.specWant(d))
		if specErr != nil {
			errs = append(errs, specErr)
		}
		if ch.foreign && d.primary != nil {
			notes = append(notes, "node was already unschedulable, it stays so after the event")
			c.noteOnce(d.primary.ID+"\x00foreign", corev1.EventTypeNormal, ReasonCordon,
				"The node was already unschedulable (not cordoned by event-watcher): it will not be uncordoned after scheduled event "+d.primary.ID)
		}
		if ch.waitReady {
			notes = append(notes, "waiting for the node to be Ready to uncordon it")
		}
		if err := c.syncLabel(ctx, node, d); err != nil {
			errs = append(errs, err)
		}
		if d.action == ActionDrain {
			if specErr == nil { // never evict from a node that new pods can land on
				n, wait, derr := c.syncDrain(ctx, node, d, now)
				notes = append(notes, n...)
				after(wait)
				if derr != nil {
					errs = append(errs, derr)
				}
			}
		} else if derr := c.stopDrain(ctx, node, now); derr != nil {
			errs = append(errs, derr)
		}
		n, wait := c.syncApprove(ctx, d, now)
		notes = append(notes, n...)
		after(wait)
	}
	if len(unknown) > 0 {
		names := make([]string, len(unknown))
		for i, u := range unknown {
			names[i] = describeUnknown(u)
		}
		notes = append(notes, "not understood, no action: "+strings.Join(names, ", "))
	}
	status, reason := corev1.ConditionFalse, ConditionReasonNone
	if d.primary != nil {
		status, reason = corev1.ConditionTrue, ConditionReasonScheduled
	}
	if err := c.syncCondition(ctx, node, status, reason, c.conditionMessage(d, notes)); err != nil {
		errs = append(errs, err)
	}
	return next, errors.Join(errs...)
}

// noteDryRun records, once per event, what would have been done.
func (c *Controller) noteDryRun(d desired) {
	for _, e := range d.events {
		a := c.actionFor(e.Type)
		if a == ActionNone {
			continue
		}
		key := e.ID + "\x00dryrun"
		if c.noted[key] {
			continue
		}
		c.m.action(a.String(), resultDryRun)
		switch a {
		case ActionTaint:
			c.noteOnce(key, corev1.EventTypeNormal, ReasonEventScheduled, "Dry run: would taint the node for "+describe(e))
		case ActionCordon:
			c.noteOnce(key, corev1.EventTypeNormal, ReasonCordon, "Dry run: would taint and cordon the node for "+describe(e))
		case ActionDrain:
			c.noteOnce(key, corev1.EventTypeNormal, ReasonDrain, "Dry run: would taint, cordon and drain the node for "+describe(e))
		}
	}
}

// pruneNoted forgets one-off notes of events that are over.
func (c *Controller) pruneNoted(d desired) {
	for key := range c.noted {
		id, _, _ := strings.Cut(key, "\x00")
		if !containsEvent(d.events, id) {
			delete(c.noted, key)
		}
	}
}
