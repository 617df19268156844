package otelscraper

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/promotlp"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestStartsFile: the state file round-trips; a damaged, truncated, padded or
// oversized file is an error (ignored by the scraper), never a crash.
func TestStartsFile(t *testing.T) {
	dir := t.TempDir()
	path := startsPath(dir, "job|url")
	starts := []promotlp.SeriesStart{{ID: 1, StartNs: 2, Last: 3.5}, {ID: 0xffffffffffffffff, StartNs: 1 << 62, Last: -1}}
	if err := writeStarts(path, starts); err != nil {
		t.Fatal(err)
	}
	got, err := readStarts(path)
	if err != nil || !slices.Equal(got, starts) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if got, err := readStarts(filepath.Join(dir, "missing")); got != nil || err != nil {
		t.Errorf("missing file: %v %v", got, err)
	}
	good := encodeStarts(starts)
	for name, b := range map[string][]byte{
		"flipped bit": func() []byte { b := slices.Clone(good); b[20] ^= 1; return b }(),
		"truncated":   good[:len(good)-5],
		"padded":      append(slices.Clone(good), 0),
		"empty":       nil,
		"other magic": append([]byte("XXXXXXXX"), good[8:]...),
		"huge count":  func() []byte { b := slices.Clone(good); b[11] = 0xff; return b }(),
	} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readStarts(path); !errors.Is(err, errCorruptStarts) {
			t.Errorf("%s: %v, want errCorruptStarts", name, err)
		}
	}
	old := filepath.Join(dir, startsPrefix+"old"+startsSuffix)
	if err := os.WriteFile(old, good, 0o600); err != nil {
		t.Fatal(err)
	}
	removeStaleStarts(dir, time.Now().Add(staleStartsAge+time.Hour))
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale state file kept: %v", err)
	}
}

func FuzzDecodeStarts(f *testing.F) {
	f.Add(encodeStarts([]promotlp.SeriesStart{{ID: 1, StartNs: 2, Last: 3}}))
	f.Add([]byte(startsMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		starts, err := decodeStarts(b)
		if err == nil && !slices.Equal(decodeMust(t, encodeStarts(starts)), starts) {
			t.Fatal("decoded state does not round-trip")
		}
	})
}

func decodeMust(t *testing.T, b []byte) []promotlp.SeriesStart {
	s, err := decodeStarts(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBinaryRestartKeepsStartTimes stops the built binary with SIGTERM and
// starts it again: a counter that kept rising while it was down keeps its
// start time (no reset downstream), a counter that went down meanwhile gets a
// new one; a damaged state file is ignored with a log line.
func TestBinaryRestartKeepsStartTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	bin := testbin.Build(t, "otel-shoot-scraper")
	var rising, resetting atomic.Int64
	resetting.Store(1000)
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "# TYPE rising_total counter\nrising_total %d\n# TYPE resetting_total counter\nresetting_total %d\n",
			rising.Add(1), resetting.Add(1))
	}))
	defer target.Close()
	recv := otlptest.NewGRPC(t)
	queue := filepath.Join(t.TempDir(), "queue")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--discovery.kubernetes=false", "--node.name=n1",
			"--target.static=job=app,url="+target.URL+"/metrics,interval=1s",
			"--otlp.endpoint="+recv.Addr(), "--otlp.insecure",
			"--queue.dir="+queue, "--web.listen-address=", "--log.level=error")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	// startsOf returns the start times of metric's points received after
	// time from, in order.
	startsOf := func(metric string, from time.Time) []uint64 {
		var out []uint64
		for _, p := range recv.DataPoints() {
			if p.Metric == metric && p.TimeUnixNano >= uint64(from.UnixNano()) {
				out = append(out, p.StartTimeUnixNano)
			}
		}
		return out
	}
	waitPoints := func(metric string, from time.Time, n int) []uint64 {
		var s []uint64
		if !testkit.Until(45*time.Second, func() bool { s = startsOf(metric, from); return len(s) >= n }) {
			t.Fatalf("%d points of %s since %s, want %d", len(s), metric, from, n)
		}
		return s
	}

	t0 := time.Now()
	first := start()
	before := waitPoints("rising_total", t0, 2)
	resetBefore := waitPoints("resetting_total", t0, 2)
	testbin.Terminate(t, first)
	rising.Add(5)       // kept counting while the scraper was down
	resetting.Store(10) // restarted while the scraper was down

	t1 := time.Now()
	second := start()
	after := waitPoints("rising_total", t1, 2)
	resetAfter := waitPoints("resetting_total", t1, 1)
	if after[0] != before[0] {
		t.Errorf("rising counter: start time %d after the restart, %d before: a reset downstream", after[0], before[0])
	}
	if resetAfter[0] == resetBefore[0] || resetAfter[0] < uint64(t1.UnixNano()) {
		t.Errorf("counter reset while down: start time %d after the restart, %d before, restart at %d: want a new one", resetAfter[0], resetBefore[0], t1.UnixNano())
	}
	testbin.Terminate(t, second)

	// A damaged state file: ignored, every series starts anew.
	files, _ := filepath.Glob(filepath.Join(queue, startsPrefix+"*"+startsSuffix))
	if len(files) != 1 {
		t.Fatalf("state files %v, want one", files)
	}
	if err := os.WriteFile(files[0], []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	t2 := time.Now()
	third := start()
	defer testbin.Terminate(t, third)
	if got := waitPoints("rising_total", t2, 1); got[0] < uint64(t2.UnixNano()) {
		t.Errorf("damaged state file: start time %d before the start at %d", got[0], t2.UnixNano())
	}
}
