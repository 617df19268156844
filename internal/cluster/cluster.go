// Package cluster starts and stops a real single-node Kubernetes cluster on this
// machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet
// and kube-proxy (built from the module proxy by scripts/testenv.sh and
// scripts/clusterbins.sh), Debian's containerd and runc, and the bridge CNI
// plugin. Every component binds to one node address on lo (NodeIP); all state
// lives under one folder; pods cannot reach anything outside the machine.
//
// Up records what it changes on the host (sysctls, iptables rules and chains,
// folders it creates outside the state folder, the address on lo) in the state
// folder; Down undoes all of it, also after a crash or an interrupted Up, so
// `make cluster-down` leaves the host as it found it. docs/development.md shows
// how to use it by hand; test/e2e deploys trellis on it.
package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Addresses of the cluster. They come from 198.18.0.0/15, the range reserved for
// network benchmarks (RFC 2544): never routed, so nothing here can be confused
// with a real network, and the egress rules drop everything else.
const (
	NodeIP       = "198.18.0.1"
	PodCIDR      = "198.18.64.0/24"
	ServiceCIDR  = "198.19.0.0/16"
	APIServiceIP = "198.19.0.1"
	ClusterRange = "198.18.0.0/15"
	NodeName     = "trellis-e2e"
	// PeerNodeIP is the InternalIP of a stand-in second node (a Node object
	// without a kubelet, in another zone) that a test may put on lo to receive
	// traffic as that node (AddPeerAddress); Down removes it.
	PeerNodeIP = "198.18.0.2"
	// Zone is the node's topology.kubernetes.io/zone label.
	Zone = "e2e-a"
	// PauseImage is the sandbox image Up builds and imports.
	PauseImage  = "trellis.local/pause:1"
	bridgeName  = "trellis0"
	apiPort     = 6443
	egressChain = "TRELLIS-E2E-EGRESS"
	// NonRootUID is the user of the trellis images; host-network pods run as it,
	// and the egress rules drop its traffic to anything but the cluster.
	NonRootUID = 65532
)

// Config says where the cluster's binaries and state are.
type Config struct {
	// StateDir holds everything the cluster writes (default: $TRELLIS_CACHE/cluster).
	StateDir string
	// BinDir has kube-apiserver, etcd, kubelet, kube-controller-manager,
	// kube-scheduler and kube-proxy (scripts/testenv.sh --path).
	BinDir string
	// RepoDir is the trellis checkout (to build the pause program).
	RepoDir string
	// Log receives progress lines (nil: discarded).
	Log io.Writer
}

// Cluster is a running cluster.
type Cluster struct {
	cfg        Config
	Kubeconfig string
	Client     *kubernetes.Clientset
	REST       *rest.Config
}

// hostState is what Up found on the host, so Down can restore it.
type hostState struct {
	Sysctls   map[string]string   `json:"sysctls"`
	Iptables  map[string][]string `json:"iptables"` // "iptables/filter" -> rules (-S)
	Absent    []string            `json:"absent"`   // paths that did not exist before Up
	AddedAddr bool                `json:"addedAddr"`
	// NftTables lists `nft list tables` before Up: iptables-nft creates its tables
	// on first use, and Down removes the ones it created (when empty).
	NftTables []string `json:"nftTables"`
}

// sysctls the kubelet, kube-proxy and the bridge plugin may change.
var sysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet", "net/ipv6/conf/all/forwarding",
	"net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables",
	"net/netfilter/nf_conntrack_max", "net/netfilter/nf_conntrack_acct",
	"net/netfilter/nf_conntrack_tcp_timeout_established", "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
	"net/netfilter/nf_conntrack_tcp_be_liberal",
}

// hostPaths the components create outside the state folder.
var hostPaths = []string{
	"/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/var/log/pods",
	"/run/containerd", "/var/run/kubernetes", "/run/netns", "/etc/kubernetes", "/var/lib/containerd",
	"/opt/containerd",
}

// components in start order; Down stops them in reverse.
var components = []string{"containerd", "etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"}

