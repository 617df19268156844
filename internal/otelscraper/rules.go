package otelscraper

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// Rules are compiled filter rules: one JobRules per job named in the rules, and a
// default for every other job. Rules are immutable and safe for concurrent use;
// a reload builds new Rules. Build them with ParseRules or DefaultRules.
//
// The rules document (YAML, strict: unknown fields are errors):
//
//	default:            # jobs without an entry under jobs; absent: keep everything
//	  <job rules>
//	jobs:
//	  <job name>:       # kubelet, cadvisor, kubelet-resource, node-exporter, pods, or a static job
//	    keep: [regex]   # metric family names to keep; empty or absent: all
//	    drop: [regex]   # metric family names to drop, applied after keep
//	    labelFilters:   # a series is kept only if every filter agrees (on the labels before dropLabels)
//	    - label: name   # a missing label has the value ""
//	      regex: re     # on the label's value (required, "" matches only a missing or empty label)
//	      action: keep  # keep (default): keep the series only if regex matches; drop: drop it if it matches
//	    dropLabels: [regex]      # label names removed from every series of the job
//	    constLabels: {name: value} # added to every series unless it has the label already
//	    seriesLimit: 0           # series per target and scrape; over it the rest is dropped; 0: no limit
//
// Every regex is RE2 (Go regexp syntax, as Prometheus' relabelling) and fully
// anchored: "node_load1" matches only node_load1, "node_memory_.+" the node_memory_
// family prefix. Family names are the names of the exposition's # TYPE lines: a
// histogram's family is its base name (kubelet_image_pull_duration_seconds, not
// ..._bucket); a counter written as foo_total in the rules also matches when the
// target serves OpenMetrics, whose family name is foo.
//
// A job entry replaces the default entirely (no inheritance), and a rules document
// replaces the built-in defaults entirely: start from DefaultRulesYAML.
type Rules struct {
	def  *JobRules
	jobs map[string]*JobRules
}

// Job returns the rules of job: its own entry, or the default. Never nil.
func (r *Rules) Job(name string) *JobRules {
	if r == nil {
		return keepAllJob
	}
	if j, ok := r.jobs[name]; ok {
		return j
	}
	return r.def
}

