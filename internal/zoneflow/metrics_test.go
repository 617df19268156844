package zoneflow

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsDocumented keeps docs/zone-flow-tracer.md and the dashboard honest:
// every series the daemon exports is in the doc's metrics table, the table names
// nothing else, and the dashboard queries only series that exist.
func TestMetricsDocumented(t *testing.T) {
	const ns = "trellis_zone_flow_tracer"
	reg := prometheus.NewRegistry()
	m := newMetrics(ns)
	reg.MustRegister(m.collectors()...)
	m.dumps.WithLabelValues("success").Inc()
	p := newTestProcessor("n1")
	f := flow(1, n1Pod, n2Pod, n2Pod, n1Pod, 1, 1)
	p.Observe(&f)
	reg.MustRegister(newFlowCollector(ns, p, LabelsWorkload, Prices{}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var exported []string
	for _, mf := range mfs {
		exported = append(exported, strings.TrimPrefix(mf.GetName(), ns+"_"))
	}

	doc, err := os.ReadFile("../../docs/zone-flow-tracer.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	section = section[strings.Index(section, "## Metrics"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var documented []string
	for _, mm := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		documented = append(documented, mm[1])
	}
	slices.Sort(exported)
	slices.Sort(documented)
	if !slices.Equal(exported, documented) {
		t.Errorf("exported %v\ndocumented %v", exported, documented)
	}

	dash, err := os.ReadFile("../../deploy/zone-flow-tracer/dashboards/zone-flow-tracer.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, mm := range regexp.MustCompile(ns+`_([a-z_]+)`).FindAllStringSubmatch(string(dash), -1) {
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(mm[1], "_bucket"), "_count"), "_sum")
		if name != "build_info" && !slices.Contains(exported, name) {
			t.Errorf("dashboard queries %s_%s, which the daemon does not export", ns, mm[1])
		}
	}
}
