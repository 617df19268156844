package otelscraper

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/trellis-garden/trellis/internal/promtext"
	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// reasonRecorder passes Events on and counts them per reason.
type reasonRecorder struct {
	record.EventRecorder
	mu      sync.Mutex
	reasons map[string]int
}

func (r *reasonRecorder) Event(obj runtime.Object, eventtype, reason, message string) {
	r.mu.Lock()
	if r.reasons == nil {
		r.reasons = map[string]int{}
	}
	r.reasons[reason]++
	r.mu.Unlock()
	if r.EventRecorder != nil {
		r.EventRecorder.Event(obj, eventtype, reason, message)
	}
}

func (r *reasonRecorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reasons[reason]
}

// ruleMetric reads one series of a rules metric (prefix "test_") from reg.
func ruleMetric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, ok := testkit.Metric(t, reg, "test_"+name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

func TestRuleSourceWithoutAPI(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := NewRuleSource(nil, "kube-system", "rules", "rules.yaml", nil, nil, reg, "test")
	if src.Current() != DefaultRules() {
		t.Fatal("Current is not the defaults before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	testkit.Eventually(t, "HasSynced", src.HasSynced)
	select {
	case err := <-done:
		t.Fatalf("Run returned before ctx ended: %v", err)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if src.Current() != DefaultRules() {
		t.Error("Current changed without an API")
	}
	for name, want := range map[string]float64{"rules_last_reload_success": 1, "rules_defaults_in_use": 1} {
		if got := ruleMetric(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if ruleMetric(t, reg, "rules_last_reload_timestamp_seconds") < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Error("rules_last_reload_timestamp_seconds not set")
	}
}

// newTestRecorder writes Events to the API server, as the daemon's recorder does.
func newTestRecorder(t *testing.T, client kubernetes.Interface) record.EventRecorder {
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	t.Cleanup(broadcaster.Shutdown)
	return broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "trellis-otel-shoot-scraper-test"})
}

// The ConfigMap drives the rules through a real API server: created -> applied;
// broken -> the last good rules stay and the problem is reported once (log,
// metrics, Warning Event on the ConfigMap); fixed -> applied; key or ConfigMap
// removed -> defaults.
func TestRuleSourceFollowsConfigMap(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cms := env.Client.CoreV1().ConfigMaps(ns)
	const name, key = "otel-shoot-scraper-rules", "rules.yaml"

	// A ConfigMap with the same key in the same namespace, but another name, is
	// not looked at (its invalid rules would count as an error).
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Data: map[string]string{key: "not: [valid"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	logs := &testkit.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	events := &reasonRecorder{EventRecorder: newTestRecorder(t, env.Client)}
	src := NewRuleSource(env.Client, ns, name, key, events, log, reg, "test")
	if src.HasSynced() {
		t.Fatal("HasSynced before Run")
	}
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	testkit.Eventually(t, "HasSynced", src.HasSynced)
	if src.Current() != DefaultRules() {
		t.Fatal("no ConfigMap: Current is not the defaults")
	}
	if n := strings.Count(logs.String(), "reason=configMapNotFound"); n != 1 {
		t.Errorf("missing ConfigMap logged %d times, want once:\n%s", n, logs)
	}
	metric := func(name string, labels ...string) float64 { return ruleMetric(t, reg, name, labels...) }
	reloads := func(result string) float64 { return metric("rules_reload_total", "result", result) }

	// Created: applied.
	good := `
jobs:
  cadvisor:
    keep: [container_cpu_usage_seconds_total]
    constLabels: {cluster: shoot-a}
`
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{key: good}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "rules from the ConfigMap", func() bool { return src.Current() != DefaultRules() })
	applied := src.Current()
	cadvisor := applied.Job("cadvisor")
	if labelString(cadvisor.ConstLabels()) != "cluster=shoot-a" ||
		!cadvisor.Keep(sample("container_cpu_usage_seconds_total", promtext.TypeCounter, "namespace", "shop")) ||
		cadvisor.Keep(sample("container_fs_usage_bytes", promtext.TypeGauge)) {
		t.Fatal("Current does not reflect the ConfigMap's rules")
	}
	if reloads("success") != 2 || reloads("error") != 0 || metric("rules_last_reload_success") != 1 || metric("rules_defaults_in_use") != 0 {
		t.Errorf("after apply: success %v error %v last %v defaults %v", reloads("success"), reloads("error"), metric("rules_last_reload_success"), metric("rules_defaults_in_use"))
	}
	appliedAt := metric("rules_last_reload_timestamp_seconds")
	if n := strings.Count(logs.String(), `msg="filter rules applied"`); n != 1 {
		t.Errorf("applied logged %d times:\n%s", n, logs)
	}

	// Broken: invalid regex and an unknown field. The last good rules stay.
	bad := "jobs:\n  cadvisor:\n    keep: ['(unclosed']\n    kep: []\n"
	cm.Data[key] = bad
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the reload error", func() bool { return reloads("error") == 1 })
	if src.Current() != applied {
		t.Error("invalid rules replaced the last good rules")
	}
	if metric("rules_last_reload_success") != 0 || metric("rules_last_reload_timestamp_seconds") != appliedAt {
		t.Errorf("after error: last success %v, timestamp %v (was %v)", metric("rules_last_reload_success"), metric("rules_last_reload_timestamp_seconds"), appliedAt)
	}
	if n := strings.Count(logs.String(), `msg="invalid filter rules, keeping the last good rules"`); n != 1 ||
		!strings.Contains(logs.String(), "jobs.cadvisor.keep[0]: error parsing regexp") {
		t.Errorf("invalid rules logged %d times:\n%s", n, logs)
	}
	var event corev1.Event
	testkit.Eventually(t, "the InvalidFilterRules Event", func() bool {
		list, err := env.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=" + name + ",reason=" + ReasonInvalidFilterRules,
		})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		event = list.Items[0]
		return true
	})
	if event.Type != corev1.EventTypeWarning || event.InvolvedObject.Kind != "ConfigMap" || event.InvolvedObject.Namespace != ns ||
		!strings.Contains(event.Message, "jobs.cadvisor.keep[0]: error parsing regexp: missing closing )") ||
		!strings.Contains(event.Message, "jobs.cadvisor.kep: unknown field") {
		t.Errorf("event = %s %s/%s %q", event.Type, event.InvolvedObject.Kind, event.InvolvedObject.Namespace, event.Message)
	}

	// The same error again (a comment changed): counted and logged, no new Event.
	// A change of labels only is not a reload at all.
	cm.Data[key] = "# still broken\n" + bad
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the second reload error", func() bool { return reloads("error") == 2 })
	cm.Labels = map[string]string{"touched": "true"}
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Fixed: applied.
	cm.Data[key] = "jobs:\n  cadvisor:\n    keep: [container_fs_usage_bytes]\n"
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "the fixed rules", func() bool {
		return src.Current().Job("cadvisor").Keep(sample("container_fs_usage_bytes", promtext.TypeGauge))
	})
	if reloads("success") != 3 || reloads("error") != 2 || metric("rules_last_reload_success") != 1 {
		t.Errorf("after fix: success %v error %v last %v (a labels-only change must not reload)", reloads("success"), reloads("error"), metric("rules_last_reload_success"))
	}
	if n := events.count(ReasonInvalidFilterRules); n != 1 {
		t.Errorf("%d InvalidFilterRules Events for one distinct error, want 1", n)
	}
	if n := events.count(ReasonFilterRulesApplied); n != 2 {
		t.Errorf("%d FilterRulesApplied Events, want 2", n)
	}

	// Key removed: defaults.
	delete(cm.Data, key)
	cm.Data["other-key"] = "x"
	if cm, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "defaults after the key was removed", func() bool { return src.Current() == DefaultRules() })
	if strings.Count(logs.String(), "reason=keyNotFound") != 1 || metric("rules_defaults_in_use") != 1 {
		t.Errorf("key removal: defaults_in_use %v\n%s", metric("rules_defaults_in_use"), logs)
	}

	// Back, then the ConfigMap deleted: defaults.
	cm.Data[key] = good
	if _, err = cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "rules again", func() bool { return src.Current() != DefaultRules() })
	if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, "defaults after the ConfigMap was deleted", func() bool { return src.Current() == DefaultRules() })
	if strings.Count(logs.String(), "reason=configMapNotFound") != 2 || metric("rules_defaults_in_use") != 1 || metric("rules_last_reload_success") != 1 {
		t.Errorf("deletion: defaults_in_use %v\n%s", metric("rules_defaults_in_use"), logs)
	}
	if strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("watching failed:\n%s", logs)
	}
}

