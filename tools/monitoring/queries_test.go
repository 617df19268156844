package monitoring

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// targetLabels are labels the scrape adds to every series: job and instance, and
// those the usual Kubernetes service discovery relabelling adds (Gardener's and the
// annotation-based configurations the monitoring component serves).
var targetLabels = []string{"job", "instance", "namespace", "pod", "node", "container", "service", "endpoint", "cluster"}

// external are the series of other exporters the rules may use, with their labels:
// kube-state-metrics for "down" and "not ready", and Prometheus' own up.
var external = map[string]*family{
	"up": {name: "up", typ: "gauge"},
	"kube_deployment_status_replicas_available":      {name: "kube_deployment_status_replicas_available", typ: "gauge", labels: []string{"deployment"}},
	"kube_deployment_status_replicas_unavailable":    {name: "kube_deployment_status_replicas_unavailable", typ: "gauge", labels: []string{"deployment"}},
	"kube_deployment_spec_replicas":                  {name: "kube_deployment_spec_replicas", typ: "gauge", labels: []string{"deployment"}},
	"kube_daemonset_status_number_available":         {name: "kube_daemonset_status_number_available", typ: "gauge", labels: []string{"daemonset"}},
	"kube_daemonset_status_number_unavailable":       {name: "kube_daemonset_status_number_unavailable", typ: "gauge", labels: []string{"daemonset"}},
	"kube_daemonset_status_desired_number_scheduled": {name: "kube_daemonset_status_desired_number_scheduled", typ: "gauge", labels: []string{"daemonset"}},
}

// labelSet is the set of labels an expression's series may carry; scalar marks a
// scalar or a number.
type labelSet struct {
	names  map[string]bool
	scalar bool
}

func setOf(names ...string) labelSet {
	s := labelSet{names: map[string]bool{}}
	for _, n := range names {
		s.names[n] = true
	}
	return s
}

func (s labelSet) with(names ...string) labelSet {
	out := setOf(names...)
	maps.Copy(out.names, s.names)
	return out
}

// checker checks PromQL expressions against the metric families a daemon registers.
type checker struct {
	fams     map[string]*family
	external bool // the rules may use kube-state-metrics and up
}

// lookup finds the family a series name belongs to.
func (c *checker) lookup(name string) (*family, string, bool) {
	try := func(fams map[string]*family) (*family, string, bool) {
		for _, base := range []string{name, strings.TrimSuffix(name, "_bucket"), strings.TrimSuffix(name, "_sum"), strings.TrimSuffix(name, "_count")} {
			if f, ok := fams[base]; ok {
				if extra, ok := f.series(name); ok {
					return f, extra, true
				}
			}
		}
		return nil, "", false
	}
	if f, extra, ok := try(c.fams); ok {
		return f, extra, true
	}
	if c.external {
		return try(external)
	}
	return nil, "", false
}

// check parses expr and returns every problem: a parse error, a metric the
// daemon does not register, a label the metric does not carry (in a matcher, a
// by/on/group_left clause or label_replace), rate() over a gauge.
func (c *checker) check(expr string) []string {
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		return []string{fmt.Sprintf("does not parse: %v", err)}
	}
	var problems []string
	c.labels(e, &problems)
	return problems
}

