package testenv

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// A process started by launch survives the end of the OS thread that called
// launch: Pdeathsig fires when the child's parent thread ends, and a goroutine
// that locks its thread and returns (netnstest.Do, conntrack sockets in a
// namespace) ends that thread. Before launch kept its own thread, zone-flow-tracer's
// API server was killed mid-run this way.
func TestLaunchSurvivesCallerThreadExit(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	e := &Env{Dir: t.TempDir(), waitErr: map[*exec.Cmd]chan error{}}
	type res struct {
		cmd *exec.Cmd
		tid int
		err error
	}
	ch := make(chan res, 1)
	// Call launch from a locked thread that is not the main thread (the runtime
	// never ends the main thread), and end that thread by returning locked.
	var call func()
	call = func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if syscall.Gettid() == syscall.Getpid() {
			go call() // this goroutine keeps the main thread; try another thread
			return
		}
		cmd, err := e.launch(sleep, "sleep.log", "600")
		ch <- res{cmd, syscall.Gettid(), err}
	}
	go call()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); <-e.waitErr[r.cmd] })
	// The calling thread is gone once its task entry is.
	task := "/proc/self/task/" + strconv.Itoa(r.tid)
	testkit.Eventually(t, "the end of thread "+strconv.Itoa(r.tid), func() bool {
		_, err := os.Stat(task)
		return os.IsNotExist(err)
	})
	// Pdeathsig is sent while the thread exits, before its task entry goes; a
	// killed child is reaped within moments. Watch it for a second.
	watch := time.Now().Add(time.Second)
	for time.Now().Before(watch) {
		if err := e.exited(r.cmd); err != nil {
			t.Fatalf("the child died with the thread that called launch: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // sleep-ok: sampling the child through the watch window; it staying alive is what is tested
	}
}
