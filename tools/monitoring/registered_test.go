package monitoring

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// root is the repository, seen from this package.
const root = "../.."

const modulePath = "github.com/trellis-garden/trellis"

// family is a metric family a daemon registers.
type family struct {
	name   string
	typ    string // counter, gauge, histogram, summary, untyped; "" when unknown
	labels []string
	pos    string // where it is defined
}

// series reports whether name is one of the family's series (name, or a
// histogram's or summary's _bucket, _sum, _count) and which extra label it has.
func (f *family) series(name string) (extra string, ok bool) {
	switch {
	case name == f.name:
		if f.typ == "summary" {
			return "quantile", true
		}
		return "", true
	case (f.typ == "histogram" || f.typ == "summary") && (name == f.name+"_sum" || name == f.name+"_count"):
		return "", true
	case f.typ == "histogram" && name == f.name+"_bucket":
		return "le", true
	}
	return "", false
}

// extraNamespaces: constructors whose metrics a daemon registers under another
// daemon name's namespace. egress-reporter's `probe` command is the egress-probe
// daemon (its own Spec name, so namespace trellis_egress_probe).
var extraNamespaces = map[string]map[string]string{
	"egress-reporter": {"newProbeMetrics": "trellis_egress_probe"},
}

func metricNamespace(daemon string) string {
	return "trellis_" + strings.ReplaceAll(daemon, "-", "_")
}

// daemons lists the daemons: the folders under cmd/.
func daemons(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "cmd"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no daemons under cmd/")
	}
	return out
}

// registered returns the metric families the daemon registers, found in the Go
// source of every package of this module its command imports (directly or not),
// plus the Go runtime and process collectors every daemon registry carries (read
// from client_golang itself).
func registered(t *testing.T, daemon string) map[string]*family {
	t.Helper()
	fams := map[string]*family{}
	add := func(f *family) {
		if old, ok := fams[f.name]; ok && (old.typ != f.typ || !slices.Equal(old.labels, f.labels)) {
			t.Errorf("%s: metric %s defined twice, differently (%s and %s)", daemon, f.name, old.pos, f.pos)
		}
		fams[f.name] = f
	}
	pkgs, err := importClosure(filepath.Join(root, "cmd", daemon))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range pkgs {
		defs, errs := extractDir(dir)
		for _, err := range errs {
			t.Error(err)
		}
		isDaemonLib := filepath.Base(dir) == "daemon"
		for _, d := range defs {
			namespaces := []string{metricNamespace(daemon)}
			if ns, ok := extraNamespaces[daemon][d.fn]; ok {
				namespaces = []string{ns}
			}
			if isDaemonLib { // the shared lifecycle registers its series for every daemon name
				for _, ns := range extraNamespaces[daemon] {
					namespaces = append(namespaces, ns)
				}
			}
			for _, ns := range namespaces {
				f := d.family
				f.name = strings.ReplaceAll(f.name, nsPlaceholder, ns)
				add(&f)
			}
		}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		f := &family{name: mf.GetName(), typ: strings.ToLower(mf.GetType().String()), pos: "client_golang collectors"}
		for _, lp := range mf.GetMetric()[0].GetLabel() {
			f.labels = append(f.labels, lp.GetName())
		}
		add(f)
	}
	return fams
}

