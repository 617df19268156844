package cluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/trellis-garden/trellis/internal/imagebuild"
)

// Down stops the cluster recorded in cfg.StateDir and restores the host:
// processes (components, containers, shims), mounts, the bridge and the node
// address, iptables rules and chains, sysctls, and the folders the components
// created outside the state folder. It goes on after an error and returns all
// of them; a second Down finds nothing to do. The logs stay in StateDir/logs.
func Down(cfg Config) error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var st hostState
	haveState := false
	if b, err := os.ReadFile(cfg.path("host.json")); err == nil {
		if err := json.Unmarshal(b, &st); err == nil {
			haveState = true
		}
	}
	// The node agents first, so nothing restarts containers; then every process in
	// the pods' cgroups, the shims, containerd, and the control plane.
	note(stopComponent(cfg, "kube-proxy"))
	note(stopComponent(cfg, "kubelet"))
	note(killCgroups("kubepods"))
	note(killShims(cfg))
	note(stopComponent(cfg, "containerd"))
	for i := len(components) - 1; i >= 0; i-- {
		note(stopComponent(cfg, components[i]))
	}
	if p := filepath.Join(cfg.BinDir, "kube-proxy"); fileExists(p) && haveState {
		// Removes the KUBE-* chains of iptables mode (the rest is diffed below).
		_ = exec.Command(p, "--cleanup", "--proxy-mode=iptables").Run()
	}
	note(unmountUnder(cfg.StateDir))
	for _, p := range st.Absent {
		note(unmountUnder(p))
	}
	note(removeCgroups("kubepods"))
	if fileExists("/sys/class/net/" + bridgeName) {
		note(run("ip", "link", "del", bridgeName))
	}
	note(RemovePeerAddress())
	if haveState {
		if st.AddedAddr {
			out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output()
			if strings.Contains(string(out), " "+NodeIP+"/32") {
				note(run("ip", "addr", "del", NodeIP+"/32", "dev", "lo"))
			}
		}
		note(restoreIptables(st.Iptables))
		note(removeNewNftTables(st.NftTables))
		for k, v := range st.Sysctls {
			cur := readFile("/proc/sys/" + k)
			if cur != "" && cur != v {
				cfg.logf("restoring sysctl %s=%s (was %s)", strings.ReplaceAll(k, "/", "."), v, cur)
				note(os.WriteFile("/proc/sys/"+k, []byte(v), 0o644))
			}
		}
		for _, p := range st.Absent {
			note(os.RemoveAll(p))
		}
	}
	// Conntrack entries of the cluster's addresses.
	for _, dir := range []string{"-s", "-d"} {
		_ = exec.Command("conntrack", "-D", dir, ClusterRange).Run()
	}
	for _, d := range []string{"containerd", "kubelet", "etcd", "cni", "pki", "pids", "hostpath"} {
		note(os.RemoveAll(cfg.path(d)))
	}
	if len(errs) == 0 || !haveState {
		_ = os.Remove(cfg.path("host.json"))
		for _, f := range []string{"admin", "kcm", "scheduler", "kubelet", "kube-proxy"} {
			_ = os.Remove(cfg.path(f + ".kubeconfig"))
		}
	}
	if len(errs) == 0 {
		cfg.logf("down; logs kept in %s", cfg.path("logs"))
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// stopComponent sends SIGTERM to a recorded component, waits up to 15s, then
// SIGKILL. Only a process this cluster started is signalled (ownProcess): the
// tests on this machine run the same kube-apiserver and etcd binaries, and a
// recorded pid may belong to one of them by now.
func stopComponent(cfg Config, name string) error {
	pidFile := cfg.path("pids", name)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	rec, ok := parsePidRecord(string(b))
	if !ok {
		return os.Remove(pidFile)
	}
	is := func() bool { return ownProcess(cfg, rec, name) }
	if !is() {
		return os.Remove(pidFile)
	}
	_ = syscall.Kill(rec.pid, syscall.SIGTERM)
	deadline := time.Now().Add(15 * time.Second)
	for is() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if is() {
		cfg.logf("%s (pid %d) ignored SIGTERM for 15s: SIGKILL", name, rec.pid)
		_ = syscall.Kill(rec.pid, syscall.SIGKILL)
		deadline = time.Now().Add(5 * time.Second)
		for is() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if is() {
			return fmt.Errorf("%s (pid %d) does not stop", name, rec.pid)
		}
	}
	return os.Remove(pidFile)
}

// pidRecord is what startProcess writes to pids/<name>: the pid and the
// process's start time (clock ticks since boot, /proc/<pid>/stat field 22),
// which together name one process even after the pid is reused.
type pidRecord struct {
	pid   int
	start uint64 // 0: not recorded (a pid file of an older version)
}

func (r pidRecord) String() string { return fmt.Sprintf("%d %d\n", r.pid, r.start) }

func parsePidRecord(s string) (pidRecord, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 2 {
		return pidRecord{}, false
	}
	pid, err := strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return pidRecord{}, false
	}
	r := pidRecord{pid: pid}
	if len(f) == 2 {
		if r.start, err = strconv.ParseUint(f[1], 10, 64); err != nil {
			return pidRecord{}, false
		}
	}
	return r, true
}

