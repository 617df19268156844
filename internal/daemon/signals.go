package daemon

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// ExitCodeSecondSignal is the exit code when a second SIGTERM/SIGINT arrives before
// graceful shutdown finished (128 + SIGINT, as shells report an interrupt).
const ExitCodeSecondSignal = 130

// SignalContext returns a context cancelled by the first SIGTERM or SIGINT. A second
// signal exits the process at once with ExitCodeSecondSignal. stop releases the
// signal handler.
func SignalContext(parent context.Context) (ctx context.Context, stop func()) {
	return signalContext(parent, func() { os.Exit(ExitCodeSecondSignal) })
}

func signalContext(parent context.Context, exit func()) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			cancel(&SignalError{Signal: sig})
		case <-done:
			return
		}
		select {
		case <-ch:
			exit()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(context.Canceled)
	}
}

// SignalError is the cancellation cause of a SignalContext.
type SignalError struct{ Signal os.Signal }

func (e *SignalError) Error() string { return "received signal " + e.Signal.String() }
