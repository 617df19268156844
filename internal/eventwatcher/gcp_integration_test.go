package eventwatcher

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	"github.com/trellis-garden/trellis/internal/imds"
	"github.com/trellis-garden/trellis/internal/imds/imdsfake"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// These tests run the controller with the real GCP metadata client against the
// GCP fake (which behaves as the metadata server documents: Metadata-Flavor,
// ETag, wait_for_change, last_etag, timeout_sec) and the real kube-apiserver.

// startGCP starts a GCP fake and a controller polling it with the client's
// defaults (60 s long polls), and waits until it is ready and holds a long
// poll on every item.
func (cl *cluster) startGCP(cfg Config) (*imdsfake.GCP, *running) {
	cl.t.Helper()
	f := imdsfake.NewGCP()
	f.SetUpcomingMaintenanceBody("{ }")
	srv := f.Start()
	cl.t.Cleanup(srv.Close)
	src, err := imds.NewGCP(imds.GCPOptions{Endpoint: srv.URL, RetryInterval: 20 * time.Millisecond, MaxRetryInterval: 200 * time.Millisecond})
	if err != nil {
		cl.t.Fatal(err)
	}
	r := cl.start(src, cfg)
	testkit.Eventually(cl.t, "ready", func() bool { return r.c.Ready(cl.t.Context()) == nil })
	testkit.Eventually(cl.t, "long polls on all items", func() bool { return gcpHoldsAll(f) })
	return f, r
}

func gcpHoldsAll(f *imdsfake.GCP) bool {
	return f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1 && f.WaitingOn(imdsfake.GCPPreemptedPath) == 1 &&
		f.WaitingOn(imdsfake.GCPUpcomingMaintenancePath) == 1
}

// gcpRequests counts the fake's requests for one item.
func gcpRequests(f *imdsfake.GCP, path string) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

func taintIs(value string) func(n *corev1.Node) string {
	return func(n *corev1.Node) string {
		tn := ourTaint(n)
		switch {
		case value == "" && tn != nil:
			return "taint still there: " + tn.Value
		case value != "" && tn == nil:
			return "no taint"
		case value != "" && tn.Value != value:
			return "taint " + tn.Value
		}
		return ""
	}
}

// A preemption is acted on while the maintenance-event long poll is held (it
// is not interrupted and no new one is sent), and while maintenance-event
// answers 503 over and over.
func TestGCPPreemptionWhileMaintenanceLongPollHeld(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	f, r := cl.startGCP(cl.testConfig())

	maintBefore := gcpRequests(f, imdsfake.GCPMaintenanceEventPath)
	start := time.Now()
	f.SetPreempted(true)
	cl.waitNode("preempt taint", taintIs(string(imds.TypePreempt)))
	t.Logf("preempted=TRUE to taint: %s", time.Since(start))
	// The condition is a separate write (status subresource).
	cl.waitNode("condition", func(n *corev1.Node) string {
		if c := condition(n); c == nil || c.Status != corev1.ConditionTrue || !strings.Contains(c.Message, "gce-preempted") {
			return "condition not naming gce-preempted"
		}
		return ""
	})
	if f.WaitingOn(imdsfake.GCPMaintenanceEventPath) != 1 || gcpRequests(f, imdsfake.GCPMaintenanceEventPath) != maintBefore {
		t.Fatal("the maintenance-event long poll was interrupted or repeated by the preemption")
	}
	// Preempt drains by default: cordoned.
	cl.waitNode("cordon", func(n *corev1.Node) string {
		if !n.Spec.Unschedulable {
			return "not cordoned"
		}
		return ""
	})
	f.SetPreempted(false)
	cl.waitNode("taint gone", taintIs(""))

	// maintenance-event now fails on every read (a 503 during maintenance):
	// the failures are counted, preempted is still watched and acted on.
	f.FailNextOn(imdsfake.GCPMaintenanceEventPath, 1<<30, 503)
	f.RenewMaintenanceEventETag() // ends the held long poll; every read after it fails
	testkit.Eventually(cl.t, "maintenance-event errors counted", func() bool {
		return testutil.ToFloat64(r.c.m.metadataErrors.WithLabelValues("http_5xx")) >= 2
	})
	f.SetPreempted(true)
	cl.waitNode("preempt taint while maintenance-event fails", taintIs(string(imds.TypePreempt)))
}

