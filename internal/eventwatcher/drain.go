package eventwatcher

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// evictTimeout bounds one eviction call. Evictions are sent without client-side
// retries, so a 429 comes back at once; this only guards against a hung call.
const evictTimeout = 10 * time.Second

// maxRetryAfter caps a Retry-After the API server asks for.
const maxRetryAfter = 10 * time.Minute

// drainState is the reconcile loop's view of the drain. The annotations on the
// Node carry state, event and start across restarts; the rest is per process.
type drainState struct {
	active  bool
	state   string // DrainStateDraining or DrainStateDrained
	eventID string
	started time.Time
	// next is the earliest time of the next eviction round.
	next time.Time
	// round delivers the result of the running eviction round (nil: none
	// running); cancel stops it.
	round  chan roundResult
	cancel context.CancelFunc
	// rounds counts the finished rounds; remaining is the last round's count of
	// pods that still have to go.
	rounds    int
	remaining int
	// pods holds the retry schedule of pods whose eviction failed, by UID.
	pods map[types.UID]*podState
	// reported are the pods left on the node (policy, stuck terminating) that
	// were already reported, by UID; left describes those of the last round.
	reported map[types.UID]bool
	left     []string
	// blocked says why the last round could not evict every pod; "" when it could.
	blocked      string
	blockedSince time.Time
	overdue      bool
	// cleared: the drain annotations were removed by this process; a cached
	// Node may still show them for a moment.
	cleared bool
}

// podState is the retry schedule of one pod whose eviction failed.
type podState struct {
	next    time.Time // no eviction before
	bo      backoff
	problem string // the last failure, as reported
}

func (c *Controller) newDrain(state, eventID string, started time.Time) drainState {
	return drainState{active: true, state: state, eventID: eventID, started: started,
		pods: map[types.UID]*podState{}, reported: map[types.UID]bool{}}
}

// resetDrain stops a running round and replaces the drain state.
func (c *Controller) resetDrain(next drainState) {
	if c.drain.cancel != nil {
		c.drain.cancel()
	}
	c.drain = next
}

