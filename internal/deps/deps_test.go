// Package deps checks what each daemon binary links, against one golden file per
// binary (testdata/<daemon>.txt, tailscale's depaware is the model): a new
// dependency shows up as a diff in review instead of as megabytes nobody asked
// for (STYLE.md: per-binary dependency checks).
//
//	go test ./internal/deps -update   # after a reviewed change of what a daemon links
//
// A golden lists, from `go list -deps` of cmd/<daemon> as `make build` builds it
// (linux/amd64, CGO_ENABLED=0, -tags=grpcnotrace):
//   - "module <path>" for each module outside the standard library, without its
//     version (a version bump is go.mod's business);
//   - "package <path>" for each package of this module and of the modules in
//     byPackage, whose packages differ a lot in what they cost;
//   - "std <path>" for each standard library package that is not internal or
//     vendored (html/template, net/rpc, go/parser and the like are visible).
package deps

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/<daemon>.txt from go list -deps")

const module = "github.com/trellis-garden/trellis"

// byPackage are modules listed per package rather than as one line.
var byPackage = []string{
	module,
	"golang.org/x/crypto", // wg-gateway seals cookie replies with chacha20poly1305 and needs nothing else
}

// never are import path prefixes no daemon may link, whatever the goldens say
// (an -update cannot accept them by accident), with the reason.
var never = map[string]string{
	"testing":                                  "test code",
	"github.com/pion/":                         "STUN is internal/egressprobe's own codec; pion/stun is the reference of its tests only",
	"golang.zx2c4.com/wireguard":               "tests only: the gateway holds no keys and runs no WireGuard",
	"gvisor.dev/":                              "tests only (netstack peers)",
	"github.com/vishvananda/":                  "tests only (netnstest)",
	"github.com/google/nftables":               "tests only",
	"github.com/ti-mo/":                        "tests only: the reference decoder of the conntrack fuzz test",
	"github.com/prometheus/prometheus":         "otel-shoot-scraper has its own parser (internal/promtext)",
	"k8s.io/kubectl":                           "event-watcher's drain is a small eviction loop",
	"github.com/gardener/gardener":             "Gardener objects are read as unstructured objects",
	module + "/internal/imds/imdsfake":         "tests and demo only",
	module + "/internal/otlpexport/otlptest":   "tests only",
	module + "/internal/egressprobe/probetest": "tests only",
	module + "/internal/netnstest":             "tests only",
	module + "/internal/testenv":               "tests only",
	module + "/internal/testbin":               "tests only",
	module + "/internal/demo":                  "the demo only",
}

func daemons(t *testing.T) []string {
	entries, err := os.ReadDir("../../cmd")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		t.Fatal("no daemons under cmd/")
	}
	return names
}

func TestBinaryDependencies(t *testing.T) {
	for _, bin := range daemons(t) {
		t.Run(bin, func(t *testing.T) {
			t.Parallel()
			lines, pkgs := list(t, bin)
			for _, p := range pkgs {
				for prefix, why := range never {
					if p == prefix || strings.HasPrefix(p, prefix) && (strings.HasSuffix(prefix, "/") || strings.HasPrefix(p, prefix+"/")) {
						t.Errorf("%s links %s: never in a daemon (%s)", bin, p, why)
					}
				}
			}
			got := []byte(fmt.Sprintf("# %s links (go list -deps ./cmd/%s, linux/amd64, CGO_ENABLED=0, -tags=grpcnotrace).\n"+
				"# Regenerate after review: go test ./internal/deps -update\n%s\n", bin, bin, strings.Join(lines, "\n")))
			path := filepath.Join("testdata", bin+".txt")
			want := testkit.Golden(t, path, got, *update, "go test ./internal/deps -update")
			if !bytes.Equal(got, want) {
				t.Errorf("%s links something else than %s says:\n%s\nIf that is intended, regenerate: go test ./internal/deps -update",
					bin, path, diff(entries(want), lines))
			}
		})
	}
}

// list returns the golden's lines for a binary, sorted, and every package it links.
func list(t *testing.T, bin string) (lines, pkgs []string) {
	cmd := exec.Command("go", "list", "-deps", "-tags=grpcnotrace",
		"-f", "{{.ImportPath}}\t{{.Standard}}\t{{with .Module}}{{.Path}}{{end}}", "../../cmd/"+bin)
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/%s: %v\n%s", bin, err, stderr.Bytes())
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 3 {
			t.Fatalf("go list printed %q", l)
		}
		path, std, mod := f[0], f[1] == "true", f[2]
		pkgs = append(pkgs, path)
		var line string
		switch {
		case std && (strings.HasPrefix(path, "vendor/") || path == "internal" || strings.HasPrefix(path, "internal/") || strings.Contains(path, "/internal/") || strings.HasSuffix(path, "/internal")):
			continue
		case std:
			line = "std " + path
		case slices.Contains(byPackage, mod):
			line = "package " + path
		case mod == "":
			t.Fatalf("%s: package %s has no module", bin, path)
		default:
			line = "module " + mod
		}
		if !seen[line] {
			seen[line] = true
			lines = append(lines, line)
		}
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list -deps returned only %d packages", len(pkgs))
	}
	slices.Sort(lines)
	return lines, pkgs
}

// entries are a golden's lines without comments.
func entries(golden []byte) []string {
	var out []string
	for _, l := range strings.Split(string(golden), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// diff lists what is new (+) and what is gone (-), both sorted.
func diff(want, got []string) string {
	var b strings.Builder
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "  + %s\n", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "  - %s\n", l)
		}
	}
	if b.Len() == 0 {
		return "  (same entries; only the header or order differs)"
	}
	return b.String()
}