// A new ETag with the same maintenance-event value is the same event: no
// EventCanceled, no second EventScheduled, the NotBefore estimate (label) and
// the taint stay. A live migration taints and neither cordons nor drains.
func TestGCPLiveMigrationKeepsIdentityAndDoesNotDrain(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	evict, keep := cl.standardPods()
	cl.playKubelet()
	f, r := cl.startGCP(cl.testConfig())

	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	n := cl.waitNode("live-migrate taint and time label", func(n *corev1.Node) string {
		if p := taintIs(string(imds.TypeLiveMigrate))(n); p != "" {
			return p
		}
		if n.Labels[TimeLabel] == "" {
			return "no time label"
		}
		if c := condition(n); c == nil || c.Status != corev1.ConditionTrue {
			return "no condition"
		}
		return ""
	})
	label, taintAdded := n.Labels[TimeLabel], ourTaint(n).TimeAdded
	cl.waitEvent(ReasonEventScheduled, "gce-migrate-on-host-maintenance")

	// Three new ETags with the same value, each taken by the client.
	for range 3 {
		before := gcpRequests(f, imdsfake.GCPMaintenanceEventPath)
		f.RenewMaintenanceEventETag()
		testkit.Eventually(cl.t, "renewed ETag taken", func() bool {
			return gcpRequests(f, imdsfake.GCPMaintenanceEventPath) > before && f.WaitingOn(imdsfake.GCPMaintenanceEventPath) == 1
		})
	}
	// A later change on another item is a marker: once the controller reported
	// it, it has observed the renewals before it. (A notice it does not
	// understand: no action.)
	f.SetUpcomingMaintenanceBody(`{"maintenanceWindow": "soon"}`)
	cl.waitEvent(ReasonEventNotUnderstood, "upcoming-maintenance")

	if got := testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(imds.GCP, string(imds.TypeLiveMigrate), statusScheduled)); got != 1 {
		t.Fatalf("%v scheduled transitions for the live migration, want 1", got)
	}
	if got := testutil.ToFloat64(r.c.m.eventTransitions.WithLabelValues(imds.GCP, string(imds.TypeLiveMigrate), statusCanceled)); got != 0 {
		t.Fatalf("%v canceled transitions for the live migration, want 0", got)
	}
	for _, e := range cl.nodeEvents(ReasonEventCanceled) {
		t.Fatalf("EventCanceled after a new ETag: %s", e.Message)
	}
	scheduled := 0
	for _, e := range cl.nodeEvents(ReasonEventScheduled) {
		if strings.Contains(e.Message, "gce-migrate-on-host-maintenance") {
			scheduled += int(max(e.Count, 1))
		}
	}
	if scheduled != 1 {
		t.Fatalf("%d EventScheduled for the live migration, want 1", scheduled)
	}
	n = cl.getNode()
	if got := n.Labels[TimeLabel]; got != label {
		t.Fatalf("time label %s -> %s: the NotBefore estimate restarted on a new ETag", label, got)
	}
	if tn := ourTaint(n); tn == nil || !tn.TimeAdded.Equal(taintAdded) {
		t.Fatalf("taint rewritten: %+v (added %v before)", tn, taintAdded)
	}
	// No cordon, no drain: every pod is still there.
	if n.Spec.Unschedulable || n.Annotations[DrainStateAnnotation] != "" || n.Annotations[CordonedAnnotation] != "" {
		t.Fatalf("live migration cordoned or drained: unschedulable=%v annotations=%v", n.Spec.Unschedulable, n.Annotations)
	}
	pods := cl.podNames()
	for _, p := range append(evict, keep...) {
		if !slices.Contains(pods, p) {
			t.Fatalf("pod %s gone: %v", p, pods)
		}
	}

	// Back to NONE before the estimated start (first seen + 60 s): canceled.
	f.SetMaintenanceEvent("NONE")
	cl.waitNode("taint gone", taintIs(""))
	cl.waitEvent(ReasonEventCanceled, "gce-migrate-on-host-maintenance")
}