// procStart returns the start time of pid (clock ticks since boot) and whether
// it is a zombie.
func procStart(pid int) (start uint64, zombie bool, err error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, false, fmt.Errorf("pid %d: malformed stat", pid)
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, false, fmt.Errorf("pid %d: short stat", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z", err
}

// ownProcess reports whether rec is still the running (not zombie) component
// name that this cluster started: the same start time as recorded, a program
// named name, and this cluster's state folder on its command line (every
// component gets a path under it). A process of the same binary started by
// someone else (a test's kube-apiserver or etcd) never matches, also not when
// it got a recorded pid.
func ownProcess(cfg Config, rec pidRecord, name string) bool {
	start, zombie, err := procStart(rec.pid)
	if err != nil || zombie || (rec.start != 0 && start != rec.start) {
		return false
	}
	cmd, err := os.ReadFile("/proc/" + strconv.Itoa(rec.pid) + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmd), "\x00"), "\x00")
	if filepath.Base(args[0]) != name {
		return false
	}
	for _, a := range args[1:] {
		if strings.Contains(a, cfg.StateDir+"/") {
			return true
		}
	}
	return false
}

// cgroupDirs lists the folders of a cgroup named top in every mounted hierarchy.
func cgroupDirs(top string) []string {
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		d := filepath.Join(r, top)
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// killCgroups SIGKILLs every process in the cgroup trees named top until they
// are empty (10s at most).
func killCgroups(top string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for _, d := range cgroupDirs(top) {
			_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
				if err != nil || e.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
						left++
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
				return nil
			})
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d processes left in the %s cgroups", left, top)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeCgroups removes the (empty) cgroup trees named top, deepest first.
func removeCgroups(top string) error {
	var errs []error
	for _, d := range cgroupDirs(top) {
		var sub []string
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				sub = append(sub, p)
			}
			return nil
		})
		sort.Slice(sub, func(i, j int) bool { return len(sub[i]) > len(sub[j]) })
		for _, s := range sub {
			if err := syscall.Rmdir(s); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", s, err))
			}
		}
	}
	return errors.Join(errs...)
}

// killShims SIGKILLs the containerd shims of this cluster's containerd.
func killShims(cfg Config) error {
	sock := cfg.path("containerd", "containerd.sock")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if strings.HasPrefix(filepath.Base(args[0]), "containerd-shim") && strings.Contains(string(cmd), sock) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return nil
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	var errs []error
	for _, m := range mounts {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("umount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ours tells the chains and rules the cluster's components create.
func oursChain(c string) bool {
	for _, p := range []string{"KUBE-", "CNI-", "TRELLIS-E2E"} {
		if strings.HasPrefix(c, p) {
			return true
		}
	}
	return false
}

func oursRule(rule string, newChains map[string]bool) bool {
	for _, s := range []string{"198.18.", "198.19.", bridgeName, "kube", "KUBE-", "CNI-", "cni", "TRELLIS-E2E"} {
		if strings.Contains(rule, s) {
			return true
		}
	}
	for c := range newChains {
		if strings.Contains(rule, "-j "+c) || strings.Contains(rule, "-g "+c) {
			return true
		}
	}
	return false
}

// restoreIptables deletes the rules and chains the cluster added since the
// snapshot Up took (only those of the cluster: other rules added meanwhile
// stay).
func restoreIptables(before map[string][]string) error {
	var errs []error
	for key, rules := range before {
		bin, table, _ := strings.Cut(key, "/")
		now, err := iptablesRules(bin, table)
		if err != nil {
			continue
		}
		had := map[string]bool{}
		for _, r := range rules {
			had[r] = true
		}
		newChains := map[string]bool{}
		for _, r := range now {
			if strings.HasPrefix(r, "-N ") && !had[r] {
				if c := strings.TrimPrefix(r, "-N "); oursChain(c) {
					newChains[c] = true
				}
			}
		}
		for _, r := range now {
			if !strings.HasPrefix(r, "-A ") || had[r] {
				continue
			}
			chain := strings.Fields(r)[1]
			if newChains[chain] || !oursRule(r, newChains) {
				continue
			}
			args := append([]string{"-w", "-t", table, "-D"}, splitRule(strings.TrimPrefix(r, "-A "))...)
			if err := run(bin, args...); err != nil {
				errs = append(errs, err)
			}
		}
		for c := range newChains {
			_ = run(bin, "-w", "-t", table, "-F", c)
		}
		for c := range newChains {
			if err := run(bin, "-w", "-t", table, "-X", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// splitRule splits an `iptables -S` line into arguments (double quotes group).
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// writePauseImage writes the sandbox image: the pause program as root (it only
// waits), entrypoint /pause.
func writePauseImage(bin, file string) error {
	return imagebuild.WriteTarball(imagebuild.Spec{
		Ref:        PauseImage,
		Files:      []imagebuild.File{{Path: "/pause", Source: bin, Mode: 0o755}},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
	}, file)
}

// removeNewNftTables deletes the iptables-nft tables (ip/ip6 filter, nat,
// mangle, raw) that did not exist before Up, when only chain policies are left
// in them.
func removeNewNftTables(before []string) error {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil
	}
	had := map[string]bool{}
	for _, t := range before {
		had[t] = true
	}
	var errs []error
	for _, t := range nftTables() {
		fam, name, _ := strings.Cut(t, " ")
		if had[t] || (fam != "ip" && fam != "ip6") || (name != "filter" && name != "nat" && name != "mangle" && name != "raw") {
			continue
		}
		bin := "iptables"
		if fam == "ip6" {
			bin = "ip6tables"
		}
		rules, err := iptablesRules(bin, name)
		if err != nil {
			continue
		}
		empty := true
		for _, r := range rules {
			if !strings.HasPrefix(r, "-P ") {
				empty = false
			}
		}
		if empty {
			if err := run("nft", "delete", "table", fam, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