func hasDrainAnnotations(node *corev1.Node) bool {
	for _, k := range []string{DrainStateAnnotation, DrainEventAnnotation, DrainStartedAnnotation} {
		if _, ok := node.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// drainDeadline is when the drain should be done. With a NotBefore: DrainMargin
// before it, but for a short notice (a spot eviction's 30 s) at most half the
// notice before it, so a drain that starts at once is not late from its first
// second; an event already due when the drain started, or without NotBefore,
// gets DrainTimeout from the drain's start.
func (c *Controller) drainDeadline(d desired) time.Time {
	if d.primary != nil && !d.primary.KnownNotBefore.IsZero() {
		notBefore := d.primary.KnownNotBefore
		notice := notBefore.Sub(c.drain.started)
		if notice > 0 {
			return notBefore.Add(-min(c.cfg.DrainMargin, notice/2))
		}
	}
	return c.drain.started.Add(c.cfg.DrainTimeout)
}

// syncDrain advances the drain without waiting for the API server's answers to
// evictions: eviction rounds run in their own goroutine (one at a time) and
// trigger a pass when done, so neither a blocked nor a slow eviction holds up a
// cancellation or the next poll's changes. It returns notes for the condition
// message and when the next pass is due (0: none needed).
func (c *Controller) syncDrain(ctx context.Context, node *corev1.Node, d desired, now time.Time) ([]string, time.Duration, error) {
	if !c.drain.active {
		if err := c.startOrResumeDrain(ctx, node, d, now); err != nil {
			return nil, 0, err
		}
	}
	if c.drain.state == DrainStateDrained {
		return c.drainedNotes(), 0, nil
	}
	deadline := c.drainDeadline(d)
	if c.drain.round != nil {
		select {
		case r := <-c.drain.round:
			c.drain.round = nil
			c.drain.cancel()
			c.drain.cancel = nil
			drained, err := c.applyRound(ctx, r, now)
			if err != nil {
				return c.drainNotes(deadline), 0, err
			}
			if drained {
				return c.drainedNotes(), 0, nil
			}
		default:
			return c.drainNotes(deadline), 0, nil // the round triggers a pass when done
		}
	}
	if c.drain.rounds > 0 && c.drain.remaining > 0 && now.After(deadline) && !c.drain.overdue {
		c.drain.overdue = true
		c.m.action("drain", resultTimeout)
		c.log.Warn("drain missed its deadline, still evicting", "eventID", c.drain.eventID, "deadline", deadline, "podsLeft", c.drain.remaining)
		c.event(corev1.EventTypeWarning, ReasonDrainFailed, fmt.Sprintf("The drain did not finish by its deadline %s (%d pods left); still evicting with backoff",
			deadline.UTC().Format(time.RFC3339), c.drain.remaining))
	}
	if wait := c.drain.next.Sub(now); wait > 0 {
		if c.drain.rounds > 0 && c.drain.remaining > 0 && !c.drain.overdue && deadline.After(now) {
			wait = min(wait, deadline.Sub(now)+time.Millisecond) // to report a missed deadline on time
		}
		return c.drainNotes(deadline), wait, nil
	}
	c.startRound(ctx, d, now)
	return c.drainNotes(deadline), 0, nil
}

// startRound starts an eviction round in its own goroutine.
func (c *Controller) startRound(ctx context.Context, d desired, now time.Time) {
	in := roundInput{wait: map[types.UID]time.Time{}}
	if d.primary != nil {
		in.eventType = string(d.primary.Type)
		in.force = c.cfg.Force[d.primary.Type]
		in.emptyDir = c.cfg.DeleteEmptyDirData[d.primary.Type]
	}
	for uid, ps := range c.drain.pods {
		if ps.next.After(now) {
			in.wait[uid] = ps.next
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	ch := make(chan roundResult, 1)
	c.drain.round, c.drain.cancel = ch, cancel
	c.rounds.Go(func() {
		ch <- c.evictRound(rctx, in)
		c.kick()
	})
}

// applyRound takes a finished round's outcomes: it records evictions and
// failures, schedules each failed pod's retry (its own backoff, at least the
// server's Retry-After), reports pods left on the node once, and marks the node
// drained when no pod has to go any more. It reports whether the node is drained.
func (c *Controller) applyRound(ctx context.Context, r roundResult, now time.Time) (bool, error) {
	if r.err != nil {
		c.drain.next = now // the reconcile loop's backoff spaces the retry
		return false, r.err
	}
	c.drain.rounds++
	remaining, pollSoon := 0, false
	var blocked, left []string
	seen := make(map[types.UID]bool, len(r.pods))
	for _, o := range r.pods {
		seen[o.uid] = true
		switch o.kind {
		case outEvicted:
			c.m.action("evict", resultSuccess)
			c.log.Info("pod evicted", "pod", o.key)
			delete(c.drain.pods, o.uid)
			remaining++
			pollSoon = true
		case outGone:
			delete(c.drain.pods, o.uid)
		case outConflict, outTerminating:
			remaining++
			pollSoon = true
		case outWaiting:
			remaining++
			if ps := c.drain.pods[o.uid]; ps != nil && ps.problem != "" {
				blocked = append(blocked, "pod "+o.key+": "+ps.problem)
			}
		case outBlocked, outFailed:
			remaining++
			ps := c.drain.pods[o.uid]
			if ps == nil {
				ps = &podState{bo: newBackoff(c.cfg.EvictionRetry, c.cfg.MaxRetryInterval)}
				c.drain.pods[o.uid] = ps
			}
			delay := max(ps.bo.Next(), min(o.retryAfter, maxRetryAfter))
			ps.next = now.Add(delay)
			if o.kind == outBlocked {
				c.m.evictionsBlocked.Inc()
				c.m.action("evict", resultBlocked)
			} else {
				c.m.action("evict", resultError)
			}
			if o.msg != ps.problem {
				ps.problem = o.msg
				verb := "failed"
				if o.kind == outBlocked {
					verb = "is blocked"
				}
				c.log.Warn("eviction failed, retrying", "pod", o.key, "blocked", o.kind == outBlocked, "retryIn", delay.String(), "reason", o.msg)
				c.event(corev1.EventTypeWarning, ReasonDrainFailed, "Eviction of pod "+o.key+" "+verb+", retrying in "+delay.String()+": "+o.msg)
			}
			blocked = append(blocked, "pod "+o.key+": "+o.msg)
		case outStuck:
			left = append(left, "pod "+o.key+" stuck terminating")
			if !c.drain.reported[o.uid] {
				c.drain.reported[o.uid] = true
				c.m.podsLeft.WithLabelValues(leftStuckTerminating).Inc()
				c.log.Warn("pod stuck terminating, no longer waited for", "pod", o.key, "deletionTimestamp", o.since)
				c.event(corev1.EventTypeWarning, ReasonPodStuckTerminating, "Pod "+o.key+" is still terminating "+
					c.cfg.TerminatingTimeout.String()+" after its deletion time "+o.since.UTC().Format(time.RFC3339)+" (finalizers, or its kubelet is gone): the drain no longer waits for it")
			}
		case outLeftNoController, outLeftEmptyDir:
			reason, flag, what := leftNoController, "--drain.force", "has no controller (nothing would recreate it)"
			if o.kind == outLeftEmptyDir {
				reason, flag, what = leftEmptyDir, "--drain.delete-emptydir-data", "has emptyDir volumes (their data would be deleted)"
			}
			left = append(left, "pod "+o.key+" ("+strings.ReplaceAll(reason, "_", " ")+")")
			if !c.drain.reported[o.uid] {
				c.drain.reported[o.uid] = true
				c.m.podsLeft.WithLabelValues(reason).Inc()
				c.log.Warn("pod left on the node by the drain policy", "pod", o.key, "reason", reason, "eventType", r.eventType)
				c.event(corev1.EventTypeWarning, ReasonPodNotEvicted, "Pod "+o.key+" "+what+": not evicted for a "+r.eventType+
					" event and left on the node ("+flag+" does not list "+r.eventType+")")
			}
		}
	}
	for uid := range c.drain.pods {
		if !seen[uid] {
			delete(c.drain.pods, uid)
		}
	}
	sort.Strings(left)
	c.drain.left = left
	c.drain.remaining = remaining
	if remaining == 0 {
		if err := c.patchMeta(ctx, nil, map[string]*string{DrainStateAnnotation: ptr(DrainStateDrained)}); err != nil {
			c.drain.next = now
			return false, err
		}
		took := now.Sub(c.drain.started)
		c.drain.state, c.drain.blocked = DrainStateDrained, ""
		c.m.drainDuration.WithLabelValues(resultSuccess).Observe(took.Seconds())
		c.m.action("drain", resultSuccess)
		c.log.Info("node drained", "eventID", c.drain.eventID, "duration", took.String(), "podsLeft", len(left))
		msg := "Drained the node for scheduled event " + c.drain.eventID + " in " + took.Round(time.Second).String()
		if len(left) > 0 {
			msg += "; left on the node: " + summarize(left)
		}
		c.event(corev1.EventTypeNormal, ReasonDrain, msg)
		return true, nil
	}
	sort.Strings(blocked)
	if len(blocked) > 0 {
		if c.drain.blocked == "" {
			c.drain.blockedSince = now
		}
		c.drain.blocked = summarize(blocked)
	} else {
		c.drain.blocked = ""
	}
	// The next round: soon while pods are going, else when the first failed
	// pod's retry is due.
	next := now.Add(c.cfg.PodPollInterval)
	if !pollSoon {
		first := time.Time{}
		for _, ps := range c.drain.pods {
			if first.IsZero() || ps.next.Before(first) {
				first = ps.next
			}
		}
		if !first.IsZero() {
			next = first
		}
	}
	c.drain.next = next
	return false, nil
}

// summarize joins the first items and counts the rest.
func summarize(items []string) string {
	const show = 3
	if len(items) <= show {
		return strings.Join(items, ", ")
	}
	return strings.Join(items[:show], ", ") + " (and " + strconv.Itoa(len(items)-show) + " more)"
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
		c.resetDrain(c.newDrain(state, node.Annotations[DrainEventAnnotation], started))
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
	c.resetDrain(c.newDrain(DrainStateDraining, id, now))
	deadline := c.drainDeadline(d)
	c.log.Info("drain started", "eventID", id, "deadline", deadline)
	c.event(corev1.EventTypeNormal, ReasonDrain, "Draining the node for "+describe(*d.primary)+"; deadline "+deadline.UTC().Format(time.RFC3339))
	return nil
}

// stopDrain removes the drain annotations once no current event needs a drain,
// and stops a running eviction round.
func (c *Controller) stopDrain(ctx context.Context, node *corev1.Node, now time.Time) error {
	if c.drain.cancel != nil {
		c.drain.cancel() // no eviction after the event is gone
		c.drain.cancel, c.drain.round = nil, nil
	}
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
	c.resetDrain(drainState{cleared: true})
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
	if len(c.drain.left) > 0 {
		notes = append(notes, "not waited for: "+summarize(c.drain.left))
	}
	return notes
}

// drainedNotes describe a finished drain.
func (c *Controller) drainedNotes() []string {
	if len(c.drain.left) > 0 {
		return []string{"drained", "left on the node: " + summarize(c.drain.left)}
	}
	return []string{"drained"}
}

// Outcomes of one pod in an eviction round.
type outcome int

const (
	outEvicted          outcome = iota // eviction accepted
	outGone                            // no such pod any more
	outConflict                        // a new pod of that name: next round
	outBlocked                         // 429: a disruption budget forbids it now
	outFailed                          // any other error
	outWaiting                         // its retry is not due yet
	outTerminating                     // going, waited for
	outStuck                           // terminating for too long: not waited for
	outLeftNoController                // left by policy: no controller
	outLeftEmptyDir                    // left by policy: emptyDir data
)

// Reasons of drain_pods_left_total.
const (
	leftNoController     = "no_controller"
	leftEmptyDir         = "emptydir"
	leftStuckTerminating = "stuck_terminating"
)

// roundInput is what a round needs from the reconcile loop's state.
type roundInput struct {
	eventType       string
	force, emptyDir bool
	// wait holds the pods whose retry is not due yet.
	wait map[types.UID]time.Time
}

type podOutcome struct {
	uid        types.UID
	key        string
	kind       outcome
	msg        string
	retryAfter time.Duration
	since      time.Time // outStuck: the deletionTimestamp
}

// roundResult is the outcome of one eviction round.
type roundResult struct {
	err       error
	eventType string
	pods      []podOutcome
}

// evictRound lists the node's pods, classifies each, and evicts those that have
// to go and are due, at most MaxConcurrentEvictions at a time. It runs outside
// the reconcile loop and touches none of its state.
func (c *Controller) evictRound(ctx context.Context, in roundInput) roundResult {
	r := roundResult{eventType: in.eventType}
	pods, err := c.podsOnNode(ctx)
	if err != nil {
		r.err = err
		return r
	}
	now := time.Now()
	var todo []int
	for i := range pods {
		p := &pods[i]
		if skipReason(p, c.cfg.PodNamespace, c.cfg.PodName) != "" {
			continue
		}
		o := podOutcome{uid: p.UID, key: p.Namespace + "/" + p.Name}
		switch {
		case p.DeletionTimestamp != nil:
			o.kind = outTerminating
			if now.After(p.DeletionTimestamp.Add(c.cfg.TerminatingTimeout)) {
				o.kind, o.since = outStuck, p.DeletionTimestamp.Time
			}
		case !in.force && metav1.GetControllerOf(p) == nil:
			o.kind = outLeftNoController
		case !in.emptyDir && hasEmptyDir(p):
			o.kind = outLeftEmptyDir
		case now.Before(in.wait[p.UID]):
			o.kind = outWaiting
		default:
			todo = append(todo, len(r.pods))
		}
		r.pods = append(r.pods, o)
	}
	if len(todo) == 0 {
		return r
	}
	// The pods' index in r.pods -> the pod itself.
	byUID := make(map[types.UID]*corev1.Pod, len(pods))
	for i := range pods {
		byUID[pods[i].UID] = &pods[i]
	}
	budgets := &budgetCache{c: c, byNS: map[string][]policyv1.PodDisruptionBudget{}}
	sem := make(chan struct{}, max(c.cfg.MaxConcurrentEvictions, 1))
	var wg sync.WaitGroup
	for _, i := range todo {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			o := &r.pods[i]
			p := byUID[o.uid]
			err := c.evict(ctx, p)
			switch {
			case err == nil:
				o.kind = outEvicted
			case apierrors.IsNotFound(err):
				o.kind = outGone
			case apierrors.IsConflict(err):
				o.kind = outConflict
			case apierrors.IsTooManyRequests(err):
				o.kind, o.msg = outBlocked, budgets.blockedBy(ctx, p)+evictMessage(err)
				if s, ok := apierrors.SuggestsClientDelay(err); ok && s > 0 {
					o.retryAfter = time.Duration(s) * time.Second
				}
			default:
				o.kind, o.msg = outFailed, evictMessage(err)
			}
		})
	}
	wg.Wait()
	return r
}

// hasEmptyDir reports an emptyDir volume, whose data an eviction deletes.
func hasEmptyDir(p *corev1.Pod) bool {
	for _, v := range p.Spec.Volumes {
		if v.EmptyDir != nil {
			return true
		}
	}
	return false
}

// budgetCache names the disruption budgets that cover a pod, listing each
// namespace's budgets once per round.
type budgetCache struct {
	c    *Controller
	mu   sync.Mutex
	byNS map[string][]policyv1.PodDisruptionBudget
}

// blockedBy returns "blocked by PodDisruptionBudget ns/a, ns/b: " for the
// budgets that select p, or "" when they cannot be listed (the eviction error
// is reported on its own then).
func (b *budgetCache) blockedBy(ctx context.Context, p *corev1.Pod) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	list, ok := b.byNS[p.Namespace]
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, evictTimeout)
		l, err := b.c.client.PolicyV1().PodDisruptionBudgets(p.Namespace).List(lctx, metav1.ListOptions{})
		cancel()
		if err != nil {
			return ""
		}
		list = l.Items
		b.byNS[p.Namespace] = list
	}
	var names []string
	for _, pdb := range list {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil {
			continue // a nil selector selects nothing, an empty one everything
		}
		if sel.Matches(labels.Set(p.Labels)) {
			names = append(names, pdb.Namespace+"/"+pdb.Name)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return "blocked by PodDisruptionBudget " + strings.Join(names, ", ") + ": "
}

// skipReason says why a pod is never a drain's business, "" when it is.
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
// (429 when one forbids it). It is sent without client-go's retries, which would
// sleep through Retry-After inside the call: the answer comes back at once and
// the controller schedules the retry itself. The UID precondition keeps a
// same-named replacement pod from being evicted by mistake.
func (c *Controller) evict(ctx context.Context, p *corev1.Pod) error {
	ctx, cancel := context.WithTimeout(ctx, evictTimeout)
	defer cancel()
	uid := p.UID
	eviction := &policyv1.Eviction{
		TypeMeta:      metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"},
		ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}},
	}
	return c.client.PolicyV1().RESTClient().Post().AbsPath("/api/v1").Namespace(p.Namespace).Resource("pods").Name(p.Name).
		SubResource("eviction").MaxRetries(0).Body(eviction).Do(ctx).Error()
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
