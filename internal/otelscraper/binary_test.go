package otelscraper

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlptest"
	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestBinaryRestartKeepsQueue runs the built binary while the OTLP receiver is
// down, stops it with data queued on disk, starts it again once the receiver is
// back: every scrape of the first run arrives.
func TestBinaryRestartKeepsQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	dir := t.TempDir()
	bin := testbin.Build(t, "otel-shoot-scraper")
	// Bad flags: exit 2, every problem named.
	testbin.UsageError(t, bin, []string{"--discovery.kubernetes=false", "--otlp.protocol=carrier-pigeon", "--target.static=nonsense"}, "--target.static")

	// The target numbers its scrapes. Once closed it answers 503 and counts
	// refusals: a refusal means the daemon finished the scrape before it (one
	// target's scrapes are sequential), so stopping after one loses no scrape in
	// flight.
	var scrapes, refused atomic.Int64
	var closed atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if closed.Load() {
			refused.Add(1)
			http.Error(w, "closed", http.StatusServiceUnavailable)
			return
		}
		n := scrapes.Add(1)
		fmt.Fprintf(w, "# TYPE scrape_number gauge\nscrape_number %d\n", n)
	}))
	defer target.Close()
	recv := otlptest.NewHTTP(t)
	recv.Stop() // down from the start
	queue := filepath.Join(dir, "queue")
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "--discovery.kubernetes=false", "--node.name=n1",
			"--target.static=job=app,url="+target.URL+"/metrics,interval=2s", // the timeout too: generous under load
			"--otlp.protocol=http/protobuf", "--otlp.endpoint="+recv.URL(), "--otlp.insecure",
			"--otlp.retry.initial=100ms", "--otlp.retry.max=500ms",
			"--queue.dir="+queue, "--web.listen-address=", "--log.level=error")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	stop := func(cmd *exec.Cmd) { testbin.Terminate(t, cmd) }

	first := start()
	testkit.Eventually(t, "three scrapes", func() bool { return scrapes.Load() >= 3 })
	closed.Store(true)
	testkit.Eventually(t, "a scrape after the target closed", func() bool { return refused.Load() > 0 })
	stop(first)
	queued := scrapes.Load()

	recv.Restart()
	second := start()
	defer stop(second)
	err := testkit.Poll(45*time.Second, func() error {
		got := map[float64]bool{}
		for _, p := range recv.DataPoints() {
			if p.Metric == "scrape_number" {
				if got[p.Value] {
					t.Fatalf("scrape %v delivered twice", p.Value)
				}
				got[p.Value] = true
			}
		}
		var missing []int64
		for i := int64(1); i <= queued; i++ {
			if !got[float64(i)] {
				missing = append(missing, i)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("scrapes %v of the %d of the first run are missing (%d arrived)", missing, queued, len(got))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
}
