// Package testenv starts a real etcd and kube-apiserver on free loopback ports for a
// test package and hands back clients. The binaries come from scripts/testenv.sh
// (`make testenv`), which builds them from the Go module proxy into a cache folder
// outside the repository.
//
// Use in a test package:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
//
//	func TestX(t *testing.T) {
//		env := testenv.Get(t) // started on first use, shared by the package
//		...
//	}
//
// Nothing runs nodes, pods or controllers: tests create Node and Pod objects and
// set their status themselves. Admission webhooks, CRDs, RBAC, evictions and
// server-side apply are the real API server's.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Versions the environment is built at; scripts/testenv.sh has the same defaults
// (TestVersionsMatchScript keeps them in step).
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.3"
)

// AssetsEnv names the folder holding kube-apiserver and etcd; the Makefile sets it.
const AssetsEnv = "TRELLIS_TESTENV_ASSETS"

// RequireEnv, when "true" (as CI=true), turns a missing environment into a failure
// instead of a skip.
const RequireEnv = "TRELLIS_TESTENV_REQUIRED"

// AssetsDir returns where the binaries are: $TRELLIS_TESTENV_ASSETS, else the cache
// folder scripts/testenv.sh builds into.
func AssetsDir() string {
	if d := os.Getenv(AssetsEnv); d != "" {
		return d
	}
	root := os.Getenv("TRELLIS_CACHE")
	if root == "" {
		base := os.Getenv("XDG_CACHE_HOME")
		if base == "" {
			home, _ := os.UserHomeDir()
			base = filepath.Join(home, ".cache")
		}
		root = filepath.Join(base, "trellis")
	}
	return filepath.Join(root, "testenv", "k8s-"+KubernetesVersion+"-etcd-"+EtcdVersion)
}

// Required reports whether a missing environment must fail tests.
func Required() bool {
	return os.Getenv("CI") == "true" || os.Getenv(RequireEnv) == "true"
}

// Env is a running etcd + kube-apiserver.
type Env struct {
	// Config is an admin (system:masters) config.
	Config  *rest.Config
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Dir holds the data, certificates, logs and Kubeconfig of this environment;
	// it is removed by Stop.
	Dir string
	// Kubeconfig is a kubeconfig file for Config, for binaries started by a test.
	Kubeconfig string

	etcd, apiserver *exec.Cmd
	waitErr         map[*exec.Cmd]chan error
}

// Start launches etcd and kube-apiserver from assets and returns once the API server's
// /readyz answers ok. Stop must be called.
func Start(ctx context.Context, assets string) (*Env, error) {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(assets, b)); err != nil {
			return nil, fmt.Errorf("testenv: %s not built (run `make testenv`): %w", b, err)
		}
	}
	var lastErr error
	// A free port can be taken between picking and binding; try again then.
	for attempt := 0; attempt < 3; attempt++ {
		env, err := start(ctx, assets)
		if err == nil {
			return env, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func start(ctx context.Context, assets string) (_ *Env, err error) {
	dir, err := os.MkdirTemp("", "trellis-testenv-")
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, waitErr: map[*exec.Cmd]chan error{}}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	e.etcd, err = e.launch(filepath.Join(assets, "etcd"), "etcd.log",
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient,
		"--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer,
		"--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=default="+etcdPeer,
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}

	saKey := filepath.Join(dir, "sa.key")
	if err := writeRSAKey(saKey); err != nil {
		return nil, err
	}
	token := randomHex(16)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+",admin,admin,system:masters\n"), 0o600); err != nil {
		return nil, err
	}
	certDir := filepath.Join(dir, "certs")
	port := ports[2]
	e.apiserver, err = e.launch(filepath.Join(assets, "kube-apiserver"), "kube-apiserver.log",
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// Without this the API server needs a routed interface and exits inside a
		// network namespace.
		"--endpoint-reconciler-type=none",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+certDir,
		"--service-account-key-file="+saKey,
		"--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--token-auth-file="+tokens,
		"--authorization-mode=RBAC",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No controller creates ServiceAccounts here; Pods created by tests must not
		// need them.
		"--disable-admission-plugins=ServiceAccount",
		"--v=0",
	)
	if err != nil {
		return nil, err
	}

	host := "https://127.0.0.1:" + strconv.Itoa(port)
	if err := e.waitReady(ctx, host, token, filepath.Join(certDir, "apiserver.crt")); err != nil {
		return nil, err
	}
	ca, err := os.ReadFile(filepath.Join(certDir, "apiserver.crt"))
	if err != nil {
		return nil, err
	}
	e.Config = &rest.Config{
		Host:            host,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		QPS:             200,
		Burst:           400,
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return nil, err
	}
	if e.Dynamic, err = dynamic.NewForConfig(e.Config); err != nil {
		return nil, err
	}
	e.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := WriteKubeconfig(e.Config, e.Kubeconfig); err != nil {
		return nil, err
	}
	return e, nil
}

