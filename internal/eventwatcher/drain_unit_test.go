package eventwatcher

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/imds"
)

// The drain deadline: DrainMargin before NotBefore, at most half of a short
// notice before it, and DrainTimeout from the start for an event that was due
// already or has no date.
func TestDrainDeadline(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	c := &Controller{cfg: Config{DrainMargin: 30 * time.Second, DrainTimeout: 5 * time.Minute}}
	c.drain.started = start
	for _, tc := range []struct {
		name      string
		notBefore time.Time
		want      time.Time
	}{
		{"azure reboot, 15 min notice", start.Add(15 * time.Minute), start.Add(15*time.Minute - 30*time.Second)},
		{"aws spot, 2 min notice", start.Add(2 * time.Minute), start.Add(90 * time.Second)},
		{"azure spot, 30 s notice", start.Add(30 * time.Second), start.Add(15 * time.Second)},
		{"10 s notice", start.Add(10 * time.Second), start.Add(5 * time.Second)},
		{"exactly twice the margin", start.Add(time.Minute), start.Add(30 * time.Second)},
		{"due already", start.Add(-time.Second), start.Add(5 * time.Minute)},
		{"no date", time.Time{}, start.Add(5 * time.Minute)},
	} {
		d := desired{primary: &tracked{Event: imds.Event{ID: "e"}, KnownNotBefore: tc.notBefore}}
		if got := c.drainDeadline(d); !got.Equal(tc.want) {
			t.Errorf("%s: deadline %s, want %s", tc.name, got.Sub(start), tc.want.Sub(start))
		}
	}
}

func TestParseTypeSet(t *testing.T) {
	got, err := ParseTypeSet([]string{" terminate", "PREEMPT", ""})
	if err != nil || FormatTypeSet(got) != "Preempt,Terminate" {
		t.Fatalf("ParseTypeSet = %v, %v", got, err)
	}
	all, err := ParseTypeSet([]string{"all"})
	if err != nil || len(all) != len(KnownTypes) {
		t.Fatalf("all = %v, %v", all, err)
	}
	if none, err := ParseTypeSet(nil); err != nil || FormatTypeSet(none) != "none" {
		t.Fatalf("empty = %v, %v", none, err)
	}
	if _, err := ParseTypeSet([]string{"Reboot", "Hibernate"}); err == nil || !strings.Contains(err.Error(), `event type "Hibernate" is not one of`) {
		t.Fatalf("unknown type: %v", err)
	}
}

// The drain policy flags reach the Config; bad values are clear errors.
func TestOptionsDrainPolicy(t *testing.T) {
	o := NewOptions()
	fs := newFlagSet(o)
	if err := fs.Parse([]string{"--drain.force=Terminate,Preempt", "--drain.delete-emptydir-data=all", "--drain.terminating-timeout=45s", "--drain.max-concurrent-evictions=3"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	c := o.Config
	if FormatTypeSet(c.Force) != "Preempt,Terminate" || len(c.DeleteEmptyDirData) != len(KnownTypes) || c.TerminatingTimeout != 45*time.Second || c.MaxConcurrentEvictions != 3 {
		t.Fatalf("config: force=%v emptyDir=%v timeout=%s concurrency=%d", c.Force, c.DeleteEmptyDirData, c.TerminatingTimeout, c.MaxConcurrentEvictions)
	}
	bad := NewOptions()
	if err := newFlagSet(bad).Parse([]string{"--drain.force=Reboot,Hibernate"}); err != nil {
		t.Fatal(err)
	}
	if err := bad.Complete(); err == nil || !strings.Contains(err.Error(), "--drain.force") {
		t.Fatalf("unknown type in --drain.force: %v", err)
	}
	zero := NewOptions()
	if err := newFlagSet(zero).Parse([]string{"--drain.max-concurrent-evictions=0", "--drain.terminating-timeout=0s"}); err != nil {
		t.Fatal(err)
	}
	_ = zero.Complete()
	err := zero.Validate()
	if err == nil || !strings.Contains(err.Error(), "--drain.max-concurrent-evictions: must be positive") || !strings.Contains(err.Error(), "--drain.terminating-timeout: must be positive") {
		t.Fatalf("Validate: %v", err)
	}
}

// An event approved by this process that vanishes before a poll saw it Started
// is completed; one that was not approved is canceled.
func TestTrackerApprovedThenGone(t *testing.T) {
	now := time.Date(2026, 4, 11, 22, 0, 0, 0, time.UTC)
	ev := imds.Event{ID: "A", Provider: imds.Azure, Type: imds.TypeReboot, Status: imds.StatusScheduled, NotBefore: now.Add(15 * time.Minute), Duration: -1, Approvable: true}
	other := ev
	other.ID = "B"
	var tr tracker
	tr.update(imds.Snapshot{Events: []imds.Event{ev, other}}, now)
	tr.markApproved("A")
	tr.markApproved("not-there") // no-op
	_, ts := tr.update(imds.Snapshot{}, now.Add(time.Second))
	if got := statuses(ts); got != "A:completed,B:canceled" {
		t.Fatalf("vanished = %s", got)
	}
}

// newFlagSet registers o's flags on a fresh flag set.
func newFlagSet(o *Options) *pflag.FlagSet {
	fs := pflag.NewFlagSet(Name, pflag.ContinueOnError)
	o.AddFlags(fs)
	return fs
}
