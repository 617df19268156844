package eventwatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/imds"
)

func statuses(ts []transition) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.ev.ID+":"+t.status)
	}
	return strings.Join(parts, ",")
}

// Azure's documented lifecycle: nothing, Scheduled, the same ID Started with
// NotBefore cleared, nothing: a completed event whose NotBefore is remembered.
func TestTrackerAzureLifecycle(t *testing.T) {
	now := time.Date(2026, 4, 11, 22, 0, 0, 0, time.UTC)
	nb := now.Add(15 * time.Minute)
	ev := imds.Event{ID: "A", Provider: imds.Azure, Type: imds.TypeReboot, Status: imds.StatusScheduled, NotBefore: nb, Duration: -1, Approvable: true}
	var tr tracker
	if changed, ts := tr.update(imds.Snapshot{}, now); changed || len(ts) != 0 {
		t.Fatalf("empty first snapshot: %v %v", changed, ts)
	}
	changed, ts := tr.update(imds.Snapshot{Events: []imds.Event{ev}}, now)
	if !changed || statuses(ts) != "A:scheduled" || !ts[0].first {
		t.Fatalf("scheduled: %v %s", changed, statuses(ts))
	}
	if changed, ts := tr.update(imds.Snapshot{Events: []imds.Event{ev}}, now); changed || len(ts) != 0 {
		t.Fatalf("same snapshot again: %v %s", changed, statuses(ts))
	}
	started := ev
	started.Status, started.NotBefore = imds.StatusStarted, time.Time{}
	changed, ts = tr.update(imds.Snapshot{Events: []imds.Event{started}}, nb)
	if !changed || statuses(ts) != "A:started" {
		t.Fatalf("started: %v %s", changed, statuses(ts))
	}
	if got := tr.list(); len(got) != 1 || !got[0].KnownNotBefore.Equal(nb) || !got[0].StartedSeen {
		t.Fatalf("started event forgot its NotBefore: %+v", got)
	}
	changed, ts = tr.update(imds.Snapshot{}, nb.Add(time.Minute))
	if !changed || statuses(ts) != "A:completed" || len(tr.list()) != 0 {
		t.Fatalf("gone: %v %s", changed, statuses(ts))
	}
}

func TestTrackerCanceledRescheduledAndFirstSeenStarted(t *testing.T) {
	now := time.Date(2026, 1, 21, 9, 0, 0, 0, time.UTC)
	a := imds.Event{ID: "A", Provider: imds.AWS, Type: imds.TypeReboot, Status: imds.StatusScheduled, NotBefore: now.Add(time.Hour)}
	b := imds.Event{ID: "B", Provider: imds.AWS, Type: imds.TypeTerminate, Status: imds.StatusStarted}
	c := imds.Event{ID: "C", Provider: imds.AWS, Type: imds.TypeFreeze, Status: imds.StatusScheduled, NotBefore: now.Add(-time.Minute)}
	var tr tracker
	_, ts := tr.update(imds.Snapshot{Events: []imds.Event{c, b, a}}, now)
	if statuses(ts) != "A:scheduled,B:started,C:scheduled" {
		t.Fatalf("first: %s", statuses(ts))
	}
	moved := a
	moved.NotBefore = a.NotBefore.Add(time.Hour)
	_, ts = tr.update(imds.Snapshot{Events: []imds.Event{moved, b, c}}, now)
	if statuses(ts) != "A:rescheduled" {
		t.Fatalf("rescheduled: %s", statuses(ts))
	}
	// A vanishes before its NotBefore: canceled. C vanishes after its NotBefore
	// without being seen started (a short Freeze between polls): completed.
	_, ts = tr.update(imds.Snapshot{Events: []imds.Event{b}}, now)
	if statuses(ts) != "A:canceled,C:completed" {
		t.Fatalf("vanished: %s", statuses(ts))
	}
}

func TestValidateSnapshot(t *testing.T) {
	ok := imds.Snapshot{Events: []imds.Event{{ID: "x", Status: imds.StatusStarted}}}
	if err := validateSnapshot(ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []imds.Event{{Status: imds.StatusScheduled}, {ID: "x", Status: "Completed"}} {
		if err := validateSnapshot(imds.Snapshot{Events: []imds.Event{bad}}); err == nil || errorKind(err) != "invalid" {
			t.Errorf("%+v: %v", bad, err)
		}
	}
}

func TestTrackerUnknownNotices(t *testing.T) {
	var tr tracker
	a := imds.UnknownEvent{ID: "1", Provider: imds.AWS, RawType: "instance-hibernate"}
	b := imds.UnknownEvent{Provider: imds.AWS, RawType: "system-reboot", RawStatus: "paused"}
	changed, fresh := tr.updateUnknown([]imds.UnknownEvent{a, a})
	if !changed || len(fresh) != 1 {
		t.Fatalf("first: %v %v", changed, fresh)
	}
	if changed, fresh = tr.updateUnknown([]imds.UnknownEvent{a}); changed || len(fresh) != 0 {
		t.Fatalf("same again: %v %v", changed, fresh)
	}
	if changed, fresh = tr.updateUnknown([]imds.UnknownEvent{b}); !changed || len(fresh) != 1 || fresh[0] != b {
		t.Fatalf("replaced: %v %v", changed, fresh)
	}
	if got := describeUnknown(b); got != `aws notice "system-reboot" with status "paused"` {
		t.Fatalf("describe: %s", got)
	}
	if changed, _ = tr.updateUnknown(nil); !changed || len(tr.unknownList()) != 0 {
		t.Fatal("cleared")
	}
}