// launch starts a binary with its output in a log file under Dir. The child gets
// SIGKILL if the test process dies, so nothing is left running.
//
// Linux sends Pdeathsig when the parent *thread* ends, and Go ends an OS thread
// when a goroutine that locked it returns (netnstest does that to enter network
// namespaces; zone-flow-tracer's tests share a process with this API server). A
// child forked from such a thread was killed in the middle of a test run
// ("connection refused"). So the child is started from a goroutine that keeps its
// thread locked until the child has exited: its parent thread outlives it.
func (e *Env) launch(bin, logName string, args ...string) (*exec.Cmd, error) {
	logFile, err := os.Create(filepath.Join(e.Dir, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	ch := make(chan error, 1)
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		ch <- cmd.Wait()
		logFile.Close()
	}()
	if err := <-started; err != nil {
		logFile.Close()
		return nil, fmt.Errorf("testenv: start %s: %w", bin, err)
	}
	e.waitErr[cmd] = ch
	return cmd, nil
}

func (e *Env) exited(cmd *exec.Cmd) error {
	select {
	case err := <-e.waitErr[cmd]:
		e.waitErr[cmd] <- err // keep it for Stop
		if err == nil {
			err = errors.New("exited")
		}
		return err
	default:
		return nil
	}
}

func (e *Env) waitReady(ctx context.Context, host, token, caFile string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last string
	for {
		for _, c := range []*exec.Cmd{e.etcd, e.apiserver} {
			if err := e.exited(c); err != nil {
				return fmt.Errorf("testenv: %s %v before ready; log tail:\n%s", filepath.Base(c.Path), err, e.logTail(filepath.Base(c.Path)+".log"))
			}
		}
		if ca, err := os.ReadFile(caFile); err == nil {
			cfg := &rest.Config{Host: host, BearerToken: token, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
			if rt, err := rest.TransportFor(cfg); err == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, host+"/readyz", nil)
				if resp, err := (&http.Client{Transport: rt, Timeout: 5 * time.Second}).Do(req); err == nil {
					body := new(bytes.Buffer)
					_, _ = body.ReadFrom(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return nil
					}
					last = fmt.Sprintf("/readyz %d: %s", resp.StatusCode, body.String())
				} else {
					last = err.Error()
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("testenv: kube-apiserver not ready (%s); log tail:\n%s", last, e.logTail("kube-apiserver.log"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (e *Env) logTail(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, name))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Stop ends kube-apiserver and etcd (SIGTERM, then SIGKILL after 10 s) and removes Dir.
func (e *Env) Stop() error {
	var errs []error
	for _, c := range []*exec.Cmd{e.apiserver, e.etcd} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.waitErr[c]:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-e.waitErr[c]
		}
	}
	if e.Dir != "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ImpersonatedConfig returns a copy of the admin config that acts as user (and
// groups): the API server authorizes it, and webhooks see it, as that user. RBAC
// applies to it.
func (e *Env) ImpersonatedConfig(user string, groups ...string) *rest.Config {
	cfg := rest.CopyConfig(e.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append([]string{"system:authenticated"}, groups...)}
	return cfg
}

// WriteKubeconfig writes cfg as a kubeconfig file (token or client certificate,
// CA data inline).
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["testenv"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["testenv"] = &clientcmdapi.AuthInfo{
		Token:                 cfg.BearerToken,
		ClientCertificateData: cfg.CertData,
		ClientKeyData:         cfg.KeyData,
		Impersonate:           cfg.Impersonate.UserName,
		ImpersonateGroups:     cfg.Impersonate.Groups,
	}
	kc.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "testenv"}
	kc.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*kc, path)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
