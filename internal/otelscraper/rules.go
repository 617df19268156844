package otelscraper

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

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

// ParseRules parses and compiles a rules document (see Rules). It reports all
// problems at once, as a *RulesError: unknown fields, wrong types, invalid
// regexes, label names and limits, each with its path. An empty document is an
// error; "{}" keeps everything.
func ParseRules(data []byte) (*Rules, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		// One line: the YAML library lists several errors on indented lines.
		return nil, &RulesError{Problems: []string{strings.Join(strings.Fields(err.Error()), " ")}}
	}
	var doc any
	if err := json.UnmarshalCaseSensitivePreserveInts(js, &doc); err != nil {
		return nil, &RulesError{Problems: []string{err.Error()}}
	}
	p := &parser{}
	if doc == nil {
		p.add("", "the document is empty (use {} to keep everything)")
		return nil, p.err()
	}
	root, ok := p.object("", doc)
	if !ok {
		return nil, p.err()
	}
	p.unknownFields("", root, "default", "jobs")
	r := &Rules{def: keepAllJob, jobs: map[string]*JobRules{}}
	if v, ok := root["default"]; ok {
		r.def = p.job("default", "default", v)
	}
	if v, ok := root["jobs"]; ok && v != nil {
		jobs, _ := p.object("jobs", v)
		for _, name := range sortedObjectKeys(jobs) {
			path := "jobs" + pathKey(name)
			if name == "" {
				p.add(path, "a job name must not be empty")
				continue
			}
			r.jobs[name] = p.job(path, name, jobs[name])
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// parser walks the decoded document and collects problems.
type parser struct {
	problems []string
}

func (p *parser) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	p.problems = append(p.problems, msg)
}

func (p *parser) err() error {
	if len(p.problems) == 0 {
		return nil
	}
	return &RulesError{Problems: p.problems}
}

// job compiles one job entry; null is an entry without rules (keep everything).
func (p *parser) job(path, name string, v any) *JobRules {
	j := &JobRules{name: name}
	if v == nil {
		return j
	}
	m, ok := p.object(path, v)
	if !ok {
		return j
	}
	p.unknownFields(path, m, "keep", "drop", "labelFilters", "dropLabels", "constLabels", "seriesLimit")
	j.keep = p.matcher(path+".keep", m["keep"])
	j.drop = p.matcher(path+".drop", m["drop"])
	j.filters = p.labelFilters(path+".labelFilters", m["labelFilters"])
	p.dropLabels(path+".dropLabels", m["dropLabels"], j)
	j.constLabels = p.constLabels(path+".constLabels", m["constLabels"])
	j.seriesLimit = p.seriesLimit(path+".seriesLimit", m["seriesLimit"])
	return j
}

// matcher compiles a list of anchored regexes.
func (p *parser) matcher(path string, v any) matcher {
	literals, re := p.patterns(path, v)
	return matcher{literals: literals, re: re}
}

// patterns compiles a list of anchored regexes: plain names go into a set (a map
// lookup), the others into one alternation.
func (p *parser) patterns(path string, v any) (map[string]struct{}, *regexp.Regexp) {
	var literals map[string]struct{}
	var alternatives []string
	for i, expr := range p.stringList(path, v) {
		lit, ok := p.checkRegexp(fmt.Sprintf("%s[%d]", path, i), expr, false)
		switch {
		case !ok:
		case lit != nil:
			if literals == nil {
				literals = map[string]struct{}{}
			}
			literals[*lit] = struct{}{}
		default:
			alternatives = append(alternatives, "(?:"+expr+")")
		}
	}
	if len(alternatives) == 0 {
		return literals, nil
	}
	return literals, regexp.MustCompile(anchor(strings.Join(alternatives, "|")))
}

// checkRegexp checks one regex. It returns the literal string when the regex matches
// exactly one string (a plain name), so callers can look it up in a map.
func (p *parser) checkRegexp(path, expr string, allowEmpty bool) (literal *string, ok bool) {
	if expr == "" && !allowEmpty {
		p.add(path, "empty regex")
		return nil, false
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		p.add(path, "%s", err.Error())
		return nil, false
	}
	if prefix, complete := re.LiteralPrefix(); complete {
		return &prefix, true
	}
	return nil, true
}

func (p *parser) labelFilters(path string, v any) []labelFilter {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		p.add(path, "must be a list of {label, regex, action}, got %s", kind(v))
		return nil
	}
	filters := make([]labelFilter, 0, len(list))
	for i, item := range list {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		m, ok := p.object(ipath, item)
		if !ok {
			continue
		}
		p.unknownFields(ipath, m, "label", "regex", "action")
		f := labelFilter{}
		valid := true
		if label, ok := p.str(ipath+".label", m["label"], true); ok {
			if err := checkLabelName(label); err != nil {
				p.add(ipath+".label", "%s", err.Error())
				valid = false
			}
			f.label = label
		} else {
			valid = false
		}
		if expr, ok := p.str(ipath+".regex", m["regex"], true); ok {
			lit, ok := p.checkRegexp(ipath+".regex", expr, true)
			switch {
			case !ok:
				valid = false
			case lit != nil:
				f.value.literals = map[string]struct{}{*lit: {}}
			default:
				f.value.re = regexp.MustCompile(anchor(expr))
			}
		} else {
			valid = false
		}
		if m["action"] != nil {
			switch action, _ := p.str(ipath+".action", m["action"], false); action {
			case "keep":
			case "drop":
				f.drop = true
			default:
				p.add(ipath+".action", "must be keep or drop, got %q", action)
				valid = false
			}
		}
		if valid {
			filters = append(filters, f)
		}
	}
	return filters
}

