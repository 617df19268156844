package otelscraper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultRulesFilePollInterval is how often --rules.file is read for changes.
const DefaultRulesFilePollInterval = 5 * time.Second

// maxRulesFile bounds what is read of a rules file.
const maxRulesFile = 1 << 20

// FileRuleSource keeps the filter rules of a file current without a restart
// (outside Kubernetes): the file is read every poll interval and on SIGHUP.
// Rules that do not parse, and a file that cannot be read, are reported (a log
// line once per distinct problem, rules_reload_total{result="error"},
// rules_last_reload_success 0) and the last good rules stay in use, as with
// the ConfigMap.
type FileRuleSource struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	metrics  *ruleMetrics
	current  atomic.Pointer[Rules]
	now      func() time.Time

	last     []byte // the content of the rules in use
	reported string // the last problem logged
}

// NewFileRuleSource reads and parses path: a file that is missing or invalid at
// start is an error (there are no last good rules yet). reg may be nil.
func NewFileRuleSource(path string, interval time.Duration, log *slog.Logger, reg prometheus.Registerer, metricNamespace string) (*FileRuleSource, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if interval <= 0 {
		interval = DefaultRulesFilePollInterval
	}
	data, err := readRulesFile(path)
	if err != nil {
		return nil, err
	}
	rules, err := ParseRules(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &FileRuleSource{path: path, interval: interval, log: log, metrics: newRuleMetrics(reg, metricNamespace), now: time.Now, last: data}
	s.current.Store(rules)
	s.metrics.applied(s.now(), false)
	return s, nil
}

// Current returns the rules in use; never nil.
func (s *FileRuleSource) Current() *Rules { return s.current.Load() }

// Run polls the file and reloads it on SIGHUP until ctx ends.
func (s *FileRuleSource) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.reload(false)
		case <-hup:
			s.log.Info("reloading filter rules on SIGHUP", "file", s.path)
			s.reload(true)
		}
	}
}

// reload reads the file and applies it when its content changed (or always,
// when forced by SIGHUP).
func (s *FileRuleSource) reload(force bool) {
	data, err := readRulesFile(s.path)
	if err == nil && !force && bytes.Equal(data, s.last) {
		if s.reported != "" { // a problem that went away without a change: the rules in use are the file's
			s.reported = ""
			s.metrics.lastSuccess.Set(1)
		}
		return
	}
	var rules *Rules
	if err == nil {
		rules, err = ParseRules(data)
	}
	if err != nil {
		msg := err.Error()
		if msg != s.reported || force {
			s.reported = msg
			s.log.Error("invalid filter rules, keeping the last good rules", "file", s.path, "err", msg)
			s.metrics.failed()
		}
		return
	}
	s.reported = ""
	s.last = data
	s.log.Info("filter rules applied", "file", s.path, "jobs", rules.Jobs())
	s.metrics.applied(s.now(), false)
	s.current.Store(rules)
}

func readRulesFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxRulesFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxRulesFile {
		return nil, errors.New(path + ": larger than 1 MiB")
	}
	return data, nil
}