// DefaultStateDir is $TRELLIS_CACHE/cluster (default ~/.cache/trellis/cluster).
func DefaultStateDir() string {
	root := os.Getenv("TRELLIS_CACHE")
	if root == "" {
		c := os.Getenv("XDG_CACHE_HOME")
		if c == "" {
			home, _ := os.UserHomeDir()
			c = filepath.Join(home, ".cache")
		}
		root = filepath.Join(c, "trellis")
	}
	return filepath.Join(root, "cluster")
}

func (c Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "cluster: "+format+"\n", args...)
	}
}

func (c Config) path(elem ...string) string {
	return filepath.Join(append([]string{c.StateDir}, elem...)...)
}

// Running reports whether a cluster's state folder has a recorded host state
// (Up ran and Down has not finished).
func Running(stateDir string) bool {
	_, err := os.Stat(filepath.Join(stateDir, "host.json"))
	return err == nil
}

// Up starts the cluster and waits until the node is Ready. A cluster already
// recorded in StateDir is torn down first. On error everything started is
// torn down again.
func Up(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the local cluster needs root (containerd, kubelet, iptables)")
	}
	for _, b := range []string{"etcd", "kube-apiserver", "kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"} {
		if _, err := os.Stat(filepath.Join(cfg.BinDir, b)); err != nil {
			return nil, fmt.Errorf("%s missing in %s: run scripts/testenv.sh and scripts/clusterbins.sh (make cluster does)", b, cfg.BinDir)
		}
	}
	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip6tables", "ip", "conntrack"} {
		if _, err := exec.LookPath(b); err != nil {
			return nil, fmt.Errorf("%s not found: apt-get install containerd runc containernetworking-plugins iptables conntrack iproute2", b)
		}
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, errors.New("CNI plugins missing in /usr/lib/cni: apt-get install containernetworking-plugins")
	}
	if Running(cfg.StateDir) {
		cfg.logf("a previous cluster is recorded in %s: tearing it down first", cfg.StateDir)
		if err := Down(cfg); err != nil {
			return nil, fmt.Errorf("tear down the previous cluster: %w", err)
		}
	}
	if out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output(); bytes.Contains(out, []byte(" "+NodeIP+"/32")) {
		return nil, fmt.Errorf("%s is already on lo: another cluster runs (make cluster-down, or `go run ./scripts/cluster down --state <its folder>`)", NodeIP)
	}
	start := time.Now()
	if err := os.RemoveAll(cfg.StateDir); err != nil {
		return nil, err
	}
	for _, d := range []string{"logs", "pids", "pki", "bin", "cni/net.d", "containerd", "kubelet", "etcd"} {
		if err := os.MkdirAll(cfg.path(d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := recordHost(cfg); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			cfg.logf("bring-up failed (%v): tearing down", err)
			if derr := Down(cfg); derr != nil {
				cfg.logf("teardown: %v", derr)
			}
		}
	}()
	// Forwarding for the bridge; bridged pod traffic through the host's netfilter
	// (kube-proxy's Service rules and the host's conntrack, where
	// zone-flow-tracer reads it); byte counters in conntrack. Down restores all.
	for _, s := range []string{"net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/netfilter/nf_conntrack_acct"} {
		if err := os.WriteFile("/proc/sys/"+s, []byte("1"), 0o644); err != nil {
			return nil, fmt.Errorf("sysctl %s: %w", s, err)
		}
	}
	if err := setupNetwork(cfg); err != nil {
		return nil, err
	}
	if err := writeConfigs(cfg); err != nil {
		return nil, err
	}
	if err := buildPause(ctx, cfg); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "containerd", "containerd", "--config", cfg.path("containerd", "config.toml")); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, "containerd socket", func() error {
		_, err := os.Stat(cfg.path("containerd", "containerd.sock"))
		return err
	}); err != nil {
		return nil, withLog(cfg, "containerd", err)
	}
	if err := ImportImages(ctx, cfg, cfg.path("bin", "pause.tar")); err != nil {
		return nil, err
	}
	b := func(n string) string { return filepath.Join(cfg.BinDir, n) }
	if err := startProcess(cfg, "etcd", b("etcd"),
		"--name=trellis-e2e", "--data-dir="+cfg.path("etcd"),
		"--listen-client-urls=http://"+NodeIP+":2379", "--advertise-client-urls=http://"+NodeIP+":2379",
		"--listen-peer-urls=http://"+NodeIP+":2380", "--initial-advertise-peer-urls=http://"+NodeIP+":2380",
		"--initial-cluster=trellis-e2e=http://"+NodeIP+":2380",
		"--unsafe-no-fsync=true", "--log-level=warn"); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "kube-apiserver", b("kube-apiserver"),
		"--etcd-servers=http://"+NodeIP+":2379",
		"--bind-address="+NodeIP, "--advertise-address="+NodeIP, "--secure-port="+strconv.Itoa(apiPort),
		"--cert-dir="+cfg.path("pki"),
		"--service-account-key-file="+cfg.path("pki", "sa.key"),
		"--service-account-signing-key-file="+cfg.path("pki", "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+cfg.path("pki", "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--allow-privileged=true",
		"--kubelet-preferred-address-types=InternalIP",
		// logs, exec, port-forward: the kubelet accepts this client certificate.
		"--kubelet-client-certificate="+cfg.path("pki", "apiserver-kubelet-client.crt"),
		"--kubelet-client-key="+cfg.path("pki", "apiserver-kubelet-client.key"),
		"--profiling=false", "--v=0"); err != nil {
		return nil, err
	}
	kc := cfg.path("admin.kubeconfig")
	cl := &Cluster{cfg: cfg, Kubeconfig: kc}
	if err := waitFor(ctx, 120*time.Second, "kube-apiserver /readyz", func() error {
		if _, err := os.Stat(cfg.path("pki", "apiserver.crt")); err != nil {
			return err
		}
		if err := writeKubeconfigs(cfg); err != nil {
			return err
		}
		rc, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			return err
		}
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return err
		}
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("%v: %s", err, body)
		}
		cl.Client, cl.REST = cs, rc
		return nil
	}); err != nil {
		return nil, withLog(cfg, "kube-apiserver", err)
	}
	if err := bootstrapRBAC(ctx, cl.Client); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "kube-controller-manager", b("kube-controller-manager"),
		"--kubeconfig="+cfg.path("kcm.kubeconfig"),
		"--authentication-kubeconfig="+cfg.path("kcm.kubeconfig"),
		"--authorization-kubeconfig="+cfg.path("kcm.kubeconfig"),
		"--bind-address="+NodeIP, "--secure-port=10257",
		"--service-account-private-key-file="+cfg.path("pki", "sa.key"),
		"--root-ca-file="+cfg.path("pki", "apiserver.crt"),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--leader-elect=false", "--profiling=false",
		"--controllers=*"); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "kube-scheduler", b("kube-scheduler"),
		"--kubeconfig="+cfg.path("scheduler.kubeconfig"),
		"--authentication-kubeconfig="+cfg.path("scheduler.kubeconfig"),
		"--authorization-kubeconfig="+cfg.path("scheduler.kubeconfig"),
		"--bind-address="+NodeIP, "--secure-port=10259",
		"--leader-elect=false", "--profiling=false"); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "kubelet", b("kubelet"),
		"--config="+cfg.path("kubelet", "config.yaml"),
		"--kubeconfig="+cfg.path("kubelet.kubeconfig"),
		"--root-dir="+cfg.path("kubelet", "root"),
		"--cert-dir="+cfg.path("kubelet", "pki"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP,
		"--node-labels=topology.kubernetes.io/zone="+Zone+",topology.kubernetes.io/region=e2e",
		"--v=1"); err != nil {
		return nil, err
	}
	if err := startProcess(cfg, "kube-proxy", b("kube-proxy"), "--config="+cfg.path("kube-proxy.yaml")); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 120*time.Second, "node "+NodeName+" Ready", func() error {
		n, err := cl.Client.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return errors.New("not Ready")
	}); err != nil {
		return nil, withLog(cfg, "kubelet", err)
	}
	// The default ServiceAccount must exist before pods can be created.
	if err := waitFor(ctx, 60*time.Second, "default ServiceAccount", func() error {
		_, err := cl.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return nil, withLog(cfg, "kube-controller-manager", err)
	}
	cfg.logf("up in %s; kubeconfig %s", time.Since(start).Round(100*time.Millisecond), kc)
	return cl, nil
}