// A live migration alone, with standard pods: tainted, never cordoned, no pod
// evicted; LiveMigrate=drain makes it drain as before.
func TestGCPLiveMigrationActionConfigurable(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	evict, keep := cl.standardPods()
	cl.playKubelet()
	f, r := cl.startGCP(cl.testConfig())
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	cl.waitNode("live-migrate taint", taintIs(string(imds.TypeLiveMigrate)))
	// More polls and reconcile passes: still neither cordoned nor drained.
	polls := testutil.ToFloat64(r.c.m.lastPoll)
	f.SetUpcomingMaintenanceBody(`{}`)
	f.SetUpcomingMaintenanceBody(`{ }`)
	testkit.Eventually(cl.t, "another poll", func() bool { return testutil.ToFloat64(r.c.m.lastPoll) > polls })
	n := cl.getNode()
	if n.Spec.Unschedulable || n.Annotations[DrainStateAnnotation] != "" {
		t.Fatalf("live migration cordoned or drained: unschedulable=%v annotations=%v", n.Spec.Unschedulable, n.Annotations)
	}
	if got := cl.podNames(); len(got) != len(evict)+len(keep) {
		t.Fatalf("pods %v", got)
	}
	f.SetMaintenanceEvent("NONE")
	cl.waitNode("taint gone", taintIs(""))
	r.stop()

	// Configurable as for every type.
	actions, err := ParseActions("LiveMigrate=drain")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cl.testConfig()
	cfg.Actions = actions
	f2, _ := cl.startGCP(cfg)
	f2.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE")
	testkit.Eventually(cl.t, "pods evicted", func() bool {
		for _, p := range cl.podNames() {
			if slices.Contains(evict, p) {
				return false
			}
		}
		return true
	})
	if !cl.getNode().Spec.Unschedulable {
		t.Fatal("LiveMigrate=drain did not cordon")
	}
}

// upcoming-maintenance in the Compute API's camelCase is acted on like the
// metadata server's snake_case; a shape the client does not understand is
// reported (EventNotUnderstood, unknown_event_types_total), never read as "no
// maintenance" and never acted on.
func TestGCPUpcomingMaintenanceSpellings(t *testing.T) {
	cl := newCluster(t)
	cl.createNode(false)
	cfg := cl.testConfig()
	cfg.Actions = map[imds.EventType]Action{imds.TypeMaintenance: ActionTaint}
	f, r := cl.startGCP(cfg)

	f.SetUpcomingMaintenanceBody(`{"maintenance": {"start": "2030-01-01T00:00:00Z"}, "state": "SOON"}`)
	cl.waitEvent(ReasonEventNotUnderstood, "upcoming-maintenance")
	testkit.Eventually(cl.t, "unknown counted", func() bool {
		return testutil.ToFloat64(r.c.m.unknownTypes.WithLabelValues(imds.GCP, "upcoming-maintenance")) == 1
	})
	if tn := ourTaint(cl.getNode()); tn != nil {
		t.Fatalf("a notice not understood was acted on: %+v", tn)
	}

	f.SetUpcomingMaintenanceBody(`{"canReschedule": true, "latestWindowStartTime": "2030-01-01T00:00:00Z",
		"maintenanceReasons": ["PLANNED_UPDATE"], "maintenanceStatus": "PENDING", "type": "SCHEDULED",
		"windowEndTime": "2030-01-01T02:00:00Z", "windowStartTime": "2030-01-01T00:00:00Z"}`)
	want := strconv.FormatInt(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), 10)
	cl.waitNode("maintenance taint and time label", func(n *corev1.Node) string {
		if p := taintIs(string(imds.TypeMaintenance))(n); p != "" {
			return p
		}
		if n.Labels[TimeLabel] != want {
			return "time label " + n.Labels[TimeLabel] + ", want " + want
		}
		return ""
	})

	// The same window in snake_case: the same event.
	before := gcpRequests(f, imdsfake.GCPUpcomingMaintenancePath)
	f.SetUpcomingMaintenanceBody(`{"can_reschedule":"true","latest_window_start_time":"2030-01-01T00:00:00Z",` +
		`"maintenance_reasons":["PLANNED_UPDATE"],"maintenance_status":"PENDING","type":"SCHEDULED",` +
		`"window_end_time":"2030-01-01T02:00:00Z","window_start_time":"2030-01-01T00:00:00Z"}`)
	testkit.Eventually(cl.t, "snake_case read", func() bool {
		return gcpRequests(f, imdsfake.GCPUpcomingMaintenancePath) > before && f.WaitingOn(imdsfake.GCPUpcomingMaintenancePath) == 1
	})
	f.SetMaintenanceEvent("MIGRATE_ON_HOST_MAINTENANCE") // marker: acted on after the snake_case document
	cl.waitEvent(ReasonEventScheduled, "gce-migrate-on-host-maintenance")
	for _, e := range cl.nodeEvents(ReasonEventCanceled) {
		t.Fatalf("spelling change canceled the event: %s", e.Message)
	}
}

