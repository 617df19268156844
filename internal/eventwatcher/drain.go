package eventwatcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// drainState is the reconcile loop's view of the drain. The annotations on the
// Node carry state, event and start across restarts; the rest is per process.
type drainState struct {
	active  bool
	state   string // DrainStateDraining or DrainStateDrained
	eventID string
	started time.Time
	// next is the earliest time of the next eviction round.
	next time.Time
	bo   backoff
	// blocked says why the last round could not evict every pod; "" when it could.
	blocked      string
	blockedSince time.Time
	overdue      bool
	// cleared: the drain annotations were removed by this process; a cached
	// Node may still show them for a moment.
	cleared bool
}

func (c *Controller) newDrain(state, eventID string, started time.Time) drainState {
	return drainState{active: true, state: state, eventID: eventID, started: started,
		bo: newBackoff(c.cfg.EvictionRetry, c.cfg.MaxRetryInterval)}
}

func hasDrainAnnotations(node *corev1.Node) bool {
	for _, k := range []string{DrainStateAnnotation, DrainEventAnnotation, DrainStartedAnnotation} {
		if _, ok := node.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// drainDeadline is when the drain should be done: DrainMargin before the
// primary event's NotBefore, or DrainTimeout after the drain started.
func (c *Controller) drainDeadline(d desired) time.Time {
	if d.primary != nil && !d.primary.KnownNotBefore.IsZero() {
		return d.primary.KnownNotBefore.Add(-c.cfg.DrainMargin)
	}
	return c.drain.started.Add(c.cfg.DrainTimeout)
}

// syncDrain advances the drain by at most one eviction round. It returns notes
// for the condition message and when the next round is due (0: none).
func (c *Controller) syncDrain(ctx context.Context, node *corev1.Node, d desired, now time.Time) ([]string, time.Duration, error) {
	if !c.drain.active {
		if err := c.startOrResumeDrain(ctx, node, d, now); err != nil {
			return nil, 0, err
		}
	}
	if c.drain.state == DrainStateDrained {
		return []string{"drained"}, 0, nil
	}
	deadline := c.drainDeadline(d)
	if now.Before(c.drain.next) {
		return c.drainNotes(deadline), c.drain.next.Sub(now), nil
	}
	r, err := c.evictRound(ctx)
	if err != nil {
		return c.drainNotes(deadline), 0, err
	}
	if r.remaining == 0 {
		if err := c.patchMeta(ctx, nil, map[string]*string{DrainStateAnnotation: ptr(DrainStateDrained)}); err != nil {
			return c.drainNotes(deadline), 0, err
		}
		took := now.Sub(c.drain.started)
		c.drain.state, c.drain.blocked = DrainStateDrained, ""
		c.m.drainDuration.WithLabelValues(resultSuccess).Observe(took.Seconds())
		c.m.action("drain", resultSuccess)
		c.log.Info("node drained", "eventID", c.drain.eventID, "duration", took.String())
		c.event(corev1.EventTypeNormal, ReasonDrain, "Drained the node for scheduled event "+c.drain.eventID+" in "+took.Round(time.Second).String())
		return []string{"drained"}, 0, nil
	}
	if now.After(deadline) && !c.drain.overdue {
		c.drain.overdue = true
		c.m.action("drain", resultTimeout)
		c.log.Warn("drain missed its deadline, still evicting", "eventID", c.drain.eventID, "deadline", deadline, "podsLeft", r.remaining)
		c.event(corev1.EventTypeWarning, ReasonDrainFailed, fmt.Sprintf("The drain did not finish by its deadline %s (%d pods left); still evicting with backoff",
			deadline.UTC().Format(time.RFC3339), r.remaining))
	}
	if len(r.problems) > 0 {
		delay := c.drain.bo.Next()
		c.drain.next = now.Add(delay)
		summary := r.problems[0]
		if n := len(r.problems) - 1; n > 0 {
			summary += " (and " + strconv.Itoa(n) + " more)"
		}
		if c.drain.blocked == "" {
			c.drain.blockedSince = now
		}
		c.drain.blocked = summary
		c.log.Warn("drain blocked, retrying", "eventID", c.drain.eventID, "podsLeft", r.remaining, "retryIn", delay.String(), "reason", summary)
		c.event(corev1.EventTypeWarning, ReasonDrainFailed, "Evicting "+strconv.Itoa(len(r.problems))+" pods failed, retrying in "+delay.String()+": "+summary)
		return c.drainNotes(deadline), delay, nil
	}
	c.drain.bo.Reset()
	c.drain.blocked = ""
	c.drain.next = now.Add(c.cfg.PodPollInterval)
	return c.drainNotes(deadline), c.cfg.PodPollInterval, nil
}

// startOrResumeDrain picks up a drain recorded on the Node for a current event
// (after a restart) or records a new one there before the first eviction.
func (c *Controller) startOrResumeDrain(ctx context.Context, node *corev1.Node, d desired, now time.Time) error {
	state := node.Annotations[DrainStateAnnotation]
	if c.drain.cleared {
		state = "" // our own removal may not be in the cache yet
	}
	resumable := false
	for _, e := range d.events {
		if e.ID == node.Annotations[DrainEventAnnotation] && c.actionFor(e.Type) == ActionDrain {
			resumable = true
		}
	}
	if resumable && (state == DrainStateDraining || state == DrainStateDrained) {
		started, err := time.Parse(time.RFC3339, node.Annotations[DrainStartedAnnotation])
		if err != nil {
			started = now
		}
		c.drain = c.newDrain(state, node.Annotations[DrainEventAnnotation], started)
		c.log.Info("drain resumed from node annotations", "eventID", c.drain.eventID, "state", state, "started", started)
		if state == DrainStateDraining {
			c.event(corev1.EventTypeNormal, ReasonDrain, "Resumed draining the node for scheduled event "+c.drain.eventID)
		}
		return nil
	}
	id := d.primary.ID
	if err := c.patchMeta(ctx, nil, map[string]*string{
		DrainStateAnnotation:   ptr(DrainStateDraining),
		DrainEventAnnotation:   ptr(id),
		DrainStartedAnnotation: ptr(now.UTC().Format(time.RFC3339)),
	}); err != nil {
		return err
	}
	c.drain = c.newDrain(DrainStateDraining, id, now)
	deadline := c.drainDeadline(d)
	c.log.Info("drain started", "eventID", id, "deadline", deadline)
	c.event(corev1.EventTypeNormal, ReasonDrain, "Draining the node for "+describe(*d.primary)+"; deadline "+deadline.UTC().Format(time.RFC3339))
	return nil
}

// stopDrain removes the drain annotations once no current event needs a drain.
func (c *Controller) stopDrain(ctx context.Context, node *corev1.Node, now time.Time) error {
	onNode := hasDrainAnnotations(node)
	if !onNode {
		c.drain.cleared = false
	}
	if !c.drain.active && (!onNode || c.drain.cleared) {
		return nil
	}
	if err := c.patchMeta(ctx, nil, map[string]*string{DrainStateAnnotation: nil, DrainEventAnnotation: nil, DrainStartedAnnotation: nil}); err != nil {
		return err
	}
	if c.drain.active && c.drain.state == DrainStateDraining {
		took := now.Sub(c.drain.started)
		c.m.drainDuration.WithLabelValues(resultCanceled).Observe(took.Seconds())
		c.m.action("drain", resultCanceled)
		c.log.Info("drain stopped, no event needs it any more", "eventID", c.drain.eventID)
		c.event(corev1.EventTypeNormal, ReasonDrain, "Stopped draining the node: no current scheduled event needs a drain")
	}
	c.drain = drainState{cleared: true}
	return nil
}

// drainNotes describe a running drain for the condition message. They change
// only when the drain's situation does, so the condition is not rewritten on
// every round.
func (c *Controller) drainNotes(deadline time.Time) []string {
	notes := []string{"draining, deadline " + deadline.UTC().Format(time.RFC3339)}
	if c.drain.overdue {
		notes = append(notes, "drain overdue")
	}
	if c.drain.blocked != "" {
		notes = append(notes, "drain blocked since "+c.drain.blockedSince.UTC().Format(time.RFC3339)+": "+c.drain.blocked)
	}
	return notes
}

// roundResult is the outcome of one eviction round.
type roundResult struct {
	// remaining counts pods that still have to go, evicted this round or not.
	remaining int
	problems  []string
}

// evictRound lists the node's pods and evicts each one that has to go and is
// not terminating yet.
func (c *Controller) evictRound(ctx context.Context) (roundResult, error) {
	var r roundResult
	pods, err := c.podsOnNode(ctx)
	if err != nil {
		return r, err
	}
	for i := range pods {
		p := &pods[i]
		if skipReason(p, c.cfg.PodNamespace, c.cfg.PodName) != "" {
			continue
		}
		r.remaining++
		if p.DeletionTimestamp != nil {
			continue // already going; wait for it
		}
		key := p.Namespace + "/" + p.Name
		err := c.evict(ctx, p)
		switch {
		case err == nil:
			c.m.action("evict", resultSuccess)
			c.log.Info("pod evicted", "pod", key)
		case apierrors.IsNotFound(err):
			r.remaining--
		case apierrors.IsConflict(err):
			// The UID precondition failed: a new pod of that name; next round.
		case apierrors.IsTooManyRequests(err):
			c.m.evictionsBlocked.Inc()
			c.m.action("evict", resultBlocked)
			r.problems = append(r.problems, "pod "+key+": "+evictMessage(err))
		default:
			c.m.action("evict", resultError)
			r.problems = append(r.problems, "pod "+key+": "+evictMessage(err))
		}
	}
	return r, nil
}

// skipReason says why a pod is left on the node, "" when it must be evicted.
func skipReason(p *corev1.Pod, ownNamespace, ownName string) string {
	if _, ok := p.Annotations[corev1.MirrorPodAnnotationKey]; ok {
		return "mirror pod" // static pods belong to the kubelet
	}
	for _, ref := range p.OwnerReferences {
		if ref.Kind == "DaemonSet" && strings.HasPrefix(ref.APIVersion, "apps/") {
			return "DaemonSet pod" // would be recreated at once, and tolerates unschedulable
		}
	}
	if p.Namespace == ownNamespace && p.Name == ownName {
		return "event-watcher itself"
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return "finished"
	}
	return ""
}

// podsOnNode lists the pods scheduled to this node (and only those).
func (c *Controller) podsOnNode(ctx context.Context) ([]corev1.Pod, error) {
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", c.cfg.NodeName).String(), Limit: 500}
	var out []corev1.Pod
	for {
		lctx, cancel := context.WithTimeout(ctx, apiTimeout)
		list, err := c.client.CoreV1().Pods("").List(lctx, opts)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list pods on node: %w", err)
		}
		out = append(out, list.Items...)
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// evict asks the API server to evict p, which honours PodDisruptionBudgets
// (429 when one forbids it). The UID precondition keeps a same-named
// replacement pod from being evicted by mistake.
func (c *Controller) evict(ctx context.Context, p *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	uid := p.UID
	return c.client.PolicyV1().Evictions(p.Namespace).Evict(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	})
}

// evictMessage is the API server's reason, with the disruption budget's own
// explanation when there is one.
func evictMessage(err error) string {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return err.Error()
	}
	s := st.Status()
	msg := s.Message
	if s.Details != nil {
		for _, cause := range s.Details.Causes {
			if cause.Type == policyv1.DisruptionBudgetCause && cause.Message != "" {
				msg += " " + cause.Message
			}
		}
	}
	return msg
}

func ptr(s string) *string { return &s }