// AddPeerAddress puts PeerNodeIP on lo (Down removes it).
func AddPeerAddress() error { return run("ip", "addr", "replace", PeerNodeIP+"/32", "dev", "lo") }

// RemovePeerAddress takes PeerNodeIP off lo when it is there.
func RemovePeerAddress() error {
	out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output()
	if !bytes.Contains(out, []byte(" "+PeerNodeIP+"/32")) {
		return nil
	}
	return run("ip", "addr", "del", PeerNodeIP+"/32", "dev", "lo")
}

// HostPathDir is a folder under the state folder for a pod's hostPath volume
// (owned by uid and gid NonRootUID, so the non-root daemons can write it); Down
// removes it with the rest of the state.
func (c *Cluster) HostPathDir(name string) (string, error) {
	d := c.cfg.path("hostpath", name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	return d, os.Chown(d, NonRootUID, NonRootUID)
}

// Attach returns a client of the cluster recorded in cfg.StateDir.
func Attach(cfg Config) (*Cluster, error) {
	kc := cfg.path("admin.kubeconfig")
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg, Kubeconfig: kc, Client: cs, REST: rc}, nil
}

// LogFile is the log of one component ("kubelet", "containerd", ...).
func (c *Cluster) LogFile(component string) string { return c.cfg.path("logs", component+".log") }

