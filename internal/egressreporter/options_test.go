package egressreporter

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
)

func parse(t *testing.T, o interface {
	AddFlags(*pflag.FlagSet)
	Complete() error
	Validate() error
}, args ...string) error {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(); err != nil {
		return err
	}
	return o.Validate()
}

func TestOptionsValidate(t *testing.T) {
	t.Setenv("POD_NAMESPACE", "shoot--dev--crocus")
	if err := parse(t, NewOptions()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--source=magic,probe,probe"}, []string{`"magic" is not one of`, "probe given twice"}},
		{[]string{"--source=static"}, []string{"--static.cidrs: required"}},
		{[]string{"--source=probe", "--static.cidrs=1.2.3.4"}, []string{"--static.cidrs: required with --source=static, and only then"}},
		{[]string{"--source=static", "--static.cidrs=1.2.3.999"}, []string{"--static.cidrs"}},
		{[]string{"--infrastructure.namespace=", "--hysteresis.add=-1s", "--sync.interval=0s", "--shoot.kubeconfig=/nonexistent"},
			[]string{"--infrastructure.namespace", "--hysteresis.add", "--sync.interval", "--shoot.kubeconfig"}},
	} {
		err := parse(t, NewOptions(), c.args...)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v, want it to name %q", c.args, err, w)
			}
		}
	}

	t.Setenv("NODE_NAME", "n1")
	if err := parse(t, NewProbeOptions()); err != nil {
		t.Fatalf("probe defaults: %v", err)
	}
	err := parse(t, NewProbeOptions(), "--probe.stun.servers=nohostport", "--probe.http.urls=ftp://x", "--probe.interval=0s", "--node.name=")
	for _, w := range []string{"--probe.stun.servers", "--probe.http.urls", "--probe.interval", "--node.name"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("probe: error %v, want it to name %s", err, w)
		}
	}
	if err := parse(t, NewProbeOptions(), "--probe.families=ipv4,ipv7"); err == nil || !strings.Contains(err.Error(), "--probe.families") {
		t.Errorf("bad family: %v", err)
	}
}

// Every series both roles export is listed in docs/egress-reporter.md.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/egress-reporter.md")
	if err != nil {
		t.Fatal(err)
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	var cs []prometheus.Collector
	cs = append(cs, newMetrics("trellis_egress_reporter").collectors()...)
	cs = append(cs, newProbeMetrics("trellis_egress_probe").collectors()...)
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 10)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			name := strings.TrimPrefix(strings.TrimPrefix(m[1], "trellis_egress_reporter_"), "trellis_egress_probe_")
			if !strings.Contains(string(doc), "| `"+name+"` |") {
				t.Errorf("metric %s not in docs/egress-reporter.md", m[1])
			}
		}
	}
}