func (p *parser) dropLabels(path string, v any, j *JobRules) {
	j.dropExact, j.dropRegexp = p.patterns(path, v)
}

func (p *parser) constLabels(path string, v any) []promtext.Label {
	if v == nil {
		return nil
	}
	m, ok := p.object(path, v)
	if !ok {
		return nil
	}
	var labels []promtext.Label
	for _, name := range sortedObjectKeys(m) {
		lpath := path + pathKey(name)
		if err := checkLabelName(name); err != nil {
			p.add(lpath, "%s", err.Error())
			continue
		}
		value, ok := p.str(lpath, m[name], false)
		switch {
		case !ok:
			continue
		case value == "":
			p.add(lpath, "empty value (an empty label is no label)")
			continue
		case !utf8.ValidString(value):
			p.add(lpath, "value is not valid UTF-8")
			continue
		}
		labels = append(labels, promtext.Label{Name: []byte(name), Value: []byte(value)})
	}
	return labels
}

// maxSeriesLimit keeps a limit within what fits any int.
const maxSeriesLimit = 1 << 31

func (p *parser) seriesLimit(path string, v any) int {
	switch n := v.(type) {
	case nil:
		return 0
	case int64:
		if n < 0 || n > maxSeriesLimit {
			p.add(path, "must be between 0 (no limit) and %d, got %d", maxSeriesLimit, n)
			return 0
		}
		return int(n)
	default:
		p.add(path, "must be a whole number, got %s", kind(v))
		return 0
	}
}

// object expects a mapping.
func (p *parser) object(path string, v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		p.add(path, "must be a mapping, got %s", kind(v))
	}
	return m, ok
}

// stringList expects a list of strings; null is an empty list.
func (p *parser) stringList(path string, v any) []string {
	if v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		p.add(path, "must be a list of strings, got %s", kind(v))
		return nil
	}
	out := make([]string, 0, len(list))
	for i, item := range list {
		if s, ok := p.str(fmt.Sprintf("%s[%d]", path, i), item, false); ok {
			out = append(out, s)
		}
	}
	return out
}

// str expects a string. YAML's unquoted yes, no, on, off and numbers are not
// strings: quote them.
func (p *parser) str(path string, v any, required bool) (string, bool) {
	switch s := v.(type) {
	case string:
		return s, true
	case nil:
		if required {
			p.add(path, "required")
		} else {
			p.add(path, "must be a string, got null")
		}
		return "", false
	default:
		p.add(path, "must be a string, got %s (quote it)", kind(v))
		return "", false
	}
}

func (p *parser) unknownFields(path string, m map[string]any, known ...string) {
	for _, name := range sortedObjectKeys(m) {
		if !slices.Contains(known, name) {
			p.add(path+pathKey(name), "unknown field (known: %s)", strings.Join(known, ", "))
		}
	}
}

// kind names a decoded YAML value's type for messages.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64, float64:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

// pathKey appends a mapping key to a path: ".name", or ["name"] when the name
// would be ambiguous after a dot.
func pathKey(name string) string {
	for _, r := range name {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return "[" + strconv.Quote(name) + "]"
		}
	}
	if name == "" {
		return `[""]`
	}
	return "." + name
}

// anchor makes a regex match whole strings, as Prometheus' relabel regexes do.
func anchor(expr string) string { return "^(?:" + expr + ")$" }

// checkLabelName accepts Prometheus label names that are not reserved (__*).
func checkLabelName(name string) error {
	if name == "" {
		return errors.New("empty label name")
	}
	for i, r := range name {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return fmt.Errorf("invalid label name %q: want [a-zA-Z_][a-zA-Z0-9_]*", name)
		}
	}
	if strings.HasPrefix(name, "__") {
		return fmt.Errorf("label name %q is reserved (starts with __)", name)
	}
	return nil
}

// sortedObjectKeys returns a decoded mapping's keys, sorted, so problems come in a
// stable order.
func sortedObjectKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
