package eventwatcher

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/trellis-garden/trellis/internal/imds"
)

// desired is what the current events ask of the Node.
type desired struct {
	// events are all current events, primary first.
	events []tracked
	// primary is the event that decides the action, taint value and label: the one
	// with the strongest action, then the earliest start, then the smallest ID.
	primary *tracked
	// action is the primary's (strongest) action.
	action Action
}

// actionFor is the configured action of an event type; unknown types get none.
func (c *Controller) actionFor(t imds.EventType) Action {
	if !isKnown(t) {
		return ActionNone
	}
	return c.cfg.Actions[t]
}

// desire orders the current events and picks the primary one.
func (c *Controller) desire(events []tracked) desired {
	evs := append([]tracked(nil), events...)
	sort.SliceStable(evs, func(i, j int) bool {
		ai, aj := c.actionFor(evs[i].Type), c.actionFor(evs[j].Type)
		if ai != aj {
			return ai > aj
		}
		// Zero (started, or no date given) sorts first: it is the most urgent.
		ti, tj := evs[i].KnownNotBefore, evs[j].KnownNotBefore
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return evs[i].ID < evs[j].ID
	})
	d := desired{events: evs}
	if len(evs) > 0 {
		d.primary = &d.events[0]
		d.action = c.actionFor(d.primary.Type)
	}
	return d
}

// taint is the TaintKey taint the node should carry, nil for none.
func (c *Controller) taint(d desired) *corev1.Taint {
	if d.primary == nil || d.action < ActionTaint {
		return nil
	}
	return &corev1.Taint{Key: TaintKey, Value: labelSafe(string(d.primary.Type)), Effect: c.cfg.TaintEffect}
}

// timeLabel is the TimeLabel value: the primary's NotBefore, else the earliest
// known NotBefore. ok is false when no event has one (keep what is there).
func timeLabel(d desired) (value string, ok bool) {
	var t time.Time
	if d.primary != nil {
		t = d.primary.KnownNotBefore
	}
	if t.IsZero() {
		for _, e := range d.events {
			if !e.KnownNotBefore.IsZero() && (t.IsZero() || e.KnownNotBefore.Before(t)) {
				t = e.KnownNotBefore
			}
		}
	}
	if t.IsZero() {
		return "", false
	}
	return strconv.FormatInt(t.Unix(), 10), true
}

// labelSafe makes s a valid label (and taint) value: invalid characters become
// '-', the length is capped at 63, and the ends are alphanumeric.
func labelSafe(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			b[i] = '-'
		}
	}
	if len(b) > validation.LabelValueMaxLength {
		b = b[:validation.LabelValueMaxLength]
	}
	out := strings.Trim(string(b), "-_.")
	if out == "" {
		return "unknown"
	}
	return out
}

// describe names an event for messages: provider, type, ID, status, start, duration.
func describe(e tracked) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s event %s (", e.Provider, e.Type, e.ID)
	if e.RawType != "" && e.RawType != string(e.Type) {
		fmt.Fprintf(&b, "%s, ", e.RawType)
	}
	b.WriteString(string(e.Status))
	if !e.KnownNotBefore.IsZero() {
		b.WriteString(", not before " + e.KnownNotBefore.UTC().Format(time.RFC3339))
	}
	if e.Duration >= 0 {
		b.WriteString(", duration " + e.Duration.String())
	} else {
		b.WriteString(", duration unknown")
	}
	b.WriteString(")")
	return b.String()
}

// conditionMessage describes the current events and, in notes, what is being
// done about them (e.g. why a drain is blocked).
func (c *Controller) conditionMessage(d desired, notes []string) string {
	if d.primary == nil {
		msg := "No scheduled events"
		if len(notes) > 0 {
			msg += "; " + strings.Join(notes, "; ")
		}
		return msg
	}
	var b strings.Builder
	b.WriteString(describe(*d.primary))
	b.WriteString("; action " + d.action.String())
	if c.cfg.DryRun && d.action > ActionNone {
		b.WriteString(" (dry run: not acted on)")
	}
	for _, n := range notes {
		b.WriteString("; " + n)
	}
	if len(d.events) > 1 {
		others := make([]string, 0, len(d.events)-1)
		for _, e := range d.events[1:] {
			others = append(others, describe(e))
		}
		b.WriteString("; also " + strings.Join(others, ", "))
	}
	// The API server caps messages at 32 KiB; stay far below.
	const maxLen = 1024
	msg := b.String()
	if len(msg) > maxLen {
		msg = strings.ToValidUTF8(msg[:maxLen-3], "") + "..."
	}
	return msg
}
