// Package metricstest is the metrics conformance check every daemon's tests run
// (internal/<daemon>/metrics_test.go calls Check): the daemon's registry, built as
// internal/daemon builds it plus the daemon's own collectors, is linted with
// client_golang's promlint, every family is listed in the metrics table of the
// daemon's docs/<daemon>.md with its type and labels (and the table lists nothing
// else), enumerated label values there are snake_case, and the names, types and
// label names equal the golden file testdata/<daemon>.txt of this package.
//
//	go test ./internal/<daemon> -run TestMetrics -update   # rewrite the golden file
//
// A changed golden file is a changed interface: alerts, dashboards
// (deploy/components/monitoring) and scrapers may depend on every line of it.
package metricstest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/trellis-garden/trellis/internal/daemon"
)

// update is the -update flag of every test binary that imports this package.
var update = flag.Bool("update", false, "rewrite internal/metricstest/testdata/<daemon>.txt from the registered metrics")

// Daemon describes one registry to check.
type Daemon struct {
	// Name is the daemon's name as internal/daemon knows it (Spec.Name): the
	// registry is daemon.NewRegistry(Name), the namespace daemon.MetricNamespace(Name),
	// the golden file testdata/<Name>.txt.
	Name string
	// Doc is the page with the metrics table, docs/<Doc>.md; "" means Name.
	Doc string
	// Register registers the daemon's own collectors on reg exactly as its run
	// function does, without the daemon's I/O. Vectors get a series by themselves;
	// a collector of its own (prometheus.Collector implemented by the daemon) must
	// be given the state that makes it report every family it describes.
	Register func(t testing.TB, reg prometheus.Registerer, namespace string)
}

// common families come from daemon.NewRegistry, not from the daemon; they are
// documented once ("plus the common ones") and not in the golden file, except the
// build info, whose name is the daemon's.
func common(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// Check runs every check on d's registry.
func Check(t *testing.T, d Daemon) {
	t.Helper()
	ns := daemon.MetricNamespace(d.Name)
	reg := daemon.NewRegistry(d.Name)
	rec := &recorder{reg: reg}
	d.Register(t, rec, ns)

	fams := gather(t, reg, rec.collectors)
	checkGolden(t, filepath.Join(Root(t), "internal", "metricstest", "testdata", d.Name+".txt"), fams)
	doc := d.Doc
	if doc == "" {
		doc = d.Name
	}
	problems := slices.Concat(checkNames(ns, fams), checkLint(reg), checkDoc(filepath.Join(Root(t), "docs", doc+".md"), ns, fams))
	slices.Sort(problems)
	for _, p := range problems {
		t.Error(p)
	}
}

// recorder is a Registerer that keeps what it registers.
type recorder struct {
	reg        *prometheus.Registry
	collectors []prometheus.Collector
}

func (r *recorder) Register(c prometheus.Collector) error {
	if err := r.reg.Register(c); err != nil {
		return err
	}
	r.collectors = append(r.collectors, c)
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// family is what the golden file and the doc table say about a metric family.
type family struct {
	name, typ string
	labels    []string // sorted, union over the family's series
}

func (f family) String() string {
	return strings.TrimSpace(f.name + " " + f.typ + " " + strings.Join(f.labels, ","))
}

var (
	descName   = regexp.MustCompile(`^Desc\{fqName: "([^"]*)"`)
	descLabels = regexp.MustCompile(`variableLabels: \{([^{}]*)\}\}$`)
)

// gather returns the registry's families, after giving every vector of the
// daemon's collectors that has no series one (label values "x"). A described
// family that still has no series fails the test: its type and labels would go
// unchecked.
func gather(t *testing.T, reg *prometheus.Registry, cs []prometheus.Collector) map[string]family {
	t.Helper()
	described := map[string]bool{}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 64)
		go func() { c.Describe(ch); close(ch) }()
		for desc := range ch {
			m := descName.FindStringSubmatch(desc.String())
			if m == nil {
				t.Fatalf("unexpected Desc format %s", desc)
			}
			described[m[1]] = true
			var n int
			if l := descLabels.FindStringSubmatch(desc.String()); l != nil && l[1] != "" {
				n = len(strings.Split(l[1], ","))
			}
			values := slices.Repeat([]string{"x"}, n)
			if testutil.CollectAndCount(c, m[1]) > 0 {
				continue
			}
			switch v := c.(type) {
			case *prometheus.CounterVec:
				v.WithLabelValues(values...)
			case *prometheus.GaugeVec:
				v.WithLabelValues(values...)
			case *prometheus.HistogramVec:
				v.WithLabelValues(values...)
			case *prometheus.SummaryVec:
				v.WithLabelValues(values...)
			}
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	fams := map[string]family{}
	for _, mf := range mfs {
		set := map[string]bool{}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				set[lp.GetName()] = true
			}
		}
		labels := make([]string, 0, len(set))
		for l := range set {
			labels = append(labels, l)
		}
		slices.Sort(labels)
		fams[mf.GetName()] = family{name: mf.GetName(), typ: typeName(mf.GetType()), labels: labels}
	}
	for name := range described {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s is registered but reports no series: give its collector state in the test's Register so its type and labels are checked", name)
		}
	}
	return fams
}

func typeName(t dto.MetricType) string {
	switch t {
	case dto.MetricType_COUNTER:
		return "counter"
	case dto.MetricType_GAUGE:
		return "gauge"
	case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
		return "histogram"
	case dto.MetricType_SUMMARY:
		return "summary"
	}
	return "untyped"
}

// checkNames: every family of the daemon is in its namespace.
func checkNames(ns string, fams map[string]family) (problems []string) {
	for name := range fams {
		if !common(name) && !strings.HasPrefix(name, ns+"_") {
			problems = append(problems, fmt.Sprintf("%s: not in the daemon's namespace %s", name, ns))
		}
	}
	return problems
}

