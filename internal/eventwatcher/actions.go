package eventwatcher

import (
	"fmt"
	"sort"
	"strings"

	"github.com/trellis-garden/trellis/internal/imds"
)

// Action is what event-watcher does about an event type. Each action includes
// the ones before it: taint, cordon = taint + unschedulable, drain = cordon +
// evict the pods. Every action records (condition, label, Events, metrics).
type Action int

const (
	// ActionNone only records the event.
	ActionNone Action = iota
	// ActionTaint adds the TaintKey taint.
	ActionTaint
	// ActionCordon taints and marks the node unschedulable.
	ActionCordon
	// ActionDrain cordons and evicts the node's pods.
	ActionDrain
)

var actionNames = [...]string{ActionNone: "none", ActionTaint: "taint", ActionCordon: "cordon", ActionDrain: "drain"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("Action(%d)", int(a))
	}
	return actionNames[a]
}

// ParseAction parses "none", "taint", "cordon" or "drain" (case-insensitive).
func ParseAction(s string) (Action, error) {
	for a, name := range actionNames {
		if strings.EqualFold(strings.TrimSpace(s), name) {
			return Action(a), nil
		}
	}
	return 0, fmt.Errorf("action %q is not one of none, taint, cordon, drain", s)
}

// KnownTypes are the normalised event types of package imds. Any other type is
// unknown: counted, recorded, and acted on with ActionNone.
var KnownTypes = []imds.EventType{
	imds.TypeFreeze, imds.TypeReboot, imds.TypeRedeploy, imds.TypeMaintenance,
	imds.TypePreempt, imds.TypeTerminate, imds.TypeRebalance, imds.TypeLiveMigrate,
}

func isKnown(t imds.EventType) bool {
	for _, k := range KnownTypes {
		if k == t {
			return true
		}
	}
	return false
}

// DefaultActions returns the default action per event type. A Freeze and a
// live migration (GCP) pause the VM for seconds and a rebalance recommendation
// is only a risk, so they keep new pods away without moving running ones;
// everything that reboots, moves or removes the VM drains it first.
func DefaultActions() map[imds.EventType]Action {
	return map[imds.EventType]Action{
		imds.TypeFreeze:      ActionTaint,
		imds.TypeLiveMigrate: ActionTaint,
		imds.TypeRebalance:   ActionTaint,
		imds.TypeReboot:      ActionDrain,
		imds.TypeRedeploy:    ActionDrain,
		imds.TypeMaintenance: ActionDrain,
		imds.TypePreempt:     ActionDrain,
		imds.TypeTerminate:   ActionDrain,
	}
}

// ParseActions parses a comma-separated list of Type=action pairs, e.g.
// "Freeze=none,Reboot=cordon", over DefaultActions: types not named keep their
// default. Types match case-insensitively; an unknown type or action is an error.
func ParseActions(s string) (map[imds.EventType]Action, error) {
	out := DefaultActions()
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, value, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want Type=action", item)
		}
		typ, ok := knownType(strings.TrimSpace(name))
		if !ok {
			return nil, fmt.Errorf("%q: event type %q is not one of %s", item, name, knownTypeList())
		}
		a, err := ParseAction(value)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", item, err)
		}
		out[typ] = a
	}
	return out, nil
}

// FormatActions is the inverse of ParseActions, sorted by type: a flag default.
func FormatActions(m map[imds.EventType]Action) string {
	parts := make([]string, 0, len(m))
	for t, a := range m {
		parts = append(parts, string(t)+"="+a.String())
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func knownType(name string) (imds.EventType, bool) {
	for _, k := range KnownTypes {
		if strings.EqualFold(name, string(k)) {
			return k, true
		}
	}
	return "", false
}

func knownTypeList() string {
	names := make([]string, len(KnownTypes))
	for i, k := range KnownTypes {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}