func (c *checker) labels(e parser.Expr, problems *[]string) labelSet {
	bad := func(format string, args ...any) { *problems = append(*problems, fmt.Sprintf(format, args...)) }
	switch e := e.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral:
		return labelSet{scalar: true}
	case *parser.ParenExpr:
		return c.labels(e.Expr, problems)
	case *parser.UnaryExpr:
		return c.labels(e.Expr, problems)
	case *parser.StepInvariantExpr:
		return c.labels(e.Expr, problems)
	case *parser.MatrixSelector:
		return c.labels(e.VectorSelector, problems)
	case *parser.SubqueryExpr:
		return c.labels(e.Expr, problems)
	case *parser.VectorSelector:
		name := e.Name
		for _, m := range e.LabelMatchers {
			if m.Name == labels.MetricName {
				if m.Type != labels.MatchEqual {
					bad("%s: select metrics by exact name, not %s", e, m)
					return setOf(targetLabels...)
				}
				name = m.Value
			}
		}
		f, extra, ok := c.lookup(name)
		if !ok {
			bad("%s: metric not registered by the daemon", name)
			return setOf(targetLabels...)
		}
		have := setOf(targetLabels...).with(f.labels...)
		if extra != "" {
			have = have.with(extra)
		}
		for _, m := range e.LabelMatchers {
			if m.Name != labels.MetricName && !have.names[m.Name] {
				bad("%s: %s has no label %q (it has %v)", e, name, m.Name, f.labels)
			}
		}
		return have
	case *parser.Call:
		var args []labelSet
		for _, a := range e.Args {
			args = append(args, c.labels(a, problems))
		}
		switch e.Func.Name {
		case "rate", "irate", "increase":
			if ms, ok := e.Args[0].(*parser.MatrixSelector); ok {
				vs := ms.VectorSelector.(*parser.VectorSelector)
				if f, _, ok := c.lookup(vs.Name); ok && f.typ != "counter" && f.typ != "histogram" && f.typ != "summary" {
					bad("%s(%s): %s is a %s, not a counter", e.Func.Name, vs, f.name, f.typ)
				}
			}
		case "time", "vector", "scalar", "pi":
			if e.Func.Name == "scalar" || e.Func.Name == "time" || e.Func.Name == "pi" {
				return labelSet{scalar: true}
			}
			return setOf()
		case "histogram_quantile":
			in := args[1]
			if !in.names["le"] {
				bad("histogram_quantile over series without le: %s", e.Args[1])
			}
			out := setOf()
			for n := range in.names {
				if n != "le" {
					out.names[n] = true
				}
			}
			return out
		case "label_replace":
			dst := e.Args[1].(*parser.StringLiteral).Val
			src := e.Args[3].(*parser.StringLiteral).Val
			if !args[0].names[src] {
				bad("label_replace: source label %q not on %s", src, e.Args[0])
			}
			return args[0].with(dst)
		case "absent", "absent_over_time":
			out := setOf()
			var vs *parser.VectorSelector
			switch a := e.Args[0].(type) {
			case *parser.VectorSelector:
				vs = a
			case *parser.MatrixSelector:
				vs = a.VectorSelector.(*parser.VectorSelector)
			}
			if vs != nil {
				for _, m := range vs.LabelMatchers {
					if m.Type == labels.MatchEqual && m.Name != labels.MetricName {
						out.names[m.Name] = true
					}
				}
			}
			return out
		}
		for _, a := range args {
			if !a.scalar {
				return a
			}
		}
		return setOf()
	case *parser.AggregateExpr:
		in := c.labels(e.Expr, problems)
		if e.Param != nil {
			c.labels(e.Param, problems)
		}
		for _, g := range e.Grouping {
			if !in.names[g] {
				bad("%s by/without (%s): the series have no label %q", e.Op, g, g)
			}
		}
		switch {
		case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
			return in
		case e.Without:
			out := setOf()
			for n := range in.names {
				if !slices.Contains(e.Grouping, n) {
					out.names[n] = true
				}
			}
			return out
		default:
			out := setOf(e.Grouping...)
			if e.Op == parser.COUNT_VALUES {
				out.names[e.Param.(*parser.StringLiteral).Val] = true
			}
			return out
		}
	case *parser.BinaryExpr:
		l := c.labels(e.LHS, problems)
		r := c.labels(e.RHS, problems)
		switch {
		case l.scalar && r.scalar:
			return labelSet{scalar: true}
		case l.scalar:
			return r
		case r.scalar:
			return l
		}
		vm := e.VectorMatching
		if vm == nil {
			return l
		}
		if vm.On {
			for _, n := range vm.MatchingLabels {
				if !l.names[n] || !r.names[n] {
					bad("on (%s): not a label of both sides of %s", n, e)
				}
			}
		}
		switch {
		case e.Op == parser.LAND || e.Op == parser.LUNLESS:
			return l
		case e.Op == parser.LOR:
			return l.with(slices.Collect(maps.Keys(r.names))...)
		case vm.Card == parser.CardManyToOne:
			for _, n := range vm.Include {
				if !r.names[n] {
					bad("group_left (%s): not a label of %s", n, e.RHS)
				}
			}
			return l.with(vm.Include...)
		case vm.Card == parser.CardOneToMany:
			for _, n := range vm.Include {
				if !l.names[n] {
					bad("group_right (%s): not a label of %s", n, e.LHS)
				}
			}
			return r.with(vm.Include...)
		case vm.On:
			return setOf(vm.MatchingLabels...)
		default:
			out := setOf()
			for n := range l.names {
				if !slices.Contains(vm.MatchingLabels, n) {
					out.names[n] = true
				}
			}
			return out
		}
	}
	bad("unhandled expression %T: %s", e, e)
	return setOf(targetLabels...)
}

