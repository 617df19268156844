package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestGetFallsBackWhenNotLinked(t *testing.T) {
	old, oldRev := version, revision
	t.Cleanup(func() { version, revision = old, oldRev })

	version, revision = "", ""
	info := Get()
	if info.Version == "" || info.Revision == "" || info.GoVersion != runtime.Version() {
		t.Fatalf("fallback info = %+v", info)
	}
	version, revision = "v1.2.3", "abc123"
	info = Get()
	if info.Version != "v1.2.3" || info.Revision != "abc123" {
		t.Fatalf("linked info = %+v", info)
	}
	if s := info.String(); !strings.HasPrefix(s, "v1.2.3 (revision abc123, go") {
		t.Fatalf("String() = %q", s)
	}
}
