// Package version reports what a trellis binary was built from.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time: -ldflags "-X github.com/trellis-garden/trellis/internal/version.version=v0.1.0
// -X github.com/trellis-garden/trellis/internal/version.revision=abc123". Empty values
// fall back to what the Go toolchain recorded in the binary.
var (
	version  string
	revision string
)

// Info describes a build.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get returns the build information of the running binary.
func Get() Info {
	info := Info{
		Version:   version,
		Revision:  revision,
		GoVersion: runtime.Version(),
		Platform:  runtime.GOOS + "/" + runtime.GOARCH,
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Revision == "" {
				info.Revision = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Revision == "" {
		info.Revision = "unknown"
	}
	return info
}

// String formats the information for humans.
func (i Info) String() string {
	return fmt.Sprintf("%s (revision %s, %s, %s)", i.Version, i.Revision, i.GoVersion, i.Platform)
}
