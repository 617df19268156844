package demo

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// helperTB lets the demo use the repository's loopback fakes (otlptest,
// probetest, netnstest), which take a testing.TB, outside a test: Cleanup
// collects functions the demo runs at exit (last first), and Fatal panics with
// a fatalError that try turns into an error. Every other method of testing.TB
// is unused by those packages; calling one panics (nil embedded interface).
type helperTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	dir      string
}

type fatalError struct{ msg string }

func (f fatalError) Error() string { return f.msg }

func (t *helperTB) Helper()      {}
func (t *helperTB) Name() string { return "trellis-demo" }
func (t *helperTB) Failed() bool { return false }
func (t *helperTB) Cleanup(f func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.cleanups = append(t.cleanups, f)
}
func (t *helperTB) Fatal(args ...any) { panic(fatalError{fmt.Sprint(args...)}) }
func (t *helperTB) Fatalf(format string, args ...any) {
	panic(fatalError{fmt.Sprintf(format, args...)})
}
func (t *helperTB) Error(args ...any)                 { t.Fatal(args...) }
func (t *helperTB) Errorf(format string, args ...any) { t.Fatalf(format, args...) }
func (t *helperTB) Skip(args ...any)                  { t.Fatal(args...) }
func (t *helperTB) Skipf(format string, args ...any)  { t.Fatalf(format, args...) }
func (t *helperTB) Log(args ...any)                   {}
func (t *helperTB) Logf(format string, args ...any)   {}
func (t *helperTB) TempDir() string {
	d, err := os.MkdirTemp(t.dir, "tmp-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// runCleanups runs the collected functions, last registered first.
func (t *helperTB) runCleanups() {
	for {
		t.mu.Lock()
		if len(t.cleanups) == 0 {
			t.mu.Unlock()
			return
		}
		f := t.cleanups[len(t.cleanups)-1]
		t.cleanups = t.cleanups[:len(t.cleanups)-1]
		t.mu.Unlock()
		f()
	}
}

// try runs f and returns the failure a helper reported through Fatal.
func try(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	f()
	return nil
}
