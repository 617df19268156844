package testkit

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPoll(t *testing.T) {
	var calls atomic.Int32
	err := Poll(Timeout, func() error {
		if calls.Add(1) < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls.Load() != 5 {
		t.Fatalf("Poll = %v after %d calls, want nil after 5", err, calls.Load())
	}

	// On timeout the last error comes back, wrapped; the check ran again at the
	// deadline.
	calls.Store(0)
	sentinel := errors.New("still 3 pods")
	err = Poll(20*time.Millisecond, func() error { calls.Add(1); return fmt.Errorf("seen: %w", sentinel) })
	if !errors.Is(err, sentinel) || !strings.Contains(err.Error(), "after 20ms") || calls.Load() < 2 {
		t.Fatalf("Poll timeout = %v after %d calls", err, calls.Load())
	}

	// A zero timeout still checks once.
	if err := Poll(0, func() error { return nil }); err != nil {
		t.Fatalf("Poll(0) of a met condition = %v", err)
	}
}

func TestUntil(t *testing.T) {
	done := make(chan struct{})
	go func() { close(done) }()
	if !Until(Timeout, func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}) {
		t.Fatal("Until missed a condition that became true")
	}
	if Until(10*time.Millisecond, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
}

func TestMeasure(t *testing.T) {
	start := time.Now()
	var calls int
	elapsed, ok := Measure(time.Millisecond, Timeout, func() bool { calls++; return calls == 3 })
	if !ok || calls != 3 || elapsed > time.Since(start) {
		t.Fatalf("Measure = %v, %v after %d calls", elapsed, ok, calls)
	}
	if _, ok := Measure(time.Millisecond, 5*time.Millisecond, func() bool { return false }); ok {
		t.Fatal("Measure reported a condition that never held")
	}
}

// failT records Fatalf instead of ending the test.
type failT struct {
	testing.TB
	msg string
}

func (f *failT) Helper() {}
func (f *failT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestEventuallyMessages(t *testing.T) {
	ft := &failT{TB: t}
	EventuallyWithin(ft, 10*time.Millisecond, "the leader", func() bool { return false })
	if ft.msg != "timed out after 10ms waiting for the leader" {
		t.Fatalf("EventuallyWithin failure = %q", ft.msg)
	}
	ft.msg = ""
	Eventually(ft, "nothing", func() bool { return true })
	EventuallyNil(ft, "nothing", func() error { return nil })
	if ft.msg != "" {
		t.Fatalf("met conditions failed the test: %q", ft.msg)
	}
}

func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "%d\n", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "\n"); n != 800 {
		t.Fatalf("%d lines, want 800", n)
	}
	b.Reset()
	if b.String() != "" {
		t.Fatal("Reset kept data")
	}
}

func TestWriteAtomic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	WriteAtomic(t, path, "a")
	WriteAtomic(t, path, "b")
	if b, err := os.ReadFile(path); err != nil || string(b) != "b" {
		t.Fatalf("content %q, %v", b, err)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("temporary file left: %v", err)
	}
}

func TestGet(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		fmt.Fprint(w, r.URL.Path)
	}))
	if code, body := Get(srv.URL + "/readyz"); code != http.StatusTeapot || body != "/readyz" {
		t.Fatalf("Get = %d %q", code, body)
	}
	srv.Close()
	if code, body := Get(srv.URL); code != 0 || !strings.Contains(body, "refused") {
		t.Fatalf("Get of a closed server = %d %q, want 0 and the error", code, body)
	}
}

func TestMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "t_total"}, []string{"result", "kind"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "t_gauge"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "t_seconds"})
	reg.MustRegister(c, g, h)
	c.WithLabelValues("ok", "a").Add(3)
	c.WithLabelValues("error", "a").Add(2)
	g.Set(-1.5)
	h.Observe(1)
	h.Observe(2)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
		ok     bool
	}{
		{"t_total", []string{"result", "error"}, 2, true},
		{"t_total", []string{"result", "ok", "kind", "a"}, 3, true},
		{"t_total", []string{"result", "ok", "kind", "b"}, 0, false},
		{"t_total", []string{"result", "ok", "other", ""}, 3, true}, // absent is empty, as in PromQL
		{"t_gauge", nil, -1.5, true},
		{"t_seconds", nil, 2, true},
		{"t_missing", nil, 0, false},
	} {
		if v, ok := Metric(t, reg, tc.name, tc.labels...); v != tc.want || ok != tc.ok {
			t.Errorf("Metric(%s, %q) = %v, %v; want %v, %v", tc.name, tc.labels, v, ok, tc.want, tc.ok)
		}
	}
}
