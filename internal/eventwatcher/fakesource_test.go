package eventwatcher

import (
	"context"
	"sync"

	"github.com/trellis-garden/trellis/internal/imds"
)

// fakeSource is an in-memory metadata service: the cloud boundary. Tests set
// the events it reports, make it fail, and read the approvals it received.
type fakeSource struct {
	mu         sync.Mutex
	provider   string
	snap       imds.Snapshot
	err        error
	polls      int
	approvals  []string
	approveErr []error // returned by successive Approve calls, then nil
	onApprove  func(id string)
}

func newFakeSource(provider string) *fakeSource { return &fakeSource{provider: provider} }

func (f *fakeSource) Provider() string { return f.provider }

func (f *fakeSource) Poll(ctx context.Context) (imds.Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return imds.Snapshot{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	if f.err != nil {
		return imds.Snapshot{}, f.err
	}
	return imds.Snapshot{Version: f.snap.Version, Events: append([]imds.Event(nil), f.snap.Events...),
		Unknown: append([]imds.UnknownEvent(nil), f.snap.Unknown...)}, nil
}

func (f *fakeSource) Approve(_ context.Context, id string) error {
	f.mu.Lock()
	hook := f.onApprove
	var err error
	if len(f.approveErr) > 0 {
		err, f.approveErr = f.approveErr[0], f.approveErr[1:]
	}
	f.mu.Unlock()
	if hook != nil {
		hook(id)
	}
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.approvals = append(f.approvals, id)
	f.mu.Unlock()
	return nil
}

// set replaces the events and clears any failure.
func (f *fakeSource) set(events ...imds.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = nil
	f.snap.Events = events
}

// setUnknown replaces the notices the client reports as not understood.
func (f *fakeSource) setUnknown(unknown ...imds.UnknownEvent) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snap.Unknown = unknown
}

// fail makes every poll fail with err until set is called.
func (f *fakeSource) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeSource) pollCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls
}

func (f *fakeSource) approved() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.approvals...)
}
