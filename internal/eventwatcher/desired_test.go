package eventwatcher

import (
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trellis-garden/trellis/internal/imds"
)

// unitController is a controller for tests that never reach an API server.
func unitController(t *testing.T, src imds.Client, cfg Config) *Controller {
	t.Helper()
	if cfg.NodeName == "" {
		cfg.NodeName = "unit-node"
	}
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(client, src, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDesirePicksStrongestThenEarliest(t *testing.T) {
	c := unitController(t, newFakeSource(imds.Azure), Config{})
	t0 := time.Date(2026, 4, 11, 22, 26, 58, 0, time.UTC)
	ev := func(id string, typ imds.EventType, nb time.Time) tracked {
		return tracked{Event: imds.Event{ID: id, Provider: imds.Azure, Type: typ, Status: imds.StatusScheduled, NotBefore: nb, Duration: 5 * time.Second}, KnownNotBefore: nb}
	}
	d := c.desire([]tracked{
		ev("freeze", imds.TypeFreeze, t0),
		ev("reboot-late", imds.TypeReboot, t0.Add(time.Hour)),
		ev("reboot-early", imds.TypeReboot, t0.Add(time.Minute)),
		ev("odd", "Hibernate", t0.Add(-time.Hour)),
	})
	if d.primary.ID != "reboot-early" || d.action != ActionDrain {
		t.Fatalf("primary %s action %s", d.primary.ID, d.action)
	}
	if tn := c.taint(d); tn == nil || tn.Key != TaintKey || tn.Value != "Reboot" || tn.Effect != "NoSchedule" {
		t.Fatalf("taint %+v", tn)
	}
	if v, ok := timeLabel(d); !ok || v != strconv.FormatInt(t0.Add(time.Minute).Unix(), 10) {
		t.Fatalf("label %q %v, want the primary's NotBefore", v, ok)
	}
	msg := c.conditionMessage(d, []string{"drain blocked: x"})
	for _, want := range []string{"azure Reboot event reboot-early (Scheduled, not before 2026-04-11T22:27:58Z, duration 5s)", "action drain", "drain blocked: x", "also azure Reboot event reboot-late", "freeze", "odd"} {
		if !strings.Contains(msg, want) {
			t.Errorf("condition message lacks %q: %s", want, msg)
		}
	}

	// An unknown type alone: recorded, action none, no taint.
	d = c.desire([]tracked{ev("odd", "Hibernate", time.Time{})})
	if d.action != ActionNone || c.taint(d) != nil {
		t.Fatalf("unknown type: action %s taint %+v", d.action, c.taint(d))
	}
	if _, ok := timeLabel(d); ok {
		t.Fatal("label from an event without NotBefore")
	}
	if msg := c.conditionMessage(c.desire(nil), nil); msg != "No scheduled events" {
		t.Fatalf("empty message %q", msg)
	}

	dry := unitController(t, newFakeSource(imds.Azure), Config{DryRun: true})
	if msg := dry.conditionMessage(dry.desire([]tracked{ev("r", imds.TypeReboot, t0)}), nil); !strings.Contains(msg, "action drain (dry run: not acted on)") {
		t.Fatalf("dry-run message %q", msg)
	}
}

func TestLabelSafe(t *testing.T) {
	for in, want := range map[string]string{
		"Reboot":                  "Reboot",
		"system reboot/now":       "system-reboot-now",
		"--x--":                   "x",
		"":                        "",
		"!!!":                     "unknown",
		strings.Repeat("a", 70):   strings.Repeat("a", 63),
		"TERMINATE_ON_HOST_MAINT": "TERMINATE_ON_HOST_MAINT",
	} {
		if got := labelSafe(in); got != want {
			t.Errorf("labelSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	src := newFakeSource(imds.AWS)
	client, _ := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	_, err := New(client, src, Config{TaintEffect: "Sometimes", EvictionRetry: -1, PodName: "x"}, nil, nil, "")
	for _, want := range []string{"NodeName: required", `TaintEffect: "Sometimes"`, "EvictionRetry: must not be negative", "PodNamespace and PodName"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New error %v lacks %q", err, want)
		}
	}
	c := unitController(t, src, Config{Actions: map[imds.EventType]Action{imds.TypeFreeze: ActionNone}})
	if c.cfg.Actions[imds.TypeFreeze] != ActionNone || c.cfg.Actions[imds.TypeReboot] != ActionDrain || c.cfg.TaintEffect != "NoSchedule" {
		t.Fatalf("defaults not merged: %s %s", FormatActions(c.cfg.Actions), c.cfg.TaintEffect)
	}
	if c.Ready(t.Context()) == nil {
		t.Fatal("ready before any poll")
	}
}

func TestBackoff(t *testing.T) {
	b := newBackoff(time.Second, 5*time.Second)
	var got []time.Duration
	for range 5 {
		got = append(got, b.Next())
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !slices.Equal(got, want) {
		t.Fatalf("backoff %v, want %v", got, want)
	}
	b.Reset()
	if d := b.Next(); d != time.Second {
		t.Fatalf("after reset %v", d)
	}
}