// The AWS token TTL flag: a short TTL is renewed before it expires, so the
// metadata service never answers 401, and events still arrive.
func TestAWSTokenTTLFlag(t *testing.T) {
	mo := &MetadataOptions{}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	mo.AddFlags(fs)
	if mo.AWSTokenTTL != imds.DefaultAWSTokenTTL || mo.Validate() != nil {
		t.Fatalf("default %s", mo.AWSTokenTTL)
	}
	for _, bad := range []string{"0s", "500ms", "1500ms", "6h1s", "-1s"} {
		if err := fs.Parse([]string{"--metadata.aws.token-ttl=" + bad}); err == nil && mo.Validate() == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if err := fs.Parse([]string{"--metadata.aws.token-ttl=2s"}); err != nil || mo.Validate() != nil || mo.AWSTokenTTL != 2*time.Second {
		t.Fatalf("2s: %v %v %s", err, mo.Validate(), mo.AWSTokenTTL)
	}

	cl := newCluster(t)
	cl.createNode(false)
	f := imdsfake.NewAWS()
	srv := f.Start()
	t.Cleanup(srv.Close)
	src, err := imds.NewAWS(imds.AWSOptions{Endpoint: srv.URL, TokenTTL: mo.AWSTokenTTL})
	if err != nil {
		t.Fatal(err)
	}
	cfg := cl.testConfig()
	cfg.PollInterval = 100 * time.Millisecond
	cl.start(src, cfg)
	puts := func() (n int) {
		for _, r := range f.Requests() {
			if r.Method == "PUT" {
				n++
				if r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds") != "2" {
					t.Fatalf("token TTL header %q", r.Header.Get("X-Aws-Ec2-Metadata-Token-Ttl-Seconds"))
				}
			}
		}
		return n
	}
	testkit.Eventually(cl.t, "three token renewals", func() bool { return puts() >= 4 })
	f.AddScheduled(imdsfake.AWSScheduledEvent{Code: "system-reboot", NotBefore: imdsfake.AWSTime(time.Now().Add(time.Hour))})
	cl.waitNode("reboot taint", taintIs(string(imds.TypeReboot)))
	for _, r := range f.Requests() {
		if r.Status == 401 {
			t.Fatalf("a request with an expired token: %+v", r)
		}
	}
}

// longPollSource is a fakeSource that says it long-polls and reports errors
// of a part of the source with every snapshot.
type longPollSource struct {
	*fakeSource
	errs []error
}

func (l *longPollSource) LongPolls() bool { return true }

func (l *longPollSource) Poll(ctx context.Context) (imds.Snapshot, error) {
	s, err := l.fakeSource.Poll(ctx)
	s.Errors = l.errs
	return s, err
}

// A long-polling source is polled again at once, without PollInterval (which
// would hold a preemption back behind a change that came just before it), and
// the failures of its parts are counted while the snapshot is used.
func TestPollLoopLongPollerAndPartErrors(t *testing.T) {
	src := &longPollSource{fakeSource: newFakeSource(imds.GCP),
		errs: []error{&imds.RequestError{Provider: imds.GCP, Path: "/computeMetadata/v1/instance/maintenance-event", Status: 503}}}
	src.set(imds.Event{ID: "gce-preempted", Provider: imds.GCP, Type: imds.TypePreempt, RawType: "preempted", Status: imds.StatusStarted, Duration: -1})
	c := unitController(t, src, Config{PollInterval: time.Hour, MaxRetryInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.pollLoop(ctx) })
	testkit.EventuallyWithin(t, 10*time.Second, "polls without the hour-long interval", func() bool { return src.pollCount() >= 5 })
	cancel()
	wg.Wait()
	if got := testutil.ToFloat64(c.m.metadataErrors.WithLabelValues("http_5xx")); got < 5 {
		t.Fatalf("part errors counted %v times, want one per poll", got)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if got := c.tracker.list(); len(got) != 1 || got[0].ID != "gce-preempted" {
		t.Fatalf("snapshot with part errors not used: %+v", got)
	}
}