// Jobs returns the job names with an entry of their own, sorted.
func (r *Rules) Jobs() []string {
	if r == nil {
		return nil
	}
	names := make([]string, 0, len(r.jobs))
	for name := range r.jobs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// keepAllJob is the rules of a job that nothing restricts.
var keepAllJob = &JobRules{name: "default"}

// JobRules are the compiled rules of one job. Safe for concurrent use: the only
// mutable state is a bounded cache of decisions per family and label name.
type JobRules struct {
	name string

	keep, drop matcher
	families   decisionCache // family name -> kept

	filters []labelFilter

	dropExact  map[string]struct{}
	dropRegexp *regexp.Regexp
	labelNames decisionCache // label name -> dropped (only for dropRegexp)

	constLabels []promtext.Label
	seriesLimit int
}

// labelFilter keeps (or with drop, removes) a series by the value of one label.
type labelFilter struct {
	label string
	value matcher
	drop  bool
}

// Name is the job name of the entry ("default" for the default entry).
func (j *JobRules) Name() string {
	if j == nil {
		return keepAllJob.name
	}
	return j.name
}

// Keep decides whether the sample s is exported. When it is, Keep removes the
// job's dropLabels from s.Labels in place (the slice is shortened, its backing
// array reused). Keep does not add the ConstLabels: the converter adds those.
//
// Keep allocates nothing in steady state: the keep/drop decision is computed once
// per family name and cached (bounded; beyond the bound it is recomputed, still
// without allocating), label values and names are compared without copies.
func (j *JobRules) Keep(s *promtext.Sample) bool {
	if j == nil {
		return true
	}
	if !j.keepFamily(s) {
		return false
	}
	for i := range j.filters {
		f := &j.filters[i]
		if f.value.match(labelValue(s.Labels, f.label)) == f.drop {
			return false
		}
	}
	if len(j.dropExact) > 0 || j.dropRegexp != nil {
		s.Labels = j.dropLabels(s.Labels)
	}
	return true
}

// ConstLabels are added to every series of the job whose labels do not have the
// name already, sorted by name. The slice is shared: do not modify it.
func (j *JobRules) ConstLabels() []promtext.Label {
	if j == nil {
		return nil
	}
	return j.constLabels
}

// SeriesLimit is the maximum number of series one target of the job may export
// per scrape; 0 means no limit. The converter drops series beyond it and reports
// them.
func (j *JobRules) SeriesLimit() int {
	if j == nil {
		return 0
	}
	return j.seriesLimit
}

// keepFamily applies keep and drop to the sample's family, cached per family.
func (j *JobRules) keepFamily(s *promtext.Sample) bool {
	if j.keep.empty() && j.drop.empty() {
		return true
	}
	family := s.Family
	if len(family) == 0 {
		family = s.Name
	}
	if kept, ok := j.families.get(family); ok {
		return kept
	}
	kept := j.decideFamily(family, s.Type == promtext.TypeCounter)
	j.families.put(family, kept)
	return kept
}

// decideFamily is keep-then-drop on a family name. A counter family is also
// matched with the suffix _total: OpenMetrics names the family of foo_total "foo",
// the classic text format "foo_total", and rules are written for the latter.
func (j *JobRules) decideFamily(family []byte, counter bool) bool {
	matches := func(m *matcher) bool {
		if m.match(family) {
			return true
		}
		if !counter || len(family) == 0 || hasSuffix(family, "_total") {
			return false
		}
		// Cache misses only: allocating here is fine.
		return m.match(append(slices.Clip(family), "_total"...))
	}
	if !j.keep.empty() && !matches(&j.keep) {
		return false
	}
	return !matches(&j.drop)
}

func hasSuffix(b []byte, suffix string) bool {
	return len(b) >= len(suffix) && string(b[len(b)-len(suffix):]) == suffix
}

// dropLabels removes the labels named by dropLabels, in place.
func (j *JobRules) dropLabels(labels []promtext.Label) []promtext.Label {
	out := labels[:0]
	for _, l := range labels {
		if !j.dropsLabel(l.Name) {
			out = append(out, l)
		}
	}
	return out
}

func (j *JobRules) dropsLabel(name []byte) bool {
	if _, ok := j.dropExact[string(name)]; ok {
		return true
	}
	if j.dropRegexp == nil {
		return false
	}
	if dropped, ok := j.labelNames.get(name); ok {
		return dropped
	}
	dropped := j.dropRegexp.Match(name)
	j.labelNames.put(name, dropped)
	return dropped
}

// labelValue is the value of the label called name, or nil when there is none.
func labelValue(labels []promtext.Label, name string) []byte {
	for i := range labels {
		if string(labels[i].Name) == name {
			return labels[i].Value
		}
	}
	return nil
}

// matcher matches whole strings against a set of regexes: literal ones through a
// map, the others through one anchored alternation.
type matcher struct {
	literals map[string]struct{}
	re       *regexp.Regexp
}

func (m *matcher) empty() bool { return len(m.literals) == 0 && m.re == nil }

func (m *matcher) match(b []byte) bool {
	if _, ok := m.literals[string(b)]; ok {
		return true
	}
	return m.re != nil && m.re.Match(b)
}

// decisionCache remembers a yes/no per name. It is bounded, because family and
// label names come from targets (annotated pods are anyone's): once full it stops
// learning and callers recompute.
type decisionCache struct {
	mu sync.RWMutex
	m  map[string]bool
}

// maxCachedDecisions bounds a decisionCache: far above the families of a kubelet
// or node-exporter (a few hundred), small enough to be harmless when a target
// invents names.
const maxCachedDecisions = 4096

func (c *decisionCache) get(name []byte) (decision, ok bool) {
	c.mu.RLock()
	decision, ok = c.m[string(name)]
	c.mu.RUnlock()
	return decision, ok
}

func (c *decisionCache) put(name []byte, decision bool) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]bool)
	}
	if len(c.m) < maxCachedDecisions {
		c.m[string(name)] = decision
	}
	c.mu.Unlock()
}

// RulesError lists every problem found in a rules document, each as
// "path: problem", e.g. "jobs.cadvisor.keep[2]: error parsing regexp: ...".
type RulesError struct {
	Problems []string
}

func (e *RulesError) Error() string {
	return "invalid filter rules: " + strings.Join(e.Problems, "; ")
}
