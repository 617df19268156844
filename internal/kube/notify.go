package kube

import (
	"fmt"

	"k8s.io/client-go/tools/cache"
)

// Notifier turns informer events into one coalesced wake-up: however many adds,
// updates and deletes arrive while the consumer is busy, it finds one signal on
// C and then reads the informers' current state (their stores or listers), never
// the events themselves. Sending never blocks an informer's handler.
//
//	changed := kube.NewNotifier()
//	if err := changed.Watch(informer); err != nil { ... }
//	for {
//		select {
//		case <-ctx.Done():
//			return nil
//		case <-changed.C():
//			reconcile(informer.GetStore())
//		}
//	}
type Notifier struct {
	c chan struct{}
}

// NewNotifier returns a Notifier with no signal pending.
func NewNotifier() *Notifier { return &Notifier{c: make(chan struct{}, 1)} }

// Notify makes one signal pending, unless one already is.
func (n *Notifier) Notify() {
	select {
	case n.c <- struct{}{}:
	default:
	}
}

// C receives the pending signal.
func (n *Notifier) C() <-chan struct{} { return n.c }

// Handler calls Notify on every add, update and delete.
func (n *Notifier) Handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { n.Notify() },
		UpdateFunc: func(any, any) { n.Notify() },
		DeleteFunc: func(any) { n.Notify() },
	}
}

// Watch registers Handler with each informer (before it starts, so the initial
// list notifies too).
func (n *Notifier) Watch(informers ...cache.SharedInformer) error {
	for _, inf := range informers {
		if _, err := inf.AddEventHandler(n.Handler()); err != nil {
			return fmt.Errorf("informer event handler: %w", err)
		}
	}
	return nil
}
