package kube

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/trellis-garden/trellis/internal/testenv"
	"github.com/trellis-garden/trellis/internal/testkit"
)

func TestNotifierCoalesces(t *testing.T) {
	n := NewNotifier()
	for range 100 {
		n.Notify()
	}
	select {
	case <-n.C():
	default:
		t.Fatal("no signal after Notify")
	}
	select {
	case <-n.C():
		t.Fatal("100 notifications gave two signals")
	default:
	}
}

// TestNotifierInformer watches ConfigMaps of one namespace on the real API
// server: the initial list, every add, update and delete wakes the consumer, and
// a burst of changes while the consumer is busy leaves exactly one signal.
func TestNotifierInformer(t *testing.T) {
	env := testenv.Get(t)
	ns := env.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(env.Client, 0, informers.WithNamespace(ns))
	defer func() { cancel(); factory.Shutdown() }()
	informer := factory.Core().V1().ConfigMaps().Informer()

	changed := NewNotifier()
	if err := changed.Watch(informer); err != nil {
		t.Fatal(err)
	}
	// A second notifier behind a counting handler: once the count says all of a
	// burst's events went through Notify, the number of pending signals is exact.
	burst := NewNotifier()
	var handled atomic.Int64
	inner := burst.Handler()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { inner.OnAdd(obj, false); handled.Add(1) },
		UpdateFunc: func(o, n any) { inner.OnUpdate(o, n); handled.Add(1) },
		DeleteFunc: func(obj any) { inner.OnDelete(obj); handled.Add(1) },
	}); err != nil {
		t.Fatal(err)
	}

	cms := env.Client.CoreV1().ConfigMaps(ns)
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before-start"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("informer did not sync")
	}
	wait := func(what string) {
		t.Helper()
		select {
		case <-changed.C():
		case <-time.After(testkit.Timeout):
			t.Fatalf("no signal after %s", what)
		}
	}
	wait("the initial list")

	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "added"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait("an add")
	cm.Data = map[string]string{"k": "v"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("an update")
	if err := cms.Delete(ctx, "added", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("a delete")

	// The burst: 1 initial add, the add, update and delete above, then 20 adds
	// nobody consumes in between.
	const want = 4 + 20
	for i := range 20 {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("burst-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "every event of the burst handled", func() bool { return handled.Load() >= want })
	if got := handled.Load(); got != want {
		t.Fatalf("%d events handled, want %d", got, want)
	}
	select {
	case <-burst.C():
	default:
		t.Fatal("no signal pending after the burst")
	}
	select {
	case <-burst.C():
		t.Fatalf("%d events left more than one signal", want)
	default:
	}
}
