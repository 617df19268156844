package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
)

func TestSplitRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`KUBE-SERVICES -m comment --comment "kubernetes service portals" -j KUBE-SERVICES`,
			[]string{"KUBE-SERVICES", "-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"}},
		{`FORWARD -s 198.18.64.0/24 -j TRELLIS-E2E-EGRESS`, []string{"FORWARD", "-s", "198.18.64.0/24", "-j", "TRELLIS-E2E-EGRESS"}},
		{`X -m comment --comment "" -j ACCEPT`, []string{"X", "-m", "comment", "--comment", "", "-j", "ACCEPT"}},
		{`X -m comment --comment "a \"quoted\" word"`, []string{"X", "-m", "comment", "--comment", `a "quoted" word`}},
		{`  spaced   out  `, []string{"spaced", "out"}},
	} {
		if got := splitRule(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitRule(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/a\040b/c\011d`); got != "/a b/c\td" {
		t.Errorf("got %q", got)
	}
	if got := unescapeMount(`/plain\x`); got != `/plain\x` {
		t.Errorf("got %q", got)
	}
}

// Only the cluster's rules and chains are removed at teardown; a rule someone
// else added meanwhile stays.
func TestOursRule(t *testing.T) {
	newChains := map[string]bool{"KUBE-FIREWALL": true}
	for rule, want := range map[string]bool{
		"-A INPUT -j KUBE-FIREWALL":                                                                true,
		"-A FORWARD -s 198.18.64.0/24 -j TRELLIS-E2E-EGRESS":                                       true,
		"-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING": true,
		"-A FORWARD -o trellis0 -j ACCEPT":                                                         true,
		"-A INPUT -s 10.0.0.0/8 -j DROP":                                                           false,
		"-A OUTPUT -d 192.0.2.1/32 -j ACCEPT":                                                      false,
	} {
		if got := oursRule(rule, newChains); got != want {
			t.Errorf("oursRule(%q) = %v, want %v", rule, got, want)
		}
	}
	for c, want := range map[string]bool{"KUBE-SVC-X": true, "CNI-HOSTPORT-DNAT": true, "TRELLIS-E2E-EGRESS": true, "DOCKER": false, "f2b-sshd": false} {
		if got := oursChain(c); got != want {
			t.Errorf("oursChain(%q) = %v", c, got)
		}
	}
}

// TestHelperProcess is the stand-in component of the stop tests: it waits for
// a signal (run through a link named like a component).
func TestHelperProcess(t *testing.T) {
	if os.Getenv("TRELLIS_CLUSTER_HELPER") != "1" {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM)
	<-ch
	os.Exit(0)
}

// startHelper starts the test binary under the program name name (a symlink),
// with extra arguments, and returns it; it is killed at the end of the test.
func startHelper(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), name)
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "TRELLIS_CLUSTER_HELPER=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-done })
	return cmd
}

func alive(pid int) bool {
	_, zombie, err := procStart(pid)
	return err == nil && !zombie
}

// A process of the same binary that the cluster did not start (a test's
// kube-apiserver or etcd) survives the cluster's teardown, also when its pid is
// the one recorded for the component (pid reuse), in the old pid-file format
// (pid only) and in the new one (pid and start time).
func TestStopComponentSparesForeignProcess(t *testing.T) {
	cfg := Config{StateDir: t.TempDir()}
	if err := os.MkdirAll(cfg.path("pids"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		// Started elsewhere, with its own folder on the command line.
		foreign := startHelper(t, name, "--data-dir="+filepath.Join(t.TempDir(), "etcd"))
		pid := foreign.Process.Pid
		start, _, err := procStart(pid)
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range []string{
			strconv.Itoa(pid),                  // old format: pid only
			fmt.Sprintf("%d %d", pid, start),   // same start time, but not ours
			fmt.Sprintf("%d %d", pid, start+1), // a recorded pid reused since
		} {
			if err := os.WriteFile(cfg.path("pids", name), []byte(rec), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := stopComponent(cfg, name); err != nil {
				t.Fatalf("stop %s (record %q): %v", name, rec, err)
			}
			if !alive(pid) {
				t.Fatalf("%s (pid %d, not the cluster's) was killed by the teardown (record %q)", name, pid, rec)
			}
			if _, err := os.Stat(cfg.path("pids", name)); !os.IsNotExist(err) {
				t.Errorf("the stale pid file of %s is left: %v", name, err)
			}
		}
	}
}

// The cluster's own component is stopped: started by startProcess with a path
// under the state folder on its command line.
func TestStopComponentStopsOwnProcess(t *testing.T) {
	cfg := Config{StateDir: t.TempDir()}
	for _, d := range []string{"pids", "logs"} {
		if err := os.MkdirAll(cfg.path(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "etcd")
	if err := os.Symlink(self, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TRELLIS_CLUSTER_HELPER", "1")
	if err := startProcess(cfg, "etcd", link, "-test.run=^TestHelperProcess$", "--", "--data-dir="+cfg.path("etcd")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(cfg.path("pids", "etcd"))
	if err != nil {
		t.Fatal(err)
	}
	rec, ok := parsePidRecord(string(b))
	if !ok || rec.start == 0 {
		t.Fatalf("pid record %q: want pid and start time", b)
	}
	t.Cleanup(func() { _ = syscall.Kill(rec.pid, syscall.SIGKILL) })
	if !ownProcess(cfg, rec, "etcd") {
		t.Fatalf("the started component (pid %d) is not recognised as the cluster's", rec.pid)
	}
	if err := stopComponent(cfg, "etcd"); err != nil {
		t.Fatal(err)
	}
	if alive(rec.pid) && ownProcess(cfg, rec, "etcd") {
		t.Fatalf("etcd (pid %d) still runs after stopComponent", rec.pid)
	}
}

func TestParsePidRecord(t *testing.T) {
	for in, want := range map[string]pidRecord{"123": {pid: 123}, "123 456\n": {pid: 123, start: 456}} {
		if got, ok := parsePidRecord(in); !ok || got != want {
			t.Errorf("parsePidRecord(%q) = %v, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "1", "0 5", "-3", "x", "12 y", "1 2 3"} {
		if _, ok := parsePidRecord(in); ok {
			t.Errorf("parsePidRecord(%q) accepted", in)
		}
	}
}