// checkLint runs client_golang's promlint (the rules of `promtool check metrics`)
// over the daemon's families.
func checkLint(g prometheus.Gatherer) (problems []string) {
	lint, err := testutil.GatherAndLint(g)
	if err != nil {
		return []string{fmt.Sprintf("lint: %v", err)}
	}
	for _, p := range lint {
		if !common(p.Metric) {
			problems = append(problems, fmt.Sprintf("lint: %s: %s", p.Metric, p.Text))
		}
	}
	return problems
}

// docRow is a row of a metrics table.
type docRow struct {
	typ, labels string
	line        int
}

var (
	namespaceRef = regexp.MustCompile("(?i)namespace `(trellis_[a-z0-9_]+)`")
	rowName      = regexp.MustCompile("^`([a-z0-9_]+)`$")
	// a label followed by its values: result (`success`, `error`)
	labelValues = regexp.MustCompile("([a-z_]+):? \\(((?:`[^`]*`(?:, )?)+)[^)]*\\)")
	backquoted  = regexp.MustCompile("`([^`]*)`")
	snakeCase   = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)
)

// docTables reads the "## Metrics" section of a daemon's page: its tables with the
// header `| metric | type | labels |`, for the namespace the text before a table
// names (Namespace `trellis_...`). Rows name one metric each, without the namespace.
func docTables(path, ns string) (map[string]docRow, []string) {
	var problems []string
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []string{err.Error()}
	}
	lines := strings.Split(string(b), "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return l == "## Metrics" })
	if start < 0 {
		return nil, []string{path + ": no section ## Metrics"}
	}
	rows := map[string]docRow{}
	current, tables := "", 0
	for i := start + 1; i < len(lines) && !strings.HasPrefix(lines[i], "## "); i++ {
		l := lines[i]
		if m := namespaceRef.FindStringSubmatch(l); m != nil && !strings.HasPrefix(l, "|") {
			current = m[1]
		}
		if !strings.HasPrefix(l, "| metric | type | labels |") {
			continue
		}
		tables++
		i += 2 // header and separator
		for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
			cells := strings.Split(lines[i], " | ")
			if len(cells) < 3 {
				errorf("%s:%d: a metrics row needs metric, type and labels", path, i+1)
				continue
			}
			name := strings.TrimSpace(strings.TrimPrefix(cells[0], "|"))
			m := rowName.FindStringSubmatch(name)
			if m == nil {
				errorf("%s:%d: %q: one metric per row, in backquotes, without the namespace", path, i+1, name)
				continue
			}
			if current != ns {
				continue
			}
			full := ns + "_" + m[1]
			if _, dup := rows[full]; dup {
				errorf("%s:%d: %s listed twice", path, i+1, m[1])
			}
			rows[full] = docRow{typ: strings.TrimSpace(cells[1]), labels: strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(cells[2]), "|")), line: i + 1}
		}
		i--
	}
	if tables == 0 {
		errorf("%s: ## Metrics has no table with the header | metric | type | labels |", path)
	}
	return rows, problems
}

// checkDoc: every family of the daemon (the common ones and build_info aside) is a
// row of the doc's table for its namespace, with its type and every label named in
// the labels cell; every row is a registered family; label values the cell
// enumerates are snake_case.
func checkDoc(path, ns string, fams map[string]family) []string {
	rows, problems := docTables(path, ns)
	errorf := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	rel := "docs/" + filepath.Base(path)
	for name, f := range fams {
		if common(name) || name == ns+"_build_info" {
			continue
		}
		r, ok := rows[name]
		if !ok {
			errorf("%s: %s is not in the metrics table (| `%s` | %s | %s |)", rel, name, strings.TrimPrefix(name, ns+"_"), f.typ, strings.Join(f.labels, ", "))
			continue
		}
		if r.typ != f.typ {
			errorf("%s:%d: %s is a %s, the table says %q", rel, r.line, name, f.typ, r.typ)
		}
		for _, l := range f.labels {
			if !regexp.MustCompile(`\b` + l + `\b`).MatchString(r.labels) {
				errorf("%s:%d: %s has the label %s, not named in the labels cell %q", rel, r.line, name, l, r.labels)
			}
		}
	}
	for name, r := range rows {
		if _, ok := fams[name]; !ok {
			errorf("%s:%d: %s is in the table but not registered", rel, r.line, name)
		}
		for _, m := range labelValues.FindAllStringSubmatch(r.labels, -1) {
			for _, v := range backquoted.FindAllStringSubmatch(m[2], -1) {
				if !snakeCase.MatchString(v[1]) {
					errorf("%s:%d: %s: label %s has the value %q: label values are snake_case", rel, r.line, name, m[1], v[1])
				}
			}
		}
	}
	return problems
}

// checkGolden compares the daemon's families (the common ones aside) with the
// golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, fams map[string]family) {
	t.Helper()
	var lines []string
	for name, f := range fams {
		if !common(name) {
			lines = append(lines, f.String())
		}
	}
	slices.Sort(lines)
	got := "# name type labels: generated by `go test -run TestMetrics -update` in the daemon's package; see internal/metricstest.\n" + strings.Join(lines, "\n") + "\n"
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Errorf("no golden file %s: run the test with -update and review it", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	if d := diff(string(want), got); d != "" {
		t.Errorf("the metrics differ from %s (a rename or a new label breaks alerts and dashboards: update every user, then rerun with -update):\n%s", path, d)
	}
}

// diff lists the lines only in want (-) and only in got (+).
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, l := range w {
		if !slices.Contains(g, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// Root is the repository: the folder of the go.mod above the working directory
// (a package's folder under go test).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