// PodLogDir is where the kubelet writes the containers' logs.
func (c *Cluster) PodLogDir() string { return c.cfg.path("kubelet", "pod-logs") }

// ImportImages loads image tarballs into containerd's k8s.io namespace.
func ImportImages(ctx context.Context, cfg Config, tarballs ...string) error {
	for _, t := range tarballs {
		out, err := exec.CommandContext(ctx, "ctr", "--address", cfg.path("containerd", "containerd.sock"),
			"-n", "k8s.io", "images", "import", "--no-unpack=false", t).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %v: %s", t, err, out)
		}
	}
	return nil
}

// Ctr runs ctr against the cluster's containerd (namespace k8s.io).
func Ctr(ctx context.Context, cfg Config, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "ctr", append([]string{"--address", cfg.path("containerd", "containerd.sock"), "-n", "k8s.io"}, args...)...).CombinedOutput()
}

func withLog(cfg Config, component string, err error) error {
	return fmt.Errorf("%w\n--- last lines of %s:\n%s", err, cfg.path("logs", component+".log"), tail(cfg.path("logs", component+".log"), 25))
}

func tail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitFor polls check every 250ms until it returns nil or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s: %v", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// startProcess starts a component in its own session (it outlives `make
// cluster`), logging to logs/<name>.log, its pid in pids/<name>.
func startProcess(cfg Config, name, bin string, args ...string) error {
	logf, err := os.OpenFile(cfg.path("logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = cfg.StateDir
	cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	rec := pidRecord{pid: cmd.Process.Pid}
	// The start time makes the record name this process only (pids are reused).
	if st, _, err := procStart(rec.pid); err == nil {
		rec.start = st
	}
	if err := os.WriteFile(cfg.path("pids", name), []byte(rec.String()), 0o644); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap it while this process lives
	cfg.logf("started %s (pid %d)", name, cmd.Process.Pid)
	return nil
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// recordHost saves what Down must restore: sysctls, iptables rules, which host
// folders did not exist.
func recordHost(cfg Config) error {
	st := hostState{Sysctls: map[string]string{}, Iptables: map[string][]string{}}
	st.NftTables = nftTables()
	for _, s := range sysctls {
		if v, err := os.ReadFile("/proc/sys/" + s); err == nil {
			st.Sysctls[s] = strings.TrimSpace(string(v))
		}
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle", "raw"} {
			rules, err := iptablesRules(bin, table)
			if err != nil {
				continue // table not available
			}
			st.Iptables[bin+"/"+table] = rules
		}
	}
	for _, p := range hostPaths {
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			st.Absent = append(st.Absent, p)
		}
	}
	out, _ := exec.Command("ip", "-o", "addr", "show", "dev", "lo").Output()
	st.AddedAddr = !bytes.Contains(out, []byte(" "+NodeIP+"/32"))
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(cfg.path("host.json"), b, 0o644)
}

func iptablesRules(bin, table string) ([]string, error) {
	out, err := exec.Command(bin, "-w", "-t", table, "-S").Output()
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(out), "\n"), "\n"), nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// setupNetwork puts the node address on lo and blocks egress: pods (forwarded
// traffic from the pod range) and host-network pods (uid NonRootUID) may reach
// the cluster's ranges and loopback only.
func setupNetwork(cfg Config) error {
	if err := run("ip", "addr", "replace", NodeIP+"/32", "dev", "lo"); err != nil {
		return err
	}
	if err := run("iptables", "-w", "-N", egressChain); err != nil {
		return err
	}
	rules := [][]string{
		{"-A", egressChain, "-d", ClusterRange, "-j", "RETURN"},
		{"-A", egressChain, "-d", "127.0.0.0/8", "-j", "RETURN"},
		{"-A", egressChain, "-j", "DROP"},
		{"-I", "FORWARD", "1", "-s", PodCIDR, "-j", egressChain},
		{"-I", "OUTPUT", "1", "-m", "owner", "--uid-owner", strconv.Itoa(NonRootUID), "-j", egressChain},
	}
	for _, r := range rules {
		if err := run("iptables", append([]string{"-w"}, r...)...); err != nil {
			return err
		}
	}
	// No IPv6 for pods: drop forwarded IPv6 from the bridge and host-network
	// traffic of the non-root user to anything but loopback.
	_ = run("ip6tables", "-w", "-N", egressChain)
	for _, r := range [][]string{
		{"-A", egressChain, "-d", "::1/128", "-j", "RETURN"},
		{"-A", egressChain, "-j", "DROP"},
		{"-I", "FORWARD", "1", "-i", bridgeName, "-j", egressChain},
		{"-I", "OUTPUT", "1", "-m", "owner", "--uid-owner", strconv.Itoa(NonRootUID), "-j", egressChain},
	} {
		_ = run("ip6tables", append([]string{"-w"}, r...)...)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tokens of the static token file: user -> token.
var identities = []struct{ file, user, groups string }{
	{"admin", "trellis-admin", "system:masters"},
	{"kcm", "system:kube-controller-manager", ""},
	{"scheduler", "system:kube-scheduler", ""},
	{"kubelet", "system:node:" + NodeName, "system:nodes"},
	{"kube-proxy", "system:kube-proxy", ""},
}

func writeConfigs(cfg Config) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfg.path("pki", "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeKubeletClientPKI(cfg); err != nil {
		return err
	}
	var tokens strings.Builder
	for _, id := range identities {
		tok := randomHex(16)
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok, id.user, id.user, id.groups)
		if err := os.WriteFile(cfg.path("pki", id.file+".token"), []byte(tok), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(cfg.path("pki", "tokens.csv"), []byte(tokens.String()), 0o600); err != nil {
		return err
	}
	files := map[string]string{
		"containerd/config.toml": fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
`, cfg.path("containerd", "root"), cfg.path("containerd", "state"), cfg.path("containerd", "containerd.sock"),
			cfg.path("containerd", "containerd.sock.ttrpc"), cfg.path("containerd", "opt"), PauseImage, cfg.path("cni", "net.d")),
		"cni/net.d/10-trellis.conflist": fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "trellis-e2e",
  "plugins": [
    {
      "type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, bridgeName, cfg.path("cni", "ipam"), PodCIDR),
		"kubelet/config.yaml": fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: %[1]s
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[6]s}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[2]s
podCIDR: %[3]s
clusterDomain: cluster.local
resolvConf: %[4]s
podLogsDir: %[5]s
failSwapOn: false
protectKernelDefaults: false
serializeImagePulls: false
rotateCertificates: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
maxPods: 60
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
`, NodeIP, cfg.path("containerd", "containerd.sock"), PodCIDR, cfg.path("kubelet", "resolv.conf"), cfg.path("kubelet", "pod-logs"),
			cfg.path("pki", "kubelet-client-ca.crt")),
		// No name server: pods have no DNS (no names leave the machine); the e2e
		// uses Service IPs.
		"kubelet/resolv.conf": "options ndots:1\n",
		"kube-proxy.yaml": fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: iptables
clusterCIDR: %[2]s
bindAddress: %[3]s
healthzBindAddress: %[3]s:10256
metricsBindAddress: %[3]s:10249
nodePortAddresses: ["%[3]s/32"]
hostnameOverride: %[4]s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, cfg.path("kube-proxy.kubeconfig"), PodCIDR, NodeIP, NodeName),
	}
	for name, content := range files {
		p := cfg.path(name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeKubeconfigs writes one kubeconfig per identity, trusting the
// apiserver's self-signed certificate (pki/apiserver.crt holds it and its CA).
func writeKubeconfigs(cfg Config) error {
	ca, err := os.ReadFile(cfg.path("pki", "apiserver.crt"))
	if err != nil {
		return err
	}
	for _, id := range identities {
		tok, err := os.ReadFile(cfg.path("pki", id.file+".token"))
		if err != nil {
			return err
		}
		kc := clientcmdapi.NewConfig()
		kc.Clusters["trellis-e2e"] = &clientcmdapi.Cluster{Server: fmt.Sprintf("https://%s:%d", NodeIP, apiPort), CertificateAuthorityData: ca}
		kc.AuthInfos[id.file] = &clientcmdapi.AuthInfo{Token: string(tok)}
		kc.Contexts["trellis-e2e"] = &clientcmdapi.Context{Cluster: "trellis-e2e", AuthInfo: id.file}
		kc.CurrentContext = "trellis-e2e"
		if err := clientcmd.WriteToFile(*kc, cfg.path(id.file+".kubeconfig")); err != nil {
			return err
		}
	}
	return nil
}

// bootstrapRBAC lets the kubelet review tokens and access (its webhook
// authentication and authorization; the Node authorizer does not cover them).
func bootstrapRBAC(ctx context.Context, cs *kubernetes.Clientset) error {
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "trellis-e2e:nodes"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:node"},
		Subjects:   []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "system:nodes"}},
	}
	return waitFor(ctx, 30*time.Second, "bootstrap RBAC", func() error {
		_, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return err
	})
}