// grafanaVariable matches $var, ${var}, ${var:format} and [[var]].
var grafanaVariable = regexp.MustCompile(`\$\{[A-Za-z0-9_]+(:[a-z]+)?\}|\$[A-Za-z0-9_]+|\[\[[A-Za-z0-9_]+\]\]`)

// expand replaces Grafana's variables: intervals by a duration, others (used in
// label values) by a plain value.
func expand(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		name := strings.Trim(v, "${}[]")
		name, _, _ = strings.Cut(name, ":")
		switch name {
		case "__rate_interval", "__interval", "__range", "interval":
			return "5m"
		case "__range_s", "__interval_ms", "__interval_s":
			return "300"
		}
		return "x"
	})
}

// TestCheckerCatches: the checker finds what it must, on a known registry.
func TestCheckerCatches(t *testing.T) {
	c := &checker{fams: map[string]*family{
		"m_total": {name: "m_total", typ: "counter", labels: []string{"reason"}},
		"g":       {name: "g", typ: "gauge", labels: []string{"kind"}},
		"h":       {name: "h", typ: "histogram", labels: []string{"webhook"}},
	}}
	for expr, want := range map[string]string{
		`sum by (reason) (rate(m_total{reason="x"}[5m]))`:                     "",
		`histogram_quantile(0.9, sum by (le, webhook) (rate(h_bucket[5m])))`:  "",
		`sum by (namespace, pod) (g{kind="a"}) > 0`:                           "",
		`label_replace(g, "k", "$1", "kind", "(.*)")`:                         "",
		`g == 0 and on (pod) sum by (pod) (rate(m_total[5m])) > 0`:            "",
		`rate(nope_total[5m])`:                                                "not registered",
		`m_total{direction="in"}`:                                             `no label "direction"`,
		`sum by (kind) (rate(m_total[5m]))`:                                   `no label "kind"`,
		`rate(g[5m])`:                                                         "not a counter",
		`histogram_quantile(0.9, sum by (webhook) (rate(h_bucket[5m])))`:      "without le",
		`g / on (reason) group_left () m_total`:                               "on (reason)",
		`sum by (pod) (g) / on (pod) group_left (reason) sum by (pod) (g)`:    "group_left (reason)",
		`sum(rate(m_total[5m]) by (reason)`:                                   "does not parse",
		`{__name__=~"m_.*"}`:                                                  "exact name",
		`kube_deployment_spec_replicas{deployment="x"}`:                       "not registered",
		`sum by (reason) (rate(m_total[5m])) / on (reason) sum by (kind) (g)`: "on (reason)",
	} {
		got := strings.Join(c.check(expand(expr)), "; ")
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("%s: problems %q, want %q", expr, got, want)
		}
	}
	c.external = true
	if p := c.check(`kube_deployment_spec_replicas{deployment="x"} > 0`); len(p) > 0 {
		t.Errorf("kube-state-metrics series with external allowed: %v", p)
	}
	if got := expand(`rate(x{cluster=~"$cluster"}[$__rate_interval]) * ${factor} [[v]]`); got != `rate(x{cluster=~"x"}[5m]) * x x` {
		t.Errorf("expand: %s", got)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	return keys
}
