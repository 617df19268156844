package mrsigner

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsDocumented: every series mr-signer registers is in the metrics table of
// docs/mr-signer.md, and the table lists nothing else.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mr-signer.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)[strings.Index(string(doc), "## Metrics"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(section, -1) {
		documented = append(documented, m[1])
	}
	const ns = "trellis_mr_signer"
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range newMetrics(ns).collectors() {
		c.Describe(ch)
	}
	close(ch)
	registered := []string{"quarantined_managed_resources"} // a GaugeFunc registered in run
	for d := range ch {
		name := regexp.MustCompile(`fqName: "([a-z_]+)"`).FindStringSubmatch(d.String())[1]
		registered = append(registered, strings.TrimPrefix(name, ns+"_"))
	}
	slices.Sort(documented)
	slices.Sort(registered)
	if !slices.Equal(documented, registered) {
		t.Fatalf("documented %v\nregistered %v", documented, registered)
	}
}
