package eventwatcher

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
)

// specWant is what spec.taints and spec.unschedulable should say.
type specWant struct {
	taint   *corev1.Taint // nil: no TaintKey taint
	cordon  bool
	eventID string // the event a new cordon is for
}

// specChange is what mutateSpec changed or found.
type specChange struct {
	taint, untaint     bool
	cordon, uncordon   bool
	release            bool // our cordon annotation dropped: someone else uncordoned
	foreign            bool // cordon wanted, but the node was cordoned by someone else
	waitReady          bool // uncordon due, but the node is not Ready yet
	taintValue, cordID string
}

func (s specChange) writes() bool {
	return s.taint || s.untaint || s.cordon || s.uncordon || s.release
}

// mutateSpec changes node's taints, unschedulable and cordon annotation towards
// want. Taints of others are kept in place; only the TaintKey taint changes. A
// node is uncordoned only if CordonedAnnotation says event-watcher cordoned it,
// and only once it is Ready.
func mutateSpec(node *corev1.Node, want specWant, now time.Time) specChange {
	var ch specChange
	kept := make([]corev1.Taint, 0, len(node.Spec.Taints)+1)
	found := false
	for _, t := range node.Spec.Taints {
		switch {
		case t.Key != TaintKey:
			kept = append(kept, t)
		case want.taint != nil && !found && t.Value == want.taint.Value && t.Effect == want.taint.Effect:
			kept = append(kept, t)
			found = true
		case want.taint == nil:
			ch.untaint = true
		default:
			ch.taint = true // a stale value, effect or duplicate: replaced
		}
	}
	if want.taint != nil && !found {
		t := *want.taint
		if t.Effect == corev1.TaintEffectNoExecute {
			t.TimeAdded = &metav1.Time{Time: now} // as kubectl taint does
		}
		kept = append(kept, t)
		ch.taint = true
		ch.taintValue = t.Value
	}
	if ch.taint || ch.untaint {
		node.Spec.Taints = kept
	}

	_, ours := node.Annotations[CordonedAnnotation]
	switch {
	case want.cordon && !node.Spec.Unschedulable:
		node.Spec.Unschedulable = true
		if !ours {
			if node.Annotations == nil {
				node.Annotations = map[string]string{}
			}
			node.Annotations[CordonedAnnotation] = want.eventID
		}
		ch.cordon = true
		ch.cordID = node.Annotations[CordonedAnnotation]
	case want.cordon && !ours:
		ch.foreign = true
	case !want.cordon && ours && !node.Spec.Unschedulable:
		delete(node.Annotations, CordonedAnnotation)
		ch.release = true
	case !want.cordon && ours && nodeReady(node):
		node.Spec.Unschedulable = false
		ch.cordID = node.Annotations[CordonedAnnotation]
		delete(node.Annotations, CordonedAnnotation)
		ch.uncordon = true
	case !want.cordon && ours:
		ch.waitReady = true
	}
	return ch
}

// nodeReady reports the kubelet's Ready condition.
func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// specWant derives the wanted spec from the current events.
func (c *Controller) specWant(d desired) specWant {
	w := specWant{taint: c.taint(d), cordon: d.action >= ActionCordon}
	if d.primary != nil {
		w.eventID = d.primary.ID
	}
	return w
}

