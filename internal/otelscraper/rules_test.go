package otelscraper

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/trellis-garden/trellis/internal/promtext"
)

// sample builds a sample of family name with labels given as name, value pairs.
func sample(family string, typ promtext.MetricType, labels ...string) *promtext.Sample {
	s := &promtext.Sample{Family: []byte(family), Name: []byte(family), Type: typ}
	for i := 0; i+1 < len(labels); i += 2 {
		s.Labels = append(s.Labels, promtext.Label{Name: []byte(labels[i]), Value: []byte(labels[i+1])})
	}
	return s
}

func labelString(labels []promtext.Label) string {
	parts := make([]string, len(labels))
	for i, l := range labels {
		parts[i] = string(l.Name) + "=" + string(l.Value)
	}
	return strings.Join(parts, ",")
}

func mustParse(t testing.TB, doc string) *Rules {
	t.Helper()
	r, err := ParseRules([]byte(doc))
	if err != nil {
		t.Fatalf("ParseRules: %v", err)
	}
	return r
}

const fullRules = `
default:
  keep: ["up", "process_.+"]
  seriesLimit: 500
jobs:
  cadvisor:
    keep: ["container_cpu_usage_seconds_total", "container_memory_.+", "container_network_.+"]
    drop: ["container_memory_cache", "container_network_.+_errors_total"]
    dropLabels: ["id", "image", "name", "container_label_.+"]
    labelFilters:
    - label: namespace
      regex: "kube-system|"
    - label: container
      regex: POD
      action: drop
    constLabels: {cluster: my-shoot, azone: z1}
    seriesLimit: 20000
  "static.job":
  pods: {}
`

func TestParseRulesValid(t *testing.T) {
	r := mustParse(t, fullRules)
	if got := r.Jobs(); !slices.Equal(got, []string{"cadvisor", "pods", "static.job"}) {
		t.Fatalf("Jobs = %v", got)
	}
	c := r.Job("cadvisor")
	if c.Name() != "cadvisor" || c.SeriesLimit() != 20000 {
		t.Errorf("cadvisor: name %q limit %d", c.Name(), c.SeriesLimit())
	}
	if got := labelString(c.ConstLabels()); got != "azone=z1,cluster=my-shoot" {
		t.Errorf("ConstLabels = %s, want sorted azone, cluster", got)
	}
	// A job without an entry gets the default; an entry replaces it entirely.
	d := r.Job("kubelet")
	if d.Name() != "default" || d.SeriesLimit() != 500 || len(d.ConstLabels()) != 0 {
		t.Errorf("default entry: %q %d %v", d.Name(), d.SeriesLimit(), d.ConstLabels())
	}
	if !d.Keep(sample("process_open_fds", promtext.TypeGauge)) || d.Keep(sample("kubelet_running_pods", promtext.TypeGauge)) {
		t.Error("default entry's keep not applied")
	}
	for _, job := range []string{"pods", "static.job"} {
		j := r.Job(job)
		if j.Name() != job || j.SeriesLimit() != 0 || !j.Keep(sample("anything_at_all", promtext.TypeGauge)) {
			t.Errorf("empty entry %s does not keep everything without limit", job)
		}
	}
	// Null fields are absent fields: null jobs, default, lists, mappings and limits.
	nulls := mustParse(t, "jobs: null\ndefault: null\n")
	if len(nulls.Jobs()) != 0 || !nulls.Job("x").Keep(sample("x", promtext.TypeGauge)) {
		t.Error("null jobs and default do not keep everything")
	}
	nulls = mustParse(t, "jobs: {a: {keep: null, drop: null, labelFilters: null, dropLabels: null, constLabels: null, seriesLimit: null}}")
	if j := nulls.Job("a"); j.Name() != "a" || j.SeriesLimit() != 0 || j.ConstLabels() != nil || !j.Keep(sample("x", promtext.TypeGauge)) {
		t.Error("an entry of null fields does not keep everything")
	}
	// {} is a valid document that keeps everything.
	all := mustParse(t, "{}")
	if !all.Job("cadvisor").Keep(sample("x", promtext.TypeGauge)) || all.Job("x").SeriesLimit() != 0 {
		t.Error("{} does not keep everything")
	}
	// Nil rules and job rules keep everything.
	var nilRules *Rules
	var nilJob *JobRules
	if !nilRules.Job("x").Keep(sample("x", promtext.TypeGauge)) || !nilJob.Keep(sample("x", promtext.TypeGauge)) ||
		nilJob.SeriesLimit() != 0 || nilJob.ConstLabels() != nil || nilRules.Jobs() != nil {
		t.Error("nil rules are not keep-all")
	}
}

func TestParseRulesInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string // each a problem, in order
	}{
		{"empty", "", []string{"the document is empty"}},
		{"comment only", "# nothing\n", []string{"the document is empty"}},
		{"syntax", "jobs: [\n", []string{"yaml: line"}},
		{"duplicate key", "jobs: {}\njobs: {}\n", []string{`"jobs" already set`}},
		{"not a mapping", "- a\n", []string{"must be a mapping, got a list"}},
		{"unknown fields everywhere", `
defaults: {}
jobs:
  cadvisor:
    Keep: [a]
    labelFilters:
    - label: a
      regex: b
      negate: true
`, []string{
			"defaults: unknown field (known: default, jobs)",
			"jobs.cadvisor.Keep: unknown field",
			"jobs.cadvisor.labelFilters[0].negate: unknown field (known: label, regex, action)",
		}},
		{"bad regexes with paths", `
jobs:
  cadvisor:
    keep: [ok, "also_ok_.+", "(unclosed", ""]
    drop: ["a**"]
    dropLabels: ["[z-a]"]
    labelFilters:
    - {label: namespace, regex: "(?P<x"}
`, []string{
			"jobs.cadvisor.keep[2]: error parsing regexp: missing closing ): `(unclosed`",
			"jobs.cadvisor.keep[3]: empty regex",
			"jobs.cadvisor.drop[0]: error parsing regexp: invalid nested repetition operator: `**`",
			"jobs.cadvisor.labelFilters[0].regex: error parsing regexp:",
			"jobs.cadvisor.dropLabels[0]: error parsing regexp: invalid character class range: `z-a`",
		}},
		{"wrong types", `
default: [a]
jobs:
  kubelet:
    keep: node_load1
    drop: [yes, 1]
    constLabels: [a]
    seriesLimit: "10"
  node:
    labelFilters: {label: a}
    seriesLimit: 1.5
`, []string{
			"default: must be a mapping, got a list",
			"jobs.kubelet.keep: must be a list of strings, got a string",
			"jobs.kubelet.drop[0]: must be a string, got a boolean (quote it)",
			"jobs.kubelet.drop[1]: must be a string, got a number (quote it)",
			"jobs.kubelet.constLabels: must be a mapping, got a list",
			"jobs.kubelet.seriesLimit: must be a whole number, got a string",
			"jobs.node.labelFilters: must be a list of {label, regex, action}, got a mapping",
			"jobs.node.seriesLimit: must be a whole number, got a number",
		}},
		{"label filters and labels", `
jobs:
  a.b:
    labelFilters:
    - regex: x
    - label: "1abc"
      regex: x
    - label: __name__
      regex: x
      action: invert
    - label: ok
    constLabels:
      "bad-name": x
      empty: ""
      number: 3
    seriesLimit: -1
  "":
    keep: [x]
`, []string{
			`jobs[""]: a job name must not be empty`,
			`jobs["a.b"].labelFilters[0].label: required`,
			`jobs["a.b"].labelFilters[1].label: invalid label name "1abc"`,
			`jobs["a.b"].labelFilters[2].label: label name "__name__" is reserved`,
			`jobs["a.b"].labelFilters[2].action: must be keep or drop, got "invert"`,
			`jobs["a.b"].labelFilters[3].regex: required`,
			`jobs["a.b"].constLabels.bad-name: invalid label name "bad-name"`,
			`jobs["a.b"].constLabels.empty: empty value`,
			`jobs["a.b"].constLabels.number: must be a string, got a number (quote it)`,
			`jobs["a.b"].seriesLimit: must be between 0 (no limit) and 2147483648, got -1`,
		}},
		{"nulls and out-of-range numbers", `
"x.y": 1
jobs:
  a:
    keep: [null, x]
    labelFilters:
    - null
    - {label: a, regex: b, action: 3, extra: 1}
    - {label: a, regex: null, action: null}
    constLabels: {a: null}
    seriesLimit: 99999999999999999999
`, []string{
			`["x.y"]: unknown field (known: default, jobs)`,
			"jobs.a.keep[0]: must be a string, got null",
			"jobs.a.labelFilters[0]: must be a mapping, got null",
			"jobs.a.labelFilters[1].extra: unknown field (known: label, regex, action)",
			"jobs.a.labelFilters[1].action: must be a string, got a number (quote it)",
			"jobs.a.labelFilters[2].regex: required",
			"jobs.a.constLabels.a: must be a string, got null",
			"jobs.a.seriesLimit: must be a whole number, got a number",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRules([]byte(tc.doc))
			if err == nil {
				t.Fatalf("accepted: %v", r.Jobs())
			}
			if r != nil {
				t.Error("rules returned with an error")
			}
			var re *RulesError
			if !errors.As(err, &re) {
				t.Fatalf("error %T, want *RulesError: %v", err, err)
			}
			if len(re.Problems) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%s", len(re.Problems), len(tc.want), strings.Join(re.Problems, "\n"))
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(re.Problems[i], want) && !strings.Contains(re.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, re.Problems[i], want)
				}
			}
			if !strings.HasPrefix(err.Error(), "invalid filter rules: ") {
				t.Errorf("Error() = %q", err.Error())
			}
		})
	}
}

