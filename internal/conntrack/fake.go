package conntrack

import (
	"context"
	"sync"
	"time"
)

// Fake is an in-memory table with the same Dump and ListenDestroy behaviour as
// Conn, for unit tests of consumers.
type Fake struct {
	mu       sync.Mutex
	flows    map[uint32]Flow
	order    []uint32
	events   chan Flow
	overflow chan struct{}
	dumps    int
	// DumpErr, when set, is returned by the next Dump (and cleared).
	DumpErr error
}

// NewFake returns an empty table.
func NewFake() *Fake {
	return &Fake{flows: map[uint32]Flow{}, events: make(chan Flow, 1024), overflow: make(chan struct{}, 1)}
}

// Set adds or replaces an entry (by ID), as traffic on a live flow would.
func (f *Fake) Set(fl Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.flows[fl.ID]; !ok {
		f.order = append(f.order, fl.ID)
	}
	f.flows[fl.ID] = fl
}

// Destroy removes an entry and emits its DESTROY event with the final counters.
// With lose set, the event is dropped as on a socket overflow.
func (f *Fake) Destroy(id uint32, lose bool) {
	f.mu.Lock()
	fl, ok := f.flows[id]
	delete(f.flows, id)
	f.mu.Unlock()
	if ok && !lose {
		f.events <- fl
	}
}

// Overflow makes the running ListenDestroy return ErrOverflow.
func (f *Fake) Overflow() { f.overflow <- struct{}{} }

// Dumps is how many dumps succeeded.
func (f *Fake) Dumps() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dumps
}

// Dump calls fn for every live entry in insertion order.
func (f *Fake) Dump(ctx context.Context, fn func(*Flow)) error {
	f.mu.Lock()
	if err := f.DumpErr; err != nil {
		f.DumpErr = nil
		f.mu.Unlock()
		return err
	}
	var out []Flow
	live := f.order[:0]
	for _, id := range f.order {
		if fl, ok := f.flows[id]; ok {
			out = append(out, fl)
			live = append(live, id)
		}
	}
	f.order = live
	f.dumps++
	f.mu.Unlock()
	for i := range out {
		fn(&out[i])
	}
	return ctx.Err()
}

// Listen delivers Destroy events until ctx ends; Idle is called whenever no
// event is pending, Overflow (or, without it, a return of ErrOverflow) when
// Overflow is called on the fake.
func (f *Fake) Listen(ctx context.Context, h Handlers) error {
	if h.Ready != nil {
		h.Ready()
	}
	for {
		since := time.Now()
		select {
		case fl := <-f.events:
			h.Event(EventDestroy, &fl)
			continue
		default:
		}
		if h.Idle != nil {
			h.Idle(since)
		}
		select {
		case <-time.After(10 * time.Millisecond): // look again, report idle again
		case <-ctx.Done():
			return ctx.Err()
		case <-f.overflow:
			if h.Overflow == nil {
				return ErrOverflow
			}
			h.Overflow()
		case fl := <-f.events:
			h.Event(EventDestroy, &fl)
		}
	}
}

// ListenDestroy is Listen with only Ready and Event, as on Conn.
func (f *Fake) ListenDestroy(ctx context.Context, ready func(), fn func(EventType, *Flow)) error {
	return f.Listen(ctx, Handlers{Ready: ready, Event: fn})
}
