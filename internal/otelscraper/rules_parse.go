package otelscraper

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// The rules document's schema. The YAML is converted to JSON (sigs.k8s.io/yaml,
// strict: duplicate keys are errors) and decoded into these types with
// sigs.k8s.io/json, case-sensitive and rejecting unknown fields. Every field is a
// value[T]: it decodes its JSON value into T when the value has T's kind, and
// otherwise remembers what it got instead of stopping the decode, so a document
// with several problems gets them all reported at once, each with its path.
type rulesSpec struct {
	Default value[jobSpec]                   `json:"default"`
	Jobs    value[map[string]value[jobSpec]] `json:"jobs"`
}

type jobSpec struct {
	Keep         value[[]value[string]]          `json:"keep"`
	Drop         value[[]value[string]]          `json:"drop"`
	LabelFilters value[[]value[labelFilterSpec]] `json:"labelFilters"`
	DropLabels   value[[]value[string]]          `json:"dropLabels"`
	ConstLabels  value[map[string]value[string]] `json:"constLabels"`
	SeriesLimit  value[int64]                    `json:"seriesLimit"`
}

type labelFilterSpec struct {
	Label  value[string] `json:"label"`
	Regex  value[string] `json:"regex"`
	Action value[string] `json:"action"`
}

// value is one decoded field of the rules document.
type value[T any] struct {
	V       T
	present bool     // the document had the field (null included)
	null    bool     // ... and it was null
	got     string   // the field had the wrong kind: what it was ("a list"); V is zero
	unknown []string // T is a struct: the document's fields that T does not have
	err     error    // any other decoding problem (none is expected)
}

// ok reports whether the field holds a value of the right kind (not null).
func (v *value[T]) ok() bool { return v.present && !v.null && v.got == "" && v.err == nil }

// UnmarshalJSON never fails: problems are kept in v and reported by the compiler
// with the field's path. Structs are decoded strictly (unknown fields recorded).
func (v *value[T]) UnmarshalJSON(b []byte) error {
	*v = value[T]{present: true}
	b = bytes.TrimSpace(b)
	got := jsonKind(b)
	if got == "null" {
		v.null = true
		return nil
	}
	want := expectedKind(reflect.TypeFor[T]())
	if got != want {
		v.got = got
		return nil
	}
	strict, err := json.UnmarshalStrict(b, &v.V, json.DisallowUnknownFields)
	if err != nil {
		var zero T
		v.V = zero
		if want == "a number" {
			// PreserveInts: a fraction or a number beyond int64.
			v.got = "a number"
		} else {
			v.err = err
		}
		return nil
	}
	for _, e := range strict {
		var fe json.FieldError
		if errors.As(e, &fe) {
			v.unknown = append(v.unknown, fe.FieldPath())
		} else {
			v.err = e
		}
	}
	sort.Strings(v.unknown)
	return nil
}

// jsonKind names the kind of a JSON value for messages, by its first byte.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case 'n':
		return "null"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case '[':
		return "a list"
	case '{':
		return "a mapping"
	}
	return "a number"
}

// expectedKind is the JSON kind that decodes into t.
func expectedKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "a number"
}

