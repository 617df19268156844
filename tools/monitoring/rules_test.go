package monitoring

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the generated prometheusrules.yaml")

const (
	component   = root + "/deploy/components/monitoring"
	runbookBase = "https://github.com/trellis-garden/trellis/blob/main/docs/operations.md#"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert,omitempty"`
	Record      string            `yaml:"record,omitempty"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func readRules(t *testing.T, daemon string) (*ruleFile, []byte) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(component, "rules", daemon+".rules.yaml"))
	if err != nil {
		t.Fatalf("%s: no rules file: %v", daemon, err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s.rules.yaml: %v", daemon, err)
	}
	return &rf, b
}

type ruleTests struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

var severities = []string{"critical", "warning", "info"}

// TestRules: every daemon has alerts, each with a severity, a summary, a
// description and a runbook in docs/operations.md; every expression names only
// series the daemon registers (or kube-state-metrics' workload series), with
// their labels; every alert has a promtool test that fires it and one that keeps
// it quiet.
func TestRules(t *testing.T) {
	ops, err := os.ReadFile(filepath.Join(root, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (Trellis[A-Za-z]+)$`).FindAllStringSubmatch(string(ops), -1) {
		headings[m[1]] = true
	}
	// The alert table of docs/operations.md: | alert | severity | symptom |
	table := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\| (Trellis[A-Za-z]+) \| ([a-z]+) \|`).FindAllStringSubmatch(string(ops), -1) {
		table[m[1]] = m[2]
	}
	all := map[string]bool{}
	for _, d := range daemons(t) {
		t.Run(d, func(t *testing.T) {
			rf, _ := readRules(t, d)
			c := &checker{fams: registered(t, d), external: true}
			alerts := map[string]bool{}
			for _, g := range rf.Groups {
				for _, r := range g.Rules {
					id := r.Alert + r.Record
					for _, p := range c.check(r.Expr) {
						t.Errorf("%s: %s", id, p)
					}
					if r.Alert == "" {
						continue
					}
					if alerts[r.Alert] || all[r.Alert] {
						t.Errorf("%s defined twice", r.Alert)
					}
					alerts[r.Alert], all[r.Alert] = true, true
					if !strings.HasPrefix(r.Alert, "Trellis") {
						t.Errorf("%s: alert names start with Trellis", r.Alert)
					}
					if !slices.Contains(severities, r.Labels["severity"]) {
						t.Errorf("%s: severity %q, want one of %v", r.Alert, r.Labels["severity"], severities)
					}
					if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
						t.Errorf("%s: summary and description annotations required", r.Alert)
					}
					if want := runbookBase + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
						t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
					}
					if !headings[r.Alert] {
						t.Errorf("%s: no runbook (### %s) in docs/operations.md", r.Alert, r.Alert)
					}
					if sev, ok := table[r.Alert]; !ok || sev != r.Labels["severity"] {
						t.Errorf("%s: docs/operations.md's alert table has no row | %s | %s | (found %q)", r.Alert, r.Alert, r.Labels["severity"], sev)
					}
				}
			}
			if len(alerts) < 3 {
				t.Errorf("only %d alerts", len(alerts))
			}
			for _, want := range []string{"Down", "NotReady"} {
				if !slices.ContainsFunc(slices.Collect(mapsKeys(alerts)), func(a string) bool { return strings.HasSuffix(a, want) }) {
					t.Errorf("no %s alert", want)
				}
			}

			b, err := os.ReadFile(filepath.Join(component, "rules", "tests", d+".test.yaml"))
			if err != nil {
				t.Fatalf("no promtool test: %v", err)
			}
			var rt ruleTests
			if err := yaml.Unmarshal(b, &rt); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rt.RuleFiles, []string{"../" + d + ".rules.yaml"}) {
				t.Errorf("test rule_files %v", rt.RuleFiles)
			}
			fires, quiet := map[string]bool{}, map[string]bool{}
			for _, tc := range rt.Tests {
				for _, a := range tc.AlertRuleTest {
					if len(a.ExpAlerts) > 0 {
						fires[a.Alertname] = true
					} else {
						quiet[a.Alertname] = true
					}
				}
			}
			for a := range alerts {
				if !fires[a] || !quiet[a] {
					t.Errorf("%s: promtool test firing %v, quiet %v: want both", a, fires[a], quiet[a])
				}
			}
		})
	}
	// Every runbook and table row belongs to an alert.
	for h := range headings {
		if !all[h] {
			t.Errorf("docs/operations.md: runbook ### %s for an alert that does not exist", h)
		}
	}
	for a := range table {
		if !all[a] {
			t.Errorf("docs/operations.md: alert table row %s for an alert that does not exist", a)
		}
	}
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// prometheusRules renders the PrometheusRule objects (prometheus-operator) of all
// daemons from the plain rules files.
func prometheusRules(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("# Generated from rules/*.rules.yaml by `cd tools/monitoring && GOWORK=off go test -run TestPrometheusRules -update`; do not edit.\n")
	for i, d := range daemons(t) {
		_, raw := readRules(t, d)
		var spec yaml.Node
		if err := yaml.Unmarshal(raw, &spec); err != nil {
			t.Fatal(err)
		}
		stripComments(&spec)
		obj := map[string]any{
			"apiVersion": "monitoring.coreos.com/v1",
			"kind":       "PrometheusRule",
			"metadata": map[string]any{
				"name": "trellis-" + d,
				"labels": map[string]string{
					"app.kubernetes.io/name":    d,
					"app.kubernetes.io/part-of": "trellis",
				},
			},
			"spec": spec.Content[0],
		}
		if i > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(obj); err != nil {
			t.Fatal(err)
		}
		enc.Close()
	}
	return buf.Bytes()
}

func stripComments(n *yaml.Node) {
	n.HeadComment, n.LineComment, n.FootComment = "", "", ""
	for _, c := range n.Content {
		stripComments(c)
	}
}

// TestPrometheusRules: prometheusrules.yaml holds exactly the rules of the plain
// files.
func TestPrometheusRules(t *testing.T) {
	want := prometheusRules(t)
	path := filepath.Join(component, "prometheusrules.yaml")
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `cd tools/monitoring && GOWORK=off go test -run TestPrometheusRules -update`", path)
	}
}

// TestComponent: the monitoring component ships every PrometheusRule and every
// dashboard ConfigMap with the labels Plutono's and Grafana's sidecars select.
func TestComponent(t *testing.T) {
	var k struct {
		Resources          []string `yaml:"resources"`
		ConfigMapGenerator []struct {
			Name    string   `yaml:"name"`
			Files   []string `yaml:"files"`
			Options struct {
				Labels                map[string]string `yaml:"labels"`
				DisableNameSuffixHash bool              `yaml:"disableNameSuffixHash"`
			} `yaml:"options"`
		} `yaml:"configMapGenerator"`
	}
	b, err := os.ReadFile(filepath.Join(component, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(k.Resources, "prometheusrules.yaml") {
		t.Error("prometheusrules.yaml not in the component's resources")
	}
	for _, d := range daemons(t) {
		found := false
		for _, g := range k.ConfigMapGenerator {
			if g.Name != "trellis-dashboard-"+d {
				continue
			}
			found = true
			if !slices.Equal(g.Files, []string{"dashboards/" + d + ".json"}) {
				t.Errorf("%s: files %v", g.Name, g.Files)
			}
			for _, l := range []string{"grafana_dashboard", "dashboard.monitoring.gardener.cloud/seed", "dashboard.monitoring.gardener.cloud/shoot"} {
				if g.Options.Labels[l] == "" {
					t.Errorf("%s: label %s missing", g.Name, l)
				}
			}
			if !g.Options.DisableNameSuffixHash {
				t.Errorf("%s: a name suffix hash leaves old dashboards behind in the sidecar's folder", g.Name)
			}
		}
		if !found {
			t.Errorf("no dashboard ConfigMap trellis-dashboard-%s", d)
		}
	}
}
