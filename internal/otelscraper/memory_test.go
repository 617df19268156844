package otelscraper

import (
	"os"
	"path/filepath"
	"testing"
)

// fakeCgroup writes files under a temporary cgroup root and a
// /proc/self/cgroup; it returns both paths.
func fakeCgroup(t *testing.T, self string, files map[string]string) (string, string) {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	selfFile := filepath.Join(t.TempDir(), "cgroup")
	if err := os.WriteFile(selfFile, []byte(self), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, selfFile
}

func TestMemoryLimit(t *testing.T) {
	const mi = 1 << 20
	v2 := map[string]string{"memory.max": "268435456\n"}
	v2Nested := map[string]string{"kubepods/pod1/memory.max": "104857600\n", "memory.max": "max\n"}
	v1 := map[string]string{"memory/memory.limit_in_bytes": "134217728\n"}
	v1Unlimited := map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}
	for _, tc := range []struct {
		name    string
		value   string
		self    string
		files   map[string]string
		want    int64
		wantErr bool
	}{
		{"auto, cgroup v2 namespace", "auto", "0::/\n", v2, 256 * mi / 100 * 90, false},
		{"auto, cgroup v2 nested", "auto", "0::/kubepods/pod1\n", v2Nested, 100 * mi / 100 * 90, false},
		{"auto, cgroup v2 without limit", "auto", "0::/\n", map[string]string{"memory.max": "max\n"}, 0, false},
		{"auto, cgroup v1", "auto", "4:memory:/\n0::/\n", v1, 128 * mi / 100 * 90, false},
		{"auto, cgroup v1 unlimited", "auto", "4:cpu,memory:/\n", v1Unlimited, 0, false},
		{"auto, no cgroup", "auto", "", nil, 0, false},
		{"off", "off", "0::/\n", v2, 0, false},
		{"zero", "0", "0::/\n", v2, 0, false},
		{"quantity", "200Mi", "", nil, 200 * mi, false},
		{"plain bytes", "1000000", "", nil, 1000000, false},
		{"share", "50%", "0::/\n", v2, 128 * mi, false},
		{"share without cgroup", "50%", "", nil, 0, true},
		{"share out of range", "150%", "0::/\n", v2, 0, true},
		{"garbage", "lots", "", nil, 0, true},
		{"negative", "-1Mi", "", nil, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, self := fakeCgroup(t, tc.self, tc.files)
			got, err := memoryLimit(tc.value, root, self)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("memoryLimit(%q) = %d, %v; want %d, error %v", tc.value, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