func TestRulesKeepFamilies(t *testing.T) {
	c := mustParse(t, fullRules).Job("cadvisor")
	for family, want := range map[string]bool{
		"container_cpu_usage_seconds_total":         true,  // literal keep
		"container_memory_working_set_bytes":        true,  // regex keep
		"container_memory_cache":                    false, // dropped after keep
		"container_network_receive_errors_total":    false, // dropped by regex
		"container_network_receive_bytes_total":     true,
		"container_fs_usage_bytes":                  false, // not kept
		"xcontainer_cpu_usage_seconds_total":        false, // anchored at the start
		"container_cpu_usage_seconds_total_extra":   false, // anchored at the end
		"container_memory_":                         false, // .+ needs a character
		"container_network_transmit_packets_total":  true,
		"container_network_transmit_errors_total_x": true, // drop is anchored too
	} {
		// Twice: the second answer comes from the cache.
		for range 2 {
			if got := c.Keep(sample(family, promtext.TypeGauge, "namespace", "kube-system")); got != want {
				t.Errorf("Keep(%s) = %v, want %v", family, got, want)
			}
		}
	}
	// A sample without a family name (a parser that does not set it) is judged
	// by its name.
	s := &promtext.Sample{Name: []byte("container_cpu_usage_seconds_total")}
	if !c.Keep(s) {
		t.Error("sample without family not judged by name")
	}
}

// A counter kept as foo_total is kept also when an OpenMetrics target names the
// family foo; a drop works the same way; other types are not widened.
func TestRulesKeepOpenMetricsCounterFamily(t *testing.T) {
	j := mustParse(t, `
jobs:
  x:
    keep: ["requests_total", "errors_total", "temperature_total"]
    drop: ["errors_total"]
`).Job("x")
	for _, tc := range []struct {
		family string
		typ    promtext.MetricType
		want   bool
	}{
		{"requests", promtext.TypeCounter, true},
		{"requests_total", promtext.TypeCounter, true},
		{"errors", promtext.TypeCounter, false},
		{"temperature", promtext.TypeGauge, false},
	} {
		if got := j.Keep(sample(tc.family, tc.typ)); got != tc.want {
			t.Errorf("Keep(%s %v) = %v, want %v", tc.family, tc.typ, got, tc.want)
		}
	}
}

