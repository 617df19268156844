package mrsigner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/trellis-garden/trellis/internal/kube"
	"github.com/trellis-garden/trellis/internal/secretsig"
)

// Reasons the controller uses beyond secretsig.Reason's.
const reasonSecretNotFound = "SecretNotFound"

// Reasons of the Events recorded on ManagedResources.
const (
	// ReasonQuarantined: a referenced Secret's signature is missing or invalid.
	ReasonQuarantined = "Quarantined"
	// ReasonQuarantineLifted: every referenced Secret is signed again.
	ReasonQuarantineLifted = "QuarantineLifted"
)

// Verifier is the controller: it verifies the Secrets every ManagedResource names
// and quarantines the ManagedResource when one is unsigned or tampered with, and
// lifts its own quarantine when all verify again.
type Verifier struct {
	Client         kubernetes.Interface
	Dynamic        dynamic.Interface
	ManagedRes     cache.SharedIndexInformer
	Keys           *KeyStore
	Recorder       record.EventRecorder
	Log            *slog.Logger
	Namespace      string // "" for all
	SecretSelector string
	Resync         time.Duration

	metrics *metrics
	queue   workqueue.TypedRateLimitingInterface[string]
	secrets listerscorev1.SecretLister
}

// init registers the event handlers; call once before the informers start.
func (v *Verifier) init() error {
	v.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "managedresources"})
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			v.queue.Add(key)
		}
	}
	_, err := v.ManagedRes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	})
	v.Keys.OnChange(v.enqueueAll)
	return err
}

func (v *Verifier) enqueueAll() {
	for _, key := range v.ManagedRes.GetIndexer().ListKeys() {
		v.queue.Add(key)
	}
}

// Run verifies until ctx ends. It runs only on the leader.
func (v *Verifier) Run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(v.Client, v.Resync, informers.WithNamespace(v.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = v.SecretSelector }))
	secrets := f.Core().V1().Secrets()
	v.secrets = secrets.Lister()
	onSecret := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		s, ok := obj.(*corev1.Secret)
		if !ok {
			return
		}
		objs, _ := v.ManagedRes.GetIndexer().ByIndex(secretRefIndex, s.Namespace+"/"+s.Name)
		for _, o := range objs {
			if mr, ok := o.(*unstructured.Unstructured); ok {
				v.queue.Add(mr.GetNamespace() + "/" + mr.GetName())
			}
		}
	}
	if _, err := secrets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSecret, UpdateFunc: func(_, obj any) { onSecret(obj) }, DeleteFunc: onSecret,
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), secrets.Informer().HasSynced, v.ManagedRes.HasSynced) {
		return ctx.Err()
	}
	// Keys first: never quarantine everything because the keys were not read yet.
	for v.Keys.Ready(ctx) != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	v.enqueueAll()
	go func() { <-ctx.Done(); v.queue.ShutDown() }()
	for v.processNext(ctx) {
	}
	return ctx.Err()
}

func (v *Verifier) processNext(ctx context.Context) bool {
	key, quit := v.queue.Get()
	if quit {
		return false
	}
	defer v.queue.Done(key)
	if err := v.reconcile(ctx, key); err != nil {
		v.metrics.reconcileErrors.Inc()
		v.Log.Warn("reconcile failed, retrying", "managedResource", key, "err", err)
		v.queue.AddRateLimited(key)
		return true
	}
	v.queue.Forget(key)
	return true
}

// reconcile verifies one ManagedResource's Secrets and sets or lifts quarantine.
func (v *Verifier) reconcile(ctx context.Context, key string) error {
	obj, exists, err := v.ManagedRes.GetIndexer().GetByKey(key)
	if err != nil || !exists {
		return err
	}
	mr := obj.(*unstructured.Unstructured)
	keys := v.Keys.Keys()
	if keys.Len() == 0 {
		return nil // Ready reports it; every MR is enqueued again when keys arrive
	}
	var reason, detail string
	for _, name := range secretRefs(mr) {
		r, d, err := v.verifySecret(ctx, keys, mr.GetNamespace(), name)
		if err != nil {
			return err
		}
		v.metrics.verifications.WithLabelValues(labelValue(r)).Inc()
		if r != "Valid" && reason == "" {
			reason, detail = r, d
		}
	}
	if reason != "" {
		return v.quarantine(ctx, mr, reason, detail)
	}
	return v.lift(ctx, mr)
}