// fieldNames lists the JSON names of a schema struct's fields, in order.
func fieldNames[T any]() []string {
	t := reflect.TypeFor[T]()
	names := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
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
	var doc value[rulesSpec]
	if err := doc.UnmarshalJSON(js); err != nil { // never, but do not rely on it
		return nil, &RulesError{Problems: []string{err.Error()}}
	}
	p := &parser{}
	if doc.null {
		p.add("", "the document is empty (use {} to keep everything)")
		return nil, p.err()
	}
	root, ok := mapping(p, "", &doc)
	if !ok {
		return nil, p.err()
	}
	r := &Rules{def: keepAllJob, jobs: map[string]*JobRules{}}
	if root.Default.present {
		r.def = p.job("default", "default", &root.Default)
	}
	if root.Jobs.present && !root.Jobs.null {
		jobs, _ := mapping(p, "jobs", &root.Jobs)
		for _, name := range slices.Sorted(maps.Keys(jobs)) {
			path := "jobs" + pathKey(name)
			if name == "" {
				p.add(path, "a job name must not be empty")
				continue
			}
			spec := jobs[name]
			r.jobs[name] = p.job(path, name, &spec)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return r, nil
}

// parser compiles the decoded document and collects problems.
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

// mapping expects a mapping (a struct or map); it reports unknown fields of a
// struct. Null is not a mapping.
func mapping[T any](p *parser, path string, v *value[T]) (T, bool) {
	switch {
	case v.err != nil:
		p.add(path, "%s", v.err.Error())
		return v.V, false
	case v.null || v.got != "":
		got := v.got
		if v.null {
			got = "null"
		}
		p.add(path, "must be a mapping, got %s", got)
		return v.V, false
	}
	if len(v.unknown) > 0 {
		known := strings.Join(fieldNames[T](), ", ")
		for _, name := range v.unknown {
			p.add(strings.TrimPrefix(path+pathKey(name), "."), "unknown field (known: %s)", known)
		}
	}
	return v.V, true
}

// job compiles one job entry; null is an entry without rules (keep everything).
func (p *parser) job(path, name string, v *value[jobSpec]) *JobRules {
	j := &JobRules{name: name}
	if v.null {
		return j
	}
	spec, ok := mapping(p, path, v)
	if !ok {
		return j
	}
	j.keep = p.matcher(path+".keep", &spec.Keep)
	j.drop = p.matcher(path+".drop", &spec.Drop)
	j.filters = p.labelFilters(path+".labelFilters", &spec.LabelFilters)
	j.dropExact, j.dropRegexp = p.patterns(path+".dropLabels", &spec.DropLabels)
	j.constLabels = p.constLabels(path+".constLabels", &spec.ConstLabels)
	j.seriesLimit = p.seriesLimit(path+".seriesLimit", &spec.SeriesLimit)
	return j
}

// matcher compiles a list of anchored regexes.
func (p *parser) matcher(path string, v *value[[]value[string]]) matcher {
	literals, re := p.patterns(path, v)
	return matcher{literals: literals, re: re}
}

// patterns compiles a list of anchored regexes: plain names go into a set (a map
// lookup), the others into one alternation.
func (p *parser) patterns(path string, v *value[[]value[string]]) (map[string]struct{}, *regexp.Regexp) {
	var literals map[string]struct{}
	var alternatives []string
	for i, expr := range p.stringList(path, v) {
		if expr == nil {
			continue
		}
		lit, ok := p.checkRegexp(fmt.Sprintf("%s[%d]", path, i), *expr, false)
		switch {
		case !ok:
		case lit != nil:
			if literals == nil {
				literals = map[string]struct{}{}
			}
			literals[*lit] = struct{}{}
		default:
			alternatives = append(alternatives, "(?:"+*expr+")")
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

func (p *parser) labelFilters(path string, v *value[[]value[labelFilterSpec]]) []labelFilter {
	if !v.present || v.null {
		return nil
	}
	if v.got != "" {
		p.add(path, "must be a list of {label, regex, action}, got %s", v.got)
		return nil
	}
	if v.err != nil {
		p.add(path, "%s", v.err.Error())
		return nil
	}
	filters := make([]labelFilter, 0, len(v.V))
	for i := range v.V {
		ipath := fmt.Sprintf("%s[%d]", path, i)
		spec, ok := mapping(p, ipath, &v.V[i])
		if !ok {
			continue
		}
		f := labelFilter{}
		valid := true
		if label, ok := p.str(ipath+".label", &spec.Label, true); ok {
			if err := checkLabelName(label); err != nil {
				p.add(ipath+".label", "%s", err.Error())
				valid = false
			}
			f.label = label
		} else {
			valid = false
		}
		if expr, ok := p.str(ipath+".regex", &spec.Regex, true); ok {
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
		if spec.Action.present && !spec.Action.null {
			switch action, _ := p.str(ipath+".action", &spec.Action, false); action {
			case "keep":
			case "drop":
				f.drop = true
			default:
				if spec.Action.ok() {
					p.add(ipath+".action", "must be keep or drop, got %q", action)
				}
				valid = false
			}
		}
		if valid {
			filters = append(filters, f)
		}
	}
	return filters
}

func (p *parser) constLabels(path string, v *value[map[string]value[string]]) []promtext.Label {
	if !v.present || v.null {
		return nil
	}
	m, ok := mapping(p, path, v)
	if !ok {
		return nil
	}
	var labels []promtext.Label
	for _, name := range slices.Sorted(maps.Keys(m)) {
		lpath := path + pathKey(name)
		if err := checkLabelName(name); err != nil {
			p.add(lpath, "%s", err.Error())
			continue
		}
		lv := m[name]
		value, ok := p.str(lpath, &lv, false)
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

func (p *parser) seriesLimit(path string, v *value[int64]) int {
	switch {
	case !v.present || v.null:
		return 0
	case v.got != "":
		p.add(path, "must be a whole number, got %s", v.got)
		return 0
	case v.err != nil:
		p.add(path, "%s", v.err.Error())
		return 0
	case v.V < 0 || v.V > maxSeriesLimit:
		p.add(path, "must be between 0 (no limit) and %d, got %d", maxSeriesLimit, v.V)
		return 0
	}
	return int(v.V)
}

// stringList expects a list of strings; null is an empty list. An element that
// is not a string is reported and nil in the result, so indexes stay the
// document's.
func (p *parser) stringList(path string, v *value[[]value[string]]) []*string {
	switch {
	case !v.present || v.null:
		return nil
	case v.got != "":
		p.add(path, "must be a list of strings, got %s", v.got)
		return nil
	case v.err != nil:
		p.add(path, "%s", v.err.Error())
		return nil
	}
	out := make([]*string, len(v.V))
	for i := range v.V {
		if s, ok := p.str(fmt.Sprintf("%s[%d]", path, i), &v.V[i], false); ok {
			out[i] = &s
		}
	}
	return out
}

// str expects a string. YAML's unquoted yes, no, on, off and numbers are not
// strings: quote them.
func (p *parser) str(path string, v *value[string], required bool) (string, bool) {
	switch {
	case v.ok():
		return v.V, true
	case !v.present || v.null:
		if required {
			p.add(path, "required")
		} else {
			p.add(path, "must be a string, got null")
		}
	case v.err != nil:
		p.add(path, "%s", v.err.Error())
	default:
		p.add(path, "must be a string, got %s (quote it)", v.got)
	}
	return "", false
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
