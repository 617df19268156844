package eventwatcher

import (
	"fmt"
	"sort"
	"strings"

	"github.com/trellis-garden/trellis/internal/imds"
)

// ParseTypeSet parses a list of event types (case-insensitive), or "all" for
// every known type, into a set. Empty items are ignored; an unknown type is an
// error.
func ParseTypeSet(items []string) (map[imds.EventType]bool, error) {
	out := map[imds.EventType]bool{}
	for _, item := range items {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case strings.EqualFold(item, "all"):
			for _, k := range KnownTypes {
				out[k] = true
			}
		default:
			typ, ok := knownType(item)
			if !ok {
				return nil, fmt.Errorf("event type %q is not one of %s, or all", item, knownTypeList())
			}
			out[typ] = true
		}
	}
	return out, nil
}

// FormatTypeSet lists a set's types, sorted; "none" for an empty set.
func FormatTypeSet(set map[imds.EventType]bool) string {
	var names []string
	for t, ok := range set {
		if ok {
			names = append(names, string(t))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}