func (v *Verifier) verifySecret(ctx context.Context, keys *secretsig.KeySet, ns, name string) (reason, detail string, err error) {
	s, err := v.secrets.Secrets(ns).Get(name)
	if apierrors.IsNotFound(err) && v.SecretSelector != "" {
		// Outside the label-selected cache: read it directly.
		s, err = v.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if apierrors.IsNotFound(err) {
		return reasonSecretNotFound, "secret " + name + " not found", nil
	}
	if err != nil {
		return "", "", err
	}
	if _, verr := keys.Verify(secretsig.FromSecret(s), secretsig.AnnotationOf(s)); verr != nil {
		return secretsig.Reason(verr), "secret " + name + ": " + verr.Error(), nil
	}
	return "Valid", "", nil
}

func (v *Verifier) apply(ctx context.Context, mr *unstructured.Unstructured, annotations map[string]string) error {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(mr.GetAPIVersion())
	u.SetKind(mr.GetKind())
	u.SetNamespace(mr.GetNamespace())
	u.SetName(mr.GetName())
	if len(annotations) > 0 {
		u.SetAnnotations(annotations)
	}
	res := v.Dynamic.Resource(ManagedResourceGVR).Namespace(mr.GetNamespace())
	// Force: quarantine must win over an ignore annotation set to "false" by
	// someone else. Fields another manager also owns survive a later lift.
	_, err := kube.Apply(ctx, kube.Applier{FieldManager: kube.FieldManager(Name), Force: true},
		func(ctx context.Context, obj *unstructured.Unstructured, opts metav1.ApplyOptions) (*unstructured.Unstructured, error) {
			return res.Apply(ctx, obj.GetName(), obj, opts)
		}, u)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// quarantine sets resources.gardener.cloud/ignore=true and trellis.dev/quarantined
// with server-side apply, and records an Event.
func (v *Verifier) quarantine(ctx context.Context, mr *unstructured.Unstructured, reason, detail string) error {
	value := reason + ": " + detail
	ann := mr.GetAnnotations()
	if ann[QuarantineAnnotation] == value && ann[IgnoreAnnotation] == "true" {
		return nil
	}
	if err := v.apply(ctx, mr, map[string]string{IgnoreAnnotation: "true", QuarantineAnnotation: value}); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if _, already := ann[QuarantineAnnotation]; !already {
		v.metrics.quarantines.WithLabelValues(labelValue(reason)).Inc()
	}
	v.Recorder.Eventf(mr, corev1.EventTypeWarning, ReasonQuarantined, "%s; set %s=true so the resource manager skips it", value, IgnoreAnnotation)
	v.Log.Warn("managed resource quarantined", "managedResource", mr.GetNamespace()+"/"+mr.GetName(), "reason", reason, "detail", detail)
	return nil
}

// lift drops the fields mr-signer owns (its annotation, and ignore unless
// another manager owns it too) once every Secret verifies.
func (v *Verifier) lift(ctx context.Context, mr *unstructured.Unstructured) error {
	if _, ok := mr.GetAnnotations()[QuarantineAnnotation]; !ok {
		return nil
	}
	if err := v.apply(ctx, mr, nil); err != nil {
		return fmt.Errorf("lift quarantine: %w", err)
	}
	v.metrics.lifts.Inc()
	v.Recorder.Event(mr, corev1.EventTypeNormal, ReasonQuarantineLifted, "every referenced Secret carries a valid signature")
	v.Log.Info("managed resource quarantine lifted", "managedResource", mr.GetNamespace()+"/"+mr.GetName())
	return nil
}