// buildPause builds the sandbox program and its image tarball.
func buildPause(ctx context.Context, cfg Config) error {
	bin := cfg.path("bin", "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "./internal/cluster/pause")
	cmd.Dir = cfg.RepoDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build pause: %v: %s", err, out)
	}
	return writePauseImage(bin, cfg.path("bin", "pause.tar"))
}

// nftTables lists the nftables tables ("ip filter"), nil without nft.
func nftTables() []string {
	out, err := exec.Command("nft", "list", "tables").Output()
	if err != nil {
		return nil
	}
	var ts []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			ts = append(ts, t)
		}
	}
	return ts
}

// writeKubeletClientPKI writes a CA the kubelet trusts for client certificates
// and the API server's client certificate signed by it (system:masters), so that
// the API server can reach the kubelet for logs, exec and port-forward (without
// it, `kubectl logs` gets "You must be logged in to the server").
func writeKubeletClientPKI(cfg Config) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "trellis-e2e-kubelet-client-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	for name, b := range map[string]*pem.Block{
		"kubelet-client-ca.crt":        {Type: "CERTIFICATE", Bytes: caDER},
		"apiserver-kubelet-client.crt": {Type: "CERTIFICATE", Bytes: der},
		"apiserver-kubelet-client.key": {Type: "EC PRIVATE KEY", Bytes: kder},
	} {
		if err := os.WriteFile(cfg.path("pki", name), pem.EncodeToMemory(b), 0o600); err != nil {
			return err
		}
	}
	return nil
}