func TestRulesLabelFilters(t *testing.T) {
	c := mustParse(t, fullRules).Job("cadvisor")
	const fam = "container_cpu_usage_seconds_total"
	for _, tc := range []struct {
		labels []string
		want   bool
	}{
		{[]string{"namespace", "kube-system", "container", "kube-proxy"}, true},
		{[]string{"container", "kube-proxy"}, true},                   // missing namespace is ""
		{[]string{"namespace", "", "id", "/system.slice/x"}, true},    // empty namespace
		{[]string{"namespace", "default", "container", "app"}, false}, // other namespace
		{[]string{"namespace", "kube-system-x"}, false},               // anchored
		{[]string{"namespace", "kube-system", "container", "POD"}, false},
		{[]string{"namespace", "kube-system", "container", "PODS"}, true}, // drop is anchored too
	} {
		if got := c.Keep(sample(fam, promtext.TypeCounter, tc.labels...)); got != tc.want {
			t.Errorf("Keep(%v) = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

func TestRulesDropLabelsInPlace(t *testing.T) {
	c := mustParse(t, fullRules).Job("cadvisor")
	s := sample("container_cpu_usage_seconds_total", promtext.TypeCounter,
		"container", "kube-proxy", "id", "/kubepods/x", "image", "reg/kube-proxy:v1", "container_label_app", "x",
		"name", "k8s_kube-proxy", "namespace", "kube-system", "pod", "kube-proxy-abc")
	backing := &s.Labels[0]
	if !c.Keep(s) {
		t.Fatal("not kept")
	}
	if got := labelString(s.Labels); got != "container=kube-proxy,namespace=kube-system,pod=kube-proxy-abc" {
		t.Errorf("labels after Keep = %s", got)
	}
	if &s.Labels[0] != backing {
		t.Error("labels were copied, want them filtered in place")
	}
	// Twice through the cached label-name decisions gives the same result.
	s2 := sample("container_cpu_usage_seconds_total", promtext.TypeCounter, "container_label_x", "1", "id", "/", "z", "1")
	if !c.Keep(s2) || labelString(s2.Labels) != "z=1" {
		t.Errorf("second sample labels = %s", labelString(s2.Labels))
	}
	// A dropped sample's labels do not matter, a job without dropLabels leaves them.
	p := mustParse(t, fullRules).Job("pods")
	s3 := sample("x", promtext.TypeGauge, "id", "1", "image", "2")
	if !p.Keep(s3) || labelString(s3.Labels) != "id=1,image=2" {
		t.Errorf("job without dropLabels changed labels: %s", labelString(s3.Labels))
	}
}

// The built-in rules are Gardener's lists: exactly these families per job, and
// the kube-system namespace filter on cadvisor and kubelet.
func TestDefaultRulesAreGardenersLists(t *testing.T) {
	r := DefaultRules()
	if r != DefaultRules() {
		t.Error("DefaultRules compiled more than once")
	}
	parsed := mustParse(t, string(DefaultRulesYAML()))
	if !slices.Equal(parsed.Jobs(), r.Jobs()) {
		t.Errorf("DefaultRulesYAML does not parse to DefaultRules: %v vs %v", parsed.Jobs(), r.Jobs())
	}
	if got := r.Jobs(); !slices.Equal(got, []string{"cadvisor", "kubelet", "kubelet-resource", "node-exporter", "pods"}) {
		t.Errorf("default jobs = %v", got)
	}
	want := map[string][]string{
		"cadvisor": {
			"container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
			"container_cpu_cfs_throttled_seconds_total", "container_cpu_usage_seconds_total",
			"container_fs_inodes_total", "container_fs_limit_bytes", "container_fs_usage_bytes",
			"container_last_seen", "container_memory_working_set_bytes",
			"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		},
		"kubelet": {
			"kubelet_image_pull_duration_seconds", "kubelet_running_pods",
			"kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes",
			"kubelet_volume_stats_used_bytes", "process_max_fds", "process_open_fds",
		},
		"node-exporter": {
			"node_boot_time_seconds", "node_cpu_seconds_total",
			"node_disk_io_time_seconds_total", "node_disk_io_time_weighted_seconds_total",
			"node_disk_read_bytes_total", "node_disk_read_time_seconds_total",
			"node_disk_reads_completed_total", "node_disk_write_time_seconds_total",
			"node_disk_writes_completed_total", "node_disk_written_bytes_total",
			"node_filesystem_avail_bytes", "node_filesystem_files", "node_filesystem_files_free",
			"node_filesystem_free_bytes", "node_filesystem_readonly", "node_filesystem_size_bytes",
			"node_load1", "node_load15", "node_load5",
			"node_scrape_collector_duration_seconds", "node_scrape_collector_success",
			"process_max_fds", "process_open_fds",
		},
	}
	wantRegexes := map[string]string{"node-exporter": "^(?:(?:node_memory_.+)|(?:node_nf_conntrack_.+))$"}
	for job, names := range want {
		j := r.Job(job)
		var literals []string
		for name := range j.keep.literals {
			literals = append(literals, name)
		}
		sort.Strings(literals)
		if !slices.Equal(literals, names) {
			t.Errorf("%s keeps %v,\nwant %v", job, literals, names)
		}
		gotRe := ""
		if j.keep.re != nil {
			gotRe = j.keep.re.String()
		}
		if gotRe != wantRegexes[job] {
			t.Errorf("%s keep regex = %q, want %q", job, gotRe, wantRegexes[job])
		}
		if !j.drop.empty() || len(j.dropExact) > 0 || j.dropRegexp != nil || len(j.constLabels) > 0 || j.SeriesLimit() != 0 {
			t.Errorf("%s has rules beyond Gardener's keep list", job)
		}
	}

	keep := func(job, family string, labels ...string) bool {
		return r.Job(job).Keep(sample(family, promtext.TypeGauge, labels...))
	}
	for _, tc := range []struct {
		job, family string
		labels      []string
		want        bool
	}{
		{"cadvisor", "container_cpu_usage_seconds_total", []string{"namespace", "kube-system", "container", "kube-proxy"}, true},
		{"cadvisor", "container_cpu_usage_seconds_total", []string{"id", "/system.slice/kubelet.service"}, true},
		{"cadvisor", "container_cpu_usage_seconds_total", []string{"namespace", "default", "container", "app"}, false},
		{"cadvisor", "container_memory_rss", []string{"namespace", "kube-system"}, false},
		{"cadvisor", "container_fs_reads_bytes_total", nil, false},
		{"cadvisor", "container_spec_memory_limit_bytes", nil, false},
		{"cadvisor", "container_network_receive_errors_total", nil, false},
		{"cadvisor", "machine_cpu_cores", nil, false},
		{"kubelet", "kubelet_running_pods", nil, true},
		{"kubelet", "kubelet_image_pull_duration_seconds", nil, true},
		{"kubelet", "kubelet_volume_stats_used_bytes", []string{"namespace", "kube-system", "persistentvolumeclaim", "x"}, true},
		{"kubelet", "kubelet_volume_stats_used_bytes", []string{"namespace", "shop", "persistentvolumeclaim", "db"}, false},
		{"kubelet", "kubelet_volume_stats_inodes_used", nil, false},
		{"kubelet", "kubelet_pod_start_duration_seconds", nil, false},
		{"kubelet", "apiserver_audit_event_total", nil, false},
		{"node-exporter", "node_memory_MemAvailable_bytes", nil, true},
		{"node-exporter", "node_nf_conntrack_entries", nil, true},
		{"node-exporter", "node_nf_conntrack_entries_limit", nil, true},
		{"node-exporter", "node_load1", nil, true},
		{"node-exporter", "node_filesystem_avail_bytes", []string{"mountpoint", "/", "namespace", "anything"}, true},
		{"node-exporter", "node_load", nil, false},
		{"node-exporter", "node_memory_", nil, false},
		{"node-exporter", "node_network_receive_bytes_total", nil, false},
		{"node-exporter", "node_uname_info", nil, false},
		{"node-exporter", "node_disk_io_now", nil, false},
		{"node-exporter", "node_pressure_cpu_waiting_seconds_total", nil, false},
		{"node-exporter", "go_goroutines", nil, false},
		{"kubelet-resource", "container_cpu_usage_seconds_total", []string{"namespace", "shop"}, true},
		{"pods", "shop_orders_total", []string{"namespace", "shop"}, true},
		{"my-static-job", "anything", nil, true},
	} {
		if got := keep(tc.job, tc.family, tc.labels...); got != tc.want {
			t.Errorf("default %s Keep(%s %v) = %v, want %v", tc.job, tc.family, tc.labels, got, tc.want)
		}
	}
	for job, limit := range map[string]int{"pods": 10000, "kubelet-resource": 10000, "my-static-job": 10000, "cadvisor": 0} {
		if got := r.Job(job).SeriesLimit(); got != limit {
			t.Errorf("default %s SeriesLimit = %d, want %d", job, got, limit)
		}
	}
	// The returned document is a copy.
	doc := DefaultRulesYAML()
	doc[0] = 'X'
	if DefaultRulesYAML()[0] == 'X' {
		t.Error("DefaultRulesYAML returns the embedded bytes")
	}
}

// Keep allocates nothing once the families and label names have been seen.
func TestRulesKeepAllocsPerRun(t *testing.T) {
	c := mustParse(t, fullRules).Job("cadvisor")
	d := DefaultRules().Job("node-exporter")
	template := sample("container_cpu_usage_seconds_total", promtext.TypeCounter,
		"container", "kube-proxy", "id", "/kubepods/x", "image", "i", "container_label_app", "x", "namespace", "kube-system")
	dropped := sample("container_fs_usage_bytes", promtext.TypeGauge, "namespace", "kube-system")
	filtered := sample("container_memory_working_set_bytes", promtext.TypeGauge, "namespace", "default")
	node := sample("node_memory_MemFree_bytes", promtext.TypeGauge)
	buf := make([]promtext.Label, len(template.Labels))
	s := *template
	run := func() {
		s.Labels = buf[:copy(buf, template.Labels)]
		if !c.Keep(&s) || len(s.Labels) != 2 {
			panic("kept sample not kept")
		}
		if c.Keep(dropped) || c.Keep(filtered) || !d.Keep(node) {
			panic("wrong decision")
		}
	}
	run() // learn the families and label names
	if allocs := testing.AllocsPerRun(1000, run); allocs != 0 {
		t.Errorf("Keep allocates %v times per run in steady state, want 0", allocs)
	}
}

// Targets inventing family names fill the cache to its bound, not beyond, and
// decisions stay right past it.
func TestRulesCacheBounded(t *testing.T) {
	j := mustParse(t, `{jobs: {x: {keep: ["keep_.+"], dropLabels: ["tmp_.+"]}}}`).Job("x")
	for i := range maxCachedDecisions + 100 {
		prefix := "drop_"
		if i%2 == 0 {
			prefix = "keep_"
		}
		s := sample(fmt.Sprintf("%s%d", prefix, i), promtext.TypeGauge, fmt.Sprintf("tmp_%d", i), "v", "a", "b")
		if got := j.Keep(s); got != (prefix == "keep_") {
			t.Fatalf("Keep(%s) = %v", s.Family, got)
		}
		if prefix == "keep_" && labelString(s.Labels) != "a=b" {
			t.Fatalf("labels = %s", labelString(s.Labels))
		}
	}
	if n := len(j.families.m); n != maxCachedDecisions {
		t.Errorf("family cache holds %d, want the bound %d", n, maxCachedDecisions)
	}
	if n := len(j.labelNames.m); n > maxCachedDecisions {
		t.Errorf("label cache holds %d, over the bound %d", n, maxCachedDecisions)
	}
}

// Rules are shared by all scrape loops: Keep may run concurrently (run with -race).
func TestRulesKeepConcurrent(t *testing.T) {
	c := mustParse(t, fullRules).Job("cadvisor")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				fam := fmt.Sprintf("container_memory_%d", (i+g)%300)
				s := sample(fam, promtext.TypeGauge, "namespace", "kube-system", "id", "x", "container_label_z", "y")
				if !c.Keep(s) || labelString(s.Labels) != "namespace=kube-system" {
					t.Errorf("Keep(%s) wrong", fam)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestRuleSourceTruncatesEventMessage(t *testing.T) {
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate short = %q", got)
	}
	long := strings.Repeat("ä", 600) // 1200 bytes
	got := truncate(long, maxEventMessage)
	if len(got) > maxEventMessage || !strings.HasSuffix(got, " ...") || !strings.HasPrefix(got, "ää") {
		t.Errorf("truncate long: %d bytes, suffix %q", len(got), got[len(got)-6:])
	}
	if strings.ContainsRune(got, '\uFFFD') {
		t.Error("truncate split a character")
	}
}

func BenchmarkRulesKeep(b *testing.B) {
	c := DefaultRules().Job("cadvisor")
	samples := []*promtext.Sample{
		sample("container_cpu_usage_seconds_total", promtext.TypeCounter, "container", "kube-proxy", "cpu", "total", "id", "/kubepods/burstable/pod1/abc", "image", "registry/kube-proxy:v1.33", "name", "abc", "namespace", "kube-system", "pod", "kube-proxy-x"),
		sample("container_cpu_usage_seconds_total", promtext.TypeCounter, "container", "app", "namespace", "shop", "pod", "web-1"),
		sample("container_memory_rss", promtext.TypeGauge, "container", "app", "namespace", "kube-system", "pod", "web-1"),
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		c.Keep(samples[i%len(samples)])
	}
}

func FuzzParseRules(f *testing.F) {
	f.Add(DefaultRulesYAML())
	f.Add([]byte(fullRules))
	f.Add([]byte("{}"))
	f.Add([]byte("jobs: {a: {keep: ['(']}}"))
	f.Add([]byte("default: {labelFilters: [{label: a, regex: '', action: drop}], seriesLimit: 3}"))
	f.Add([]byte("a: &x [*x]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRules(data)
		if err != nil {
			var re *RulesError
			if r != nil || !errors.As(err, &re) || len(re.Problems) == 0 {
				t.Fatalf("error %v with rules %v", err, r)
			}
			return
		}
		for _, job := range append(r.Jobs(), "other") {
			j := r.Job(job)
			s := sample("container_cpu_usage_seconds_total", promtext.TypeCounter, "namespace", "kube-system", "id", "x")
			j.Keep(s)
			_ = j.SeriesLimit()
			_ = j.ConstLabels()
		}
	})
}