// importClosure lists the folders of this module's packages that the package in
// dir imports, directly or not, dir included.
func importClosure(dir string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var visit func(dir string) error
	visit = func(dir string) error {
		if seen[dir] {
			return nil
		}
		seen[dir] = true
		out = append(out, dir)
		fset := token.NewFileSet()
		files, err := goFiles(dir)
		if err != nil {
			return err
		}
		for _, path := range files {
			f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if rest, ok := strings.CutPrefix(p, modulePath+"/"); ok && !strings.HasPrefix(rest, "tools/") {
					if err := visit(filepath.Join(root, rest)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	err := visit(dir)
	sort.Strings(out)
	return out, err
}

func goFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, ".go") && !strings.HasSuffix(n, "_test.go") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out, nil
}

// nsPlaceholder stands for the daemon's namespace (a variable in the source).
const nsPlaceholder = "\x00NS\x00"

// definition is a family found in the source, inside top-level function fn.
type definition struct {
	family
	fn string
}

// constructors maps client_golang constructors to the type of what they make.
var constructors = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter", "NewCounterFunc": "counter",
	"NewGauge": "gauge", "NewGaugeVec": "gauge", "NewGaugeFunc": "gauge",
	"NewHistogram": "histogram", "NewHistogramVec": "histogram",
	"NewSummary": "summary", "NewSummaryVec": "summary",
	"NewUntypedFunc": "untyped",
}

var valueTypes = map[string]string{"CounterValue": "counter", "GaugeValue": "gauge", "UntypedValue": "untyped"}

// extractDir reads every metric definition in the package in dir: the
// client_golang constructors with their Opts, and prometheus.NewDesc calls (also
// through a local helper func literal, evaluated at each of its call sites). A
// definition it cannot read is an error, so nothing is skipped silently.
func extractDir(dir string) ([]definition, []error) {
	fset := token.NewFileSet()
	paths, err := goFiles(dir)
	if err != nil {
		return nil, []error{err}
	}
	var files []*ast.File
	for _, p := range paths {
		f, err := parser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return nil, []error{err}
		}
		files = append(files, f)
	}
	x := &extractor{fset: fset, consts: map[string]string{}, descTypes: map[string]string{}}
	for _, f := range files {
		for _, decl := range f.Decls {
			if g, ok := decl.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
								x.consts[n.Name], _ = strconv.Unquote(lit.Value)
							}
						}
					}
				}
			}
		}
	}
	for _, f := range files {
		prom := importName(f, "github.com/prometheus/client_golang/prometheus")
		if prom == "" {
			continue
		}
		x.prom = prom
		for _, decl := range f.Decls {
			if fd, ok := decl.(*ast.FuncDecl); ok && fd.Body != nil {
				x.funcDecl(fd)
			}
		}
	}
	// NewDesc families get their type from the MustNewConstMetric calls that use them.
	for i := range x.defs {
		if x.defs[i].typ == "" && x.defs[i].field != "" {
			x.defs[i].typ = x.descTypes[x.defs[i].field]
		}
	}
	out := make([]definition, len(x.defs))
	for i, d := range x.defs {
		out[i] = d.definition
	}
	return out, x.errs
}

func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

type extractor struct {
	fset   *token.FileSet
	prom   string
	consts map[string]string
	defs   []struct {
		definition
		field string // struct field the Desc is stored in, for its type
	}
	descTypes map[string]string // struct field -> type from MustNewConstMetric
	errs      []error
}

func (x *extractor) errorf(pos token.Pos, format string, args ...any) {
	x.errs = append(x.errs, fmt.Errorf("%s: %s (extend tools/monitoring's extractor)", x.fset.Position(pos), fmt.Sprintf(format, args...)))
}

func (x *extractor) isProm(e ast.Expr, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == x.prom && (name == "" || sel.Sel.Name == name)
}

// env binds identifiers to strings (func literal parameters at a call site) or
// string lists (label slices).
type env struct {
	strs  map[string]string
	lists map[string][]string
}

func (x *extractor) funcDecl(fd *ast.FuncDecl) {
	// Helpers: local func literals that call prometheus.NewDesc.
	helpers := map[string]*ast.FuncLit{}
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) != 1 || len(as.Rhs) != 1 {
			return true
		}
		id, ok1 := as.Lhs[0].(*ast.Ident)
		fl, ok2 := as.Rhs[0].(*ast.FuncLit)
		if ok1 && ok2 && x.callsNewDesc(fl) {
			helpers[id.Name] = fl
		}
		return true
	})
	lists := x.stringLists(fd.Body)
	inHelper := map[*ast.CallExpr]bool{}
	for _, fl := range helpers {
		ast.Inspect(fl.Body, func(n ast.Node) bool {
			if c, ok := n.(*ast.CallExpr); ok {
				inHelper[c] = true
			}
			return true
		})
	}
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.KeyValueExpr:
			// field: helper("name", ...) in a composite literal
			if c, ok := n.Value.(*ast.CallExpr); ok {
				if id, ok := c.Fun.(*ast.Ident); ok && helpers[id.Name] != nil {
					field := ""
					if k, ok := n.Key.(*ast.Ident); ok {
						field = k.Name
					}
					x.helperCall(fd, helpers[id.Name], c, field, lists)
					inHelper[c] = true
				}
			}
		case *ast.CallExpr:
			if inHelper[n] {
				return true
			}
			if id, ok := n.Fun.(*ast.Ident); ok && helpers[id.Name] != nil {
				x.helperCall(fd, helpers[id.Name], n, "", lists)
				return true
			}
			if x.isProm(n.Fun, "MustNewConstMetric") || x.isProm(n.Fun, "NewConstMetric") {
				if len(n.Args) >= 2 {
					if sel, ok := n.Args[0].(*ast.SelectorExpr); ok {
						if vt, ok := n.Args[1].(*ast.SelectorExpr); ok && x.isProm(vt, "") {
							x.descTypes[sel.Sel.Name] = valueTypes[vt.Sel.Name]
						}
					}
				}
			}
			if x.isProm(n.Fun, "MustNewConstHistogram") || x.isProm(n.Fun, "NewConstHistogram") {
				if sel, ok := n.Args[0].(*ast.SelectorExpr); ok {
					x.descTypes[sel.Sel.Name] = "histogram"
				}
			}
			if x.isProm(n.Fun, "NewDesc") {
				x.newDesc(fd, n, env{lists: lists}, "")
				return true
			}
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || !x.isProm(sel, "") {
				return true
			}
			typ, ok := constructors[sel.Sel.Name]
			if !ok {
				return true
			}
			x.constructor(fd, n, typ, strings.HasSuffix(sel.Sel.Name, "Vec"), lists)
		}
		return true
	})
}

