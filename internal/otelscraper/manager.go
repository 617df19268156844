package otelscraper

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/trellis-garden/trellis/internal/promotlp"
)

// manager runs one scrape loop per target and follows changes of the target set:
// new targets start, vanished ones stop, unchanged ones keep their state (start
// times of cumulative series).
type manager struct {
	rules func() *Rules
	sink  Sink
	chunk promotlp.ChunkOptions // zero: the scraper's default
	// report: every scrape adds up, scrape_duration_seconds, ... (Prometheus'
	// report series); on in the daemon.
	report bool
	// acceptGzip asks targets for gzip-compressed responses.
	acceptGzip bool
	// stateDir holds the start-time state files (empty: none), written every
	// saveEvery and at the end of each scrape loop.
	stateDir  string
	saveEvery time.Duration
	m         *metrics
	log       *slog.Logger
	attrs     map[string]string

	mu      sync.Mutex
	running map[string]*runningTarget
	wg      sync.WaitGroup
	// noTargets: the last sync had no target (warned once per change).
	noTargets bool
}

type runningTarget struct {
	target Target
	cancel context.CancelFunc
}

func newManager(rules func() *Rules, sink Sink, m *metrics, log *slog.Logger, attrs map[string]string) *manager {
	return &manager{rules: rules, sink: sink, m: m, log: log, attrs: attrs, running: map[string]*runningTarget{}}
}

// sync makes the running scrape loops match targets.
func (mg *manager) sync(ctx context.Context, targets []Target) {
	mg.mu.Lock()
	defer mg.mu.Unlock()
	want := make(map[string]Target, len(targets))
	for _, t := range targets {
		want[t.key()] = t
	}
	for k, rt := range mg.running {
		if _, ok := want[k]; !ok {
			rt.cancel()
			mg.m.forget(rt.target)
			delete(mg.running, k)
			mg.log.Info("target removed", "job", rt.target.Job, "target", rt.target.URL)
		}
	}
	for k, t := range want {
		if _, ok := mg.running[k]; ok {
			continue
		}
		s, err := newScraper(t, mg.rules, mg.sink, mg.m, mg.log, mg.attrs)
		if err != nil {
			mg.log.Error("cannot scrape target", "job", t.Job, "target", t.URL, "err", err.Error())
			continue
		}
		if mg.chunk != (promotlp.ChunkOptions{}) {
			s.chunk = mg.chunk
		}
		s.report = mg.report
		s.acceptGzip = mg.acceptGzip
		if mg.stateDir != "" {
			s.startsFile, s.saveEvery = startsPath(mg.stateDir, k), mg.saveEvery
		}
		tctx, cancel := context.WithCancel(ctx)
		mg.running[k] = &runningTarget{target: t, cancel: cancel}
		mg.wg.Add(1)
		go func() {
			defer mg.wg.Done()
			s.run(tctx, spread(k, t.Interval))
		}()
		mg.log.Info("target added", "job", t.Job, "target", t.URL, "interval", t.Interval.String())
	}
	if len(targets) == 0 && !mg.noTargets {
		mg.log.Warn("no targets to scrape", "hint", "check the node address, the enabled endpoints and the pod annotations")
	}
	mg.noTargets = len(targets) == 0
	mg.m.discovered.Set(float64(len(targets)))
	counts := map[string]int{}
	for _, rt := range mg.running {
		counts[rt.target.Job]++
	}
	mg.m.targets.Reset()
	for job, n := range counts {
		mg.m.targets.WithLabelValues(job).Set(float64(n))
	}
}

// wait blocks until every scrape loop has ended (after ctx is cancelled).
func (mg *manager) wait() { mg.wg.Wait() }

// spread gives each target a stable offset within its interval.
func spread(key string, interval time.Duration) time.Duration {
	if interval <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(key))
	return time.Duration(h.Sum64() % uint64(interval))
}