// syncSpec writes taints, unschedulable and the cordon annotation with
// Get/Update, retried on conflict: spec.taints is an atomic list, so server-side
// apply would take the whole list from the kubelet and others, and the cordon
// annotation must change in the same write as spec.unschedulable so a crash
// between the two can never make event-watcher forget (or falsely claim) a cordon.
// The cached node decides whether a write is needed; the write itself works on
// a fresh copy.
func (c *Controller) syncSpec(ctx context.Context, cached *corev1.Node, want specWant) (specChange, error) {
	now := time.Now()
	if ch := mutateSpec(cached.DeepCopy(), want, now); !ch.writes() {
		return ch, nil
	}
	var done specChange
	nodes := c.client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cctx, cancel := context.WithTimeout(ctx, apiTimeout)
		defer cancel()
		node, err := nodes.Get(cctx, c.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		done = mutateSpec(node, want, now)
		if !done.writes() {
			return nil
		}
		_, err = nodes.Update(cctx, node, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
	if err != nil {
		for _, a := range done.actions() {
			c.m.action(a, resultError)
		}
		return done, fmt.Errorf("update node spec: %w", err)
	}
	for _, a := range done.actions() {
		c.m.action(a, resultSuccess)
	}
	switch {
	case done.cordon:
		c.log.Info("node cordoned", "eventID", done.cordID)
		c.event(corev1.EventTypeNormal, ReasonCordon, "Cordoned the node for scheduled event "+done.cordID)
	case done.uncordon:
		c.log.Info("node uncordoned", "eventID", done.cordID)
		c.event(corev1.EventTypeNormal, ReasonUncordon, "Uncordoned the node: scheduled event "+done.cordID+" is over and the node is Ready")
	case done.release:
		c.log.Info("node was uncordoned by someone else, forgetting the cordon")
	}
	if done.taint {
		c.log.Info("node tainted", "taint", TaintKey, "value", done.taintValue)
	}
	if done.untaint {
		c.log.Info("node taint removed", "taint", TaintKey)
	}
	return done, nil
}

// actions names the writes for actions_total.
func (s specChange) actions() []string {
	var out []string
	for _, a := range []struct {
		did  bool
		name string
	}{{s.taint, "taint"}, {s.untaint, "untaint"}, {s.cordon, "cordon"}, {s.uncordon, "uncordon"}} {
		if a.did {
			out = append(out, a.name)
		}
	}
	return out
}

// syncLabel keeps TimeLabel at the events' NotBefore and removes it when no
// event is left. When no current event has a NotBefore, the label stays as is.
func (c *Controller) syncLabel(ctx context.Context, node *corev1.Node, d desired) error {
	var want *string
	if d.primary != nil {
		v, ok := timeLabel(d)
		if !ok {
			return nil
		}
		want = &v
	}
	cur, has := node.Labels[TimeLabel]
	if (want == nil && !has) || (want != nil && has && cur == *want) {
		return nil
	}
	return c.patchMeta(ctx, map[string]*string{TimeLabel: want}, nil)
}

// patchMeta sets (or, for nil values, removes) labels and annotations with a
// JSON merge patch, which leaves every other key alone.
func (c *Controller) patchMeta(ctx context.Context, labels, annotations map[string]*string) error {
	meta := map[string]any{}
	if len(labels) > 0 {
		meta["labels"] = labels
	}
	if len(annotations) > 0 {
		meta["annotations"] = annotations
	}
	data, err := json.Marshal(map[string]any{"metadata": meta})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.cfg.NodeName, types.MergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("patch node metadata: %w", err)
	}
	return nil
}

// syncCondition writes the ScheduledEvent condition through the status
// subresource with a strategic merge patch keyed on the condition type, so the
// kubelet's conditions are never touched. It writes only on a change.
func (c *Controller) syncCondition(ctx context.Context, node *corev1.Node, status corev1.ConditionStatus, reason, message string) error {
	var cur *corev1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == ConditionType {
			cur = &node.Status.Conditions[i]
		}
	}
	if cur != nil && cur.Status == status && cur.Reason == reason && cur.Message == message {
		return nil
	}
	now := metav1.Now()
	cond := corev1.NodeCondition{Type: ConditionType, Status: status, Reason: reason, Message: message,
		LastHeartbeatTime: now, LastTransitionTime: now}
	if cur != nil && cur.Status == status {
		cond.LastTransitionTime = cur.LastTransitionTime
	}
	data, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{cond}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, c.cfg.NodeName, types.StrategicMergePatchType, data, metav1.PatchOptions{FieldManager: FieldManager}, "status"); err != nil {
		return fmt.Errorf("patch node condition: %w", err)
	}
	return nil
}