func (x *extractor) callsNewDesc(fl *ast.FuncLit) bool {
	found := false
	ast.Inspect(fl.Body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok && x.isProm(c.Fun, "NewDesc") {
			found = true
		}
		return !found
	})
	return found
}

// stringLists resolves local []string variables: every literal assigned or
// appended to them (a superset when labels depend on a flag).
func (x *extractor) stringLists(body *ast.BlockStmt) map[string][]string {
	lists := map[string][]string{}
	ast.Inspect(body, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) != len(as.Rhs) {
			return true
		}
		for i, l := range as.Lhs {
			id, ok := l.(*ast.Ident)
			if !ok {
				continue
			}
			var elems []ast.Expr
			switch r := as.Rhs[i].(type) {
			case *ast.CompositeLit:
				if at, ok := r.Type.(*ast.ArrayType); ok && isIdent(at.Elt, "string") {
					elems = r.Elts
				}
			case *ast.CallExpr:
				if isIdent(r.Fun, "append") && len(r.Args) > 0 && isIdent(r.Args[0], id.Name) {
					elems = r.Args[1:]
				}
			}
			for _, e := range elems {
				if s, ok := x.str(e, env{}); ok && !slices.Contains(lists[id.Name], s) {
					lists[id.Name] = append(lists[id.Name], s)
				}
			}
		}
		return true
	})
	return lists
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

var namespaceIdent = regexp.MustCompile(`(?i)^(namespace|ns)$`)

// str evaluates a string expression: literals, constants, +, BuildFQName, bound
// parameters; a variable named namespace or ns, x.Namespace or a call of
// MetricNamespace is the daemon's namespace.
func (x *extractor) str(e ast.Expr, en env) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		}
	case *ast.Ident:
		if s, ok := en.strs[e.Name]; ok {
			return s, true
		}
		if s, ok := x.consts[e.Name]; ok {
			return s, true
		}
		if namespaceIdent.MatchString(e.Name) {
			return nsPlaceholder, true
		}
	case *ast.SelectorExpr:
		if e.Sel.Name == "Namespace" {
			return nsPlaceholder, true
		}
	case *ast.BinaryExpr:
		if e.Op == token.ADD {
			a, ok1 := x.str(e.X, en)
			b, ok2 := x.str(e.Y, en)
			return a + b, ok1 && ok2
		}
	case *ast.ParenExpr:
		return x.str(e.X, en)
	case *ast.CallExpr:
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "MetricNamespace" {
			return nsPlaceholder, true
		}
		if sel, ok := e.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "MetricNamespace" {
			return nsPlaceholder, true
		}
		if x.isProm(e.Fun, "BuildFQName") && len(e.Args) == 3 {
			var parts []string
			for _, a := range e.Args {
				s, ok := x.str(a, en)
				if !ok {
					return "", false
				}
				if s != "" {
					parts = append(parts, s)
				}
			}
			return strings.Join(parts, "_"), true
		}
	}
	return "", false
}