// The source lists and watches its one ConfigMap by name, never the namespace.
func TestRuleSourceWatchesOnlyItsConfigMap(t *testing.T) {
	client := fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rules", Namespace: "kube-system"}, Data: map[string]string{"rules.yaml": "{}"}},
	)
	src := NewRuleSource(client, "kube-system", "rules", "rules.yaml", nil, nil, nil, "test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	testkit.Eventually(t, "HasSynced", src.HasSynced)
	if src.Current() == DefaultRules() || !src.Current().Job("cadvisor").Keep(sample("anything", promtext.TypeGauge)) {
		t.Error("rules {} not applied")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "configmaps" {
			continue
		}
		verbs = append(verbs, a.GetVerb())
		if a.GetNamespace() != "kube-system" {
			t.Errorf("%s in namespace %q", a.GetVerb(), a.GetNamespace())
		}
		var fs string
		switch a := a.(type) {
		case k8stesting.ListAction:
			fs = a.GetListRestrictions().Fields.String()
		case k8stesting.WatchAction:
			fs = a.GetWatchRestrictions().Fields.String()
		default:
			t.Errorf("unexpected %s on configmaps", a.GetVerb())
			continue
		}
		if fs != "metadata.name=rules" {
			t.Errorf("%s with field selector %q, want metadata.name=rules", a.GetVerb(), fs)
		}
	}
	if !slices.Contains(verbs, "list") || !slices.Contains(verbs, "watch") {
		t.Errorf("configmap requests = %v, want list and watch", verbs)
	}
}
