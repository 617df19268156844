package eventwatcher

import (
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/imds"
)

func TestParseActions(t *testing.T) {
	got, err := ParseActions(" freeze=none , REBOOT=Cordon,Rebalance=drain,")
	if err != nil {
		t.Fatal(err)
	}
	want := DefaultActions()
	want[imds.TypeFreeze], want[imds.TypeReboot], want[imds.TypeRebalance] = ActionNone, ActionCordon, ActionDrain
	if FormatActions(got) != FormatActions(want) {
		t.Fatalf("ParseActions = %s, want %s", FormatActions(got), FormatActions(want))
	}
	if def, err := ParseActions(""); err != nil || FormatActions(def) != FormatActions(DefaultActions()) {
		t.Fatalf("empty list: %v %v", def, err)
	}
	// FormatActions output parses back to the same map.
	if back, err := ParseActions(FormatActions(got)); err != nil || FormatActions(back) != FormatActions(got) {
		t.Fatalf("round trip: %v %v", back, err)
	}
	for _, bad := range []struct{ in, want string }{
		{"Freeze", "want Type=action"},
		{"Hibernate=drain", `event type "Hibernate" is not one of`},
		{"Freeze=evict", `action "evict" is not one of none, taint, cordon, drain`},
	} {
		if _, err := ParseActions(bad.in); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ParseActions(%q) = %v, want error containing %q", bad.in, err, bad.want)
		}
	}
}

func TestDefaultActionsCoverEveryKnownType(t *testing.T) {
	def := DefaultActions()
	for _, k := range KnownTypes {
		if _, ok := def[k]; !ok {
			t.Errorf("no default action for %s", k)
		}
	}
	if len(def) != len(KnownTypes) {
		t.Errorf("defaults for %d types, %d known", len(def), len(KnownTypes))
	}
	if def[imds.TypeFreeze] != ActionTaint || def[imds.TypeReboot] != ActionDrain || def[imds.TypeRebalance] != ActionTaint {
		t.Errorf("defaults changed: %s", FormatActions(def))
	}
}

func TestActionString(t *testing.T) {
	for a := ActionNone; a <= ActionDrain; a++ {
		back, err := ParseAction(a.String())
		if err != nil || back != a {
			t.Errorf("%d: %q -> %v %v", a, a.String(), back, err)
		}
	}
	if Action(9).String() != "Action(9)" {
		t.Errorf("out of range: %s", Action(9))
	}
}