// strs evaluates a []string expression.
func (x *extractor) strs(e ast.Expr, en env) ([]string, bool) {
	switch e := e.(type) {
	case nil:
		return nil, true
	case *ast.Ident:
		if e.Name == "nil" {
			return nil, true
		}
		l, ok := en.lists[e.Name]
		return l, ok
	case *ast.CompositeLit:
		var out []string
		for _, el := range e.Elts {
			s, ok := x.str(el, en)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func (x *extractor) add(fd *ast.FuncDecl, pos token.Pos, name, typ string, labels []string, field string) {
	if !strings.HasPrefix(name, nsPlaceholder) && strings.Contains(name, nsPlaceholder) {
		x.errorf(pos, "namespace in the middle of metric name %q", name)
		return
	}
	labels = slices.Clone(labels)
	sort.Strings(labels)
	x.defs = append(x.defs, struct {
		definition
		field string
	}{definition{family{name: name, typ: typ, labels: labels, pos: x.fset.Position(pos).String()}, fd.Name.Name}, field})
}

// constructor reads prometheus.NewXxx(prometheus.XxxOpts{...}[, labels]).
func (x *extractor) constructor(fd *ast.FuncDecl, c *ast.CallExpr, typ string, vec bool, lists map[string][]string) {
	if len(c.Args) == 0 {
		return
	}
	opts := c.Args[0]
	if u, ok := opts.(*ast.UnaryExpr); ok {
		opts = u.X
	}
	cl, ok := opts.(*ast.CompositeLit)
	if !ok {
		x.errorf(c.Pos(), "metric options are not a composite literal")
		return
	}
	var ns, sub, name string
	var labels []string
	en := env{lists: lists}
	for _, el := range cl.Elts {
		kv, ok := el.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			continue
		}
		switch key.Name {
		case "Namespace", "Subsystem", "Name":
			s, ok := x.str(kv.Value, en)
			if !ok {
				x.errorf(kv.Pos(), "cannot read %s", key.Name)
				return
			}
			switch key.Name {
			case "Namespace":
				ns = s
			case "Subsystem":
				sub = s
			default:
				name = s
			}
		case "ConstLabels":
			lc, ok := kv.Value.(*ast.CompositeLit)
			if !ok {
				x.errorf(kv.Pos(), "cannot read ConstLabels")
				return
			}
			for _, e := range lc.Elts {
				k, ok := x.str(e.(*ast.KeyValueExpr).Key, en)
				if !ok {
					x.errorf(e.Pos(), "cannot read a ConstLabels key")
					return
				}
				labels = append(labels, k)
			}
		}
	}
	if vec {
		if len(c.Args) < 2 {
			x.errorf(c.Pos(), "vector without labels")
			return
		}
		ls, ok := x.strs(c.Args[1], en)
		if !ok {
			x.errorf(c.Args[1].Pos(), "cannot read the label names")
			return
		}
		labels = append(labels, ls...)
	}
	var parts []string
	for _, p := range []string{ns, sub, name} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	x.add(fd, c.Pos(), strings.Join(parts, "_"), typ, labels, "")
}

// newDesc reads prometheus.NewDesc(fqName, help, labels, constLabels).
func (x *extractor) newDesc(fd *ast.FuncDecl, c *ast.CallExpr, en env, field string) {
	if len(c.Args) != 4 {
		x.errorf(c.Pos(), "NewDesc with %d arguments", len(c.Args))
		return
	}
	name, ok := x.str(c.Args[0], en)
	if !ok {
		x.errorf(c.Args[0].Pos(), "cannot read the metric name")
		return
	}
	labels, ok := x.strs(c.Args[2], en)
	if !ok {
		x.errorf(c.Args[2].Pos(), "cannot read the label names")
		return
	}
	if cl, ok := c.Args[3].(*ast.CompositeLit); ok {
		for _, e := range cl.Elts {
			k, ok := x.str(e.(*ast.KeyValueExpr).Key, en)
			if !ok {
				x.errorf(e.Pos(), "cannot read a constant label")
				return
			}
			labels = append(labels, k)
		}
	} else if !isIdent(c.Args[3], "nil") {
		x.errorf(c.Args[3].Pos(), "cannot read the constant labels")
		return
	}
	x.add(fd, c.Pos(), name, "", labels, field)
}

// helperCall evaluates the NewDesc inside helper fl with its parameters bound to
// the arguments of call c.
func (x *extractor) helperCall(fd *ast.FuncDecl, fl *ast.FuncLit, c *ast.CallExpr, field string, lists map[string][]string) {
	en := env{strs: map[string]string{}, lists: map[string][]string{}}
	for k, v := range lists {
		en.lists[k] = v
	}
	var params []*ast.Ident
	variadic := ""
	for _, p := range fl.Type.Params.List {
		_, isVar := p.Type.(*ast.Ellipsis)
		for _, n := range p.Names {
			params = append(params, n)
			if isVar {
				variadic = n.Name
			}
		}
	}
	for i, p := range params {
		if p.Name == variadic {
			rest := c.Args[min(i, len(c.Args)):]
			if c.Ellipsis.IsValid() && len(rest) == 1 {
				l, ok := x.strs(rest[0], env{lists: lists})
				if !ok {
					x.errorf(rest[0].Pos(), "cannot read the label names")
					return
				}
				en.lists[p.Name] = l
				break
			}
			var l []string
			for _, a := range rest {
				s, ok := x.str(a, en)
				if !ok {
					x.errorf(a.Pos(), "cannot read a label name")
					return
				}
				l = append(l, s)
			}
			en.lists[p.Name] = l
			break
		}
		if i < len(c.Args) {
			if s, ok := x.str(c.Args[i], env{lists: lists}); ok {
				en.strs[p.Name] = s
			}
		}
	}
	found := false
	ast.Inspect(fl.Body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && x.isProm(call.Fun, "NewDesc") {
			x.newDesc(fd, call, en, field)
			found = true
		}
		return true
	})
	if !found {
		x.errorf(c.Pos(), "helper without prometheus.NewDesc")
	}
}

// TestRegisteredMetrics: the extractor finds what it must in the real source, so a
// silent miss cannot make the query checks vacuous.
func TestRegisteredMetrics(t *testing.T) {
	want := map[string]map[string][]string{
		// a Desc through a helper, variadic labels
		"wg-gateway": {"trellis_wg_gateway_backend_packets_total": {"backend", "direction"}, "trellis_wg_gateway_backends": nil},
		// labels appended in a switch: their union
		"zone-flow-tracer": {"trellis_zone_flow_tracer_bytes_total": {"destination_zone", "direction", "namespace", "source_zone", "workload"}},
		// a library package of the daemon (otlpexport), GaugeFunc
		"otel-shoot-scraper": {"trellis_otel_shoot_scraper_queue_oldest_age_seconds": nil, "trellis_otel_shoot_scraper_scrapes_total": {"job", "result"}},
		// the probe's namespace, build_info for both
		"egress-reporter": {"trellis_egress_probe_attempts_total": {"family", "method", "result", "server"}, "trellis_egress_probe_build_info": {"goversion", "revision", "version"}, "trellis_egress_reporter_build_info": {"goversion", "revision", "version"}},
		"mr-signer":       {"trellis_mr_signer_quarantined_managed_resources": nil, "go_goroutines": nil, "process_start_time_seconds": nil},
		"event-watcher":   {"trellis_event_watcher_drain_duration_seconds": {"result"}},
	}
	for _, d := range daemons(t) {
		fams := registered(t, d)
		if len(fams) < 10 {
			t.Errorf("%s: only %d metric families found", d, len(fams))
		}
		for name, labels := range want[d] {
			f, ok := fams[name]
			switch {
			case !ok:
				t.Errorf("%s: %s not found", d, name)
			case !slices.Equal(f.labels, labels):
				t.Errorf("%s: %s labels %v, want %v", d, name, f.labels, labels)
			}
		}
		for _, f := range fams {
			if strings.HasPrefix(f.name, "trellis_") && !strings.HasPrefix(f.name, metricNamespace(d)+"_") && !strings.HasPrefix(f.name, "trellis_egress_probe_") {
				t.Errorf("%s: %s outside the daemon's namespace (%s)", d, f.name, f.pos)
			}
			if f.typ == "" {
				t.Errorf("%s: %s: type unknown (%s)", d, f.name, f.pos)
			}
		}
	}
	if _, ok := registered(t, "wg-gateway")["trellis_wg_gateway_backend_handshakes_total"]; !ok {
		t.Error("wg-gateway: handshakes counter missing")
	}
	if f := registered(t, "wg-gateway")["trellis_wg_gateway_backend_handshakes_total"]; f != nil && f.typ != "counter" {
		t.Errorf("handshakes counter typed %q", f.typ)
	}
}
