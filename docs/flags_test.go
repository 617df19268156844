package docs

import (
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The flag naming rule of docs/daemon-runtime.md ("Flag names"), checked over every
// flag of every command of the six daemons.
var (
	// segment is one lower-case, dash-separated part of a name.
	flagName = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*(\.[a-z][a-z0-9]*(-[a-z0-9]+)*)*$`)
	// undotted are the daemon flags without a prefix: names every Kubernetes
	// component shares.
	undotted = map[string]string{
		"kubeconfig":   "kubectl's and every client's name",
		"leader-elect": "Kubernetes components' switch; its settings are leader-elect.*",
		"help":         "cobra's",
	}
	// sizeUnit is a unit in a flag name: sizes are quantities instead.
	sizeUnit = regexp.MustCompile(`-(kib|mib|gib|kb|mb|gb|bytes)$`)
	// sizeUsage is help text of an integer flag that is a size.
	sizeUsage = regexp.MustCompile(`(?i)\b(in bytes|KiB|MiB|GiB)\b`)
	// boolVerb starts a boolean's last segment that says how rather than what.
	boolVerb = regexp.MustCompile(`^(enable|disable|no|skip|use)-`)
	// placeholder is what pflag takes from `backquotes` in a usage string.
	placeholder = regexp.MustCompile(`^[a-z][a-z-]*$`)
)

func TestFlagNames(t *testing.T) {
	for _, e := range envDefaults {
		t.Setenv(e, "")
	}
	for name, newCmd := range commands {
		t.Run(name, func(t *testing.T) {
			root := newCmd()
			root.InitDefaultHelpCmd()
			root.InitDefaultCompletionCmd()
			if c, _, err := root.Find([]string{"completion"}); err == nil && c != root {
				t.Errorf("%s has a completion command (set CompletionOptions.DisableDefaultCmd)", name)
			}
			var walk func(c *cobra.Command)
			walk = func(c *cobra.Command) {
				// A command with the common daemon flags runs a daemon; others
				// (version, mr-signer sign/verify) are tools for a terminal.
				isDaemon := c.Flags().Lookup("log.level") != nil
				c.LocalFlags().VisitAll(func(f *pflag.Flag) {
					if msg := checkFlag(f, isDaemon); msg != "" {
						t.Errorf("%s --%s: %s", c.CommandPath(), f.Name, msg)
					}
				})
				for _, sub := range c.Commands() {
					walk(sub)
				}
			}
			walk(root)
		})
	}
}

func checkFlag(f *pflag.Flag, isDaemon bool) string {
	last := f.Name[strings.LastIndex(f.Name, ".")+1:]
	typ := f.Value.Type()
	switch {
	case !flagName.MatchString(f.Name):
		return "not lower-case words joined by - within and . between parts"
	case isDaemon && !strings.Contains(f.Name, ".") && undotted[f.Name] == "":
		return "no prefix: name it <group>.<name> (docs/daemon-runtime.md)"
	case sizeUnit.MatchString(last):
		return "a unit in the name: take the size as a quantity (daemon.BytesVar, e.g. 256Mi)"
	case strings.Contains(typ, "int") && sizeUsage.MatchString(f.Usage):
		return "an integer size: take it as a quantity (daemon.BytesVar, e.g. 256Mi)"
	case typ == "bool" && boolVerb.MatchString(last):
		return "a boolean names what it switches on (--web.pprof, --kubelet.enabled), not enable-/disable-/no-"
	}
	if p, _ := pflag.UnquoteUsage(f); strings.Contains(f.Usage, "`") && !placeholder.MatchString(p) {
		return "backquotes in the usage make " + p + " the value placeholder: one lower-case word, or no backquotes"
	}
	return ""
}

// TestCheckFlag: the rule catches what it is meant to catch.
func TestCheckFlag(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String("labels", "", "")
	fs.String("node.Name", "", "")
	fs.Int("queue.max-mib", 0, "")
	fs.Int("conntrack.event-buffer", 0, "Receive buffer in bytes.")
	fs.Bool("web.enable-pprof", false, "")
	fs.String("sign.key", "", "key `openssl genpkey` output")
	fs.String("good.name", "", "a `file`")
	fs.Bool("kubelet.enabled", false, "")
	for _, c := range []struct {
		name string
		bad  bool
	}{{"labels", true}, {"node.Name", true}, {"queue.max-mib", true}, {"conntrack.event-buffer", true},
		{"web.enable-pprof", true}, {"sign.key", true}, {"good.name", false}, {"kubelet.enabled", false}} {
		if msg := checkFlag(fs.Lookup(c.name), true); (msg != "") != c.bad {
			t.Errorf("--%s: %q", c.name, msg)
		}
	}
}
