// Package docs holds no code, only the test that keeps the generated CLI reference
// (docs/cli/<daemon>.md) in step with the daemons' cobra commands.
//
//	go test ./docs -run TestCLIReference -update   # regenerate after changing a flag
package docs

import (
	"bytes"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/trellis-garden/trellis/internal/egressreporter"
	"github.com/trellis-garden/trellis/internal/eventwatcher"
	"github.com/trellis-garden/trellis/internal/mrsigner"
	"github.com/trellis-garden/trellis/internal/otelscraper"
	"github.com/trellis-garden/trellis/internal/testkit"
	"github.com/trellis-garden/trellis/internal/wggateway"
	"github.com/trellis-garden/trellis/internal/zoneflow"
)

var update = flag.Bool("update", false, "rewrite docs/cli/*.md from the commands")

// commands are the six daemons, by binary name.
var commands = map[string]func() *cobra.Command{
	"wg-gateway":         wggateway.NewCommand,
	"otel-shoot-scraper": otelscraper.NewCommand,
	"zone-flow-tracer":   zoneflow.NewCommand,
	"mr-signer":          mrsigner.NewCommand,
	"egress-reporter":    egressreporter.NewCommand,
	"event-watcher":      eventwatcher.NewCommand,
}

// envDefaults are environment variables some flags take their defaults from (the
// downward API in a pod); cleared so the reference does not depend on the machine.
var envDefaults = []string{"NODE_NAME", "POD_NAME", "POD_NAMESPACE", "KUBECONFIG"}

func TestCLIReference(t *testing.T) {
	for _, e := range envDefaults {
		t.Setenv(e, "")
	}
	for name, newCmd := range commands {
		t.Run(name, func(t *testing.T) {
			got := render(newCmd())
			path := filepath.Join("cli", name+".md")
			want := testkit.Golden(t, path, got, *update, "go test ./docs -run TestCLIReference -update")
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale: regenerate with `go test ./docs -run TestCLIReference -update`", path)
			}
		})
	}
}

// render writes a command and its subcommands as Markdown.
func render(root *cobra.Command) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# %s command reference\n\n", root.Name())
	fmt.Fprintf(&b, "Generated from the cobra command by `go test ./docs -run TestCLIReference -update`; do not edit.\n")
	var walk func(c *cobra.Command, depth int)
	walk = func(c *cobra.Command, depth int) {
		fmt.Fprintf(&b, "\n%s `%s`\n\n", strings.Repeat("#", depth+1), c.CommandPath())
		if c.Short != "" {
			fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(c.Short))
		}
		if c.Long != "" && c.Long != c.Short {
			fmt.Fprintf(&b, "%s\n\n", strings.TrimSpace(c.Long))
		}
		fmt.Fprintf(&b, "```\n%s\n```\n", c.UseLine())
		local := c.NonInheritedFlags()
		local.SortFlags = true
		if usages := flagUsages(local); usages != "" {
			fmt.Fprintf(&b, "\nFlags:\n\n```\n%s```\n", usages)
		}
		if usages := flagUsages(c.InheritedFlags()); usages != "" {
			fmt.Fprintf(&b, "\nInherited flags:\n\n```\n%s```\n", usages)
		}
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" || sub.Name() == "completion" {
				continue
			}
			walk(sub, depth+1)
		}
	}
	walk(root, 1)
	return b.Bytes()
}

func flagUsages(fs *pflag.FlagSet) string {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" {
			f.Hidden = true
		}
	})
	return fs.FlagUsagesWrapped(100)
}
