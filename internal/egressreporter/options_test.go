package egressreporter

import (
	"strings"
	"testing"

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
		{[]string{"--egress.sources=magic,probe,probe"}, []string{`"magic" is not one of`, "probe given twice"}},
		{[]string{"--egress.sources=static"}, []string{"--static.cidrs: required"}},
		{[]string{"--egress.sources=probe", "--static.cidrs=1.2.3.4"}, []string{"--static.cidrs: required with --egress.sources=static, and only then"}},
		{[]string{"--egress.sources=static", "--static.cidrs=1.2.3.999"}, []string{"--static.cidrs"}},
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
