package daemon

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// testOptions is a daemon's own option set.
type testOptions struct {
	Count     int
	Token     string
	completed bool
}

func (o *testOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Count, "test.count", 1, "A count, at least 1.")
	fs.StringVar(&o.Token, "test.token", "", "A secret.")
	MarkSensitive(fs, "test.token")
}
func (o *testOptions) Complete() error { o.completed = true; return nil }
func (o *testOptions) Validate() error {
	if o.Count < 1 {
		return fmt.Errorf("--test.count: must be at least 1, got %d", o.Count)
	}
	return nil
}

// execute runs a command built from spec with args and returns the exit code.
func execute(ctx context.Context, spec Spec, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	cmd := NewCommand(spec)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	code = Execute(ctx, cmd)
	return code, out.String(), errOut.String()
}

func TestFlagErrors(t *testing.T) {
	runCalled := false
	spec := Spec{Name: "test-daemon", Options: []Options{&testOptions{}}, Run: func(context.Context, *Daemon) error {
		runCalled = true
		return nil
	}}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flag", []string{"--no-such-flag"}, []string{"unknown flag: --no-such-flag"}},
		{"bad duration", []string{"--shutdown.timeout=soon"}, []string{"invalid argument \"soon\""}},
		{"every invalid value reported", []string{"--log.level=loud", "--log.format=xml", "--test.count=0", "--web.listen-address=nowhere"},
			[]string{`--log.level: "loud"`, `--log.format: "xml"`, "--test.count: must be at least 1", "--web.listen-address"}},
		{"positional argument", []string{"extra"}, []string{"unknown command"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := execute(context.Background(), spec, tc.args...)
			if code != 2 {
				t.Fatalf("exit code = %d, want 2; stderr:\n%s", code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if !strings.Contains(stderr, "Run 'test-daemon --help' for usage.") {
				t.Errorf("stderr lacks the usage hint:\n%s", stderr)
			}
		})
	}
	if runCalled {
		t.Fatal("Run was called despite invalid flags")
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	code, stdout, _ := execute(context.Background(), Spec{Name: "test-daemon", Options: []Options{&testOptions{}}, Run: func(context.Context, *Daemon) error { return nil }}, "--help")
	if code != 0 {
		t.Fatalf("exit code %d", code)
	}
	for _, f := range []string{"--log.level", "--log.format", "--web.listen-address", "--shutdown.timeout", "--web.pprof", "--test.count", "--test.token"} {
		if !strings.Contains(stdout, f) {
			t.Errorf("--help lacks %s:\n%s", f, stdout)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	spec := Spec{Name: "test-daemon", Run: func(context.Context, *Daemon) error { return nil }}
	code, stdout, _ := execute(context.Background(), spec, "version")
	if code != 0 || !strings.HasPrefix(stdout, "test-daemon ") || !strings.Contains(stdout, "revision") {
		t.Fatalf("version: code %d, output %q", code, stdout)
	}
	code, stdout, _ = execute(context.Background(), spec, "version", "-o", "json")
	var info map[string]string
	if code != 0 || json.Unmarshal([]byte(stdout), &info) != nil || info["goVersion"] == "" {
		t.Fatalf("version -o json: code %d, output %q", code, stdout)
	}
	if code, _, _ = execute(context.Background(), spec, "version", "-o", "yaml"); code != 2 {
		t.Fatalf("version -o yaml: exit code %d, want 2", code)
	}
}

// started runs a daemon in the background and returns its address once Run began.
type started struct {
	d      *Daemon
	logs   *testkit.SyncBuffer
	cancel context.CancelFunc
	done   chan struct{}
	code   int
}

func start(t *testing.T, run func(ctx context.Context, d *Daemon) error, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &started{logs: &testkit.SyncBuffer{}, cancel: cancel, done: make(chan struct{})}
	ready := make(chan *Daemon, 1)
	opts := &testOptions{}
	spec := Spec{
		Name:    "test-daemon",
		Options: []Options{opts},
		Stderr:  s.logs,
		Run: func(ctx context.Context, d *Daemon) error {
			if !opts.completed {
				return errors.New("Complete was not called")
			}
			ready <- d
			return run(ctx, d)
		},
	}
	cmd := NewCommand(spec)
	cmd.SetArgs(append([]string{"--web.listen-address=127.0.0.1:0", "--log.format=json"}, args...))
	cmd.SetOut(io.Discard)
	cmd.SetErr(s.logs)
	go func() { s.code = Execute(ctx, cmd); close(s.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
	})
	select {
	case s.d = <-ready:
	case <-s.done:
		t.Fatalf("daemon exited with %d before Run: %s", s.code, s.logs)
	case <-time.After(30 * time.Second):
		t.Fatal("Run was not called")
	}
	return s
}

func (s *started) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
		return s.code
	case <-time.After(30 * time.Second):
		t.Fatal("daemon did not exit")
		return -1
	}
}

func get(t *testing.T, s *started, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.d.WebAddr().String() + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestNotReadyBeforeChecks: /readyz fails until Run has registered a readiness
// check of its own, although the web server answers before Run starts.
func TestNotReadyBeforeChecks(t *testing.T) {
	release := make(chan struct{})
	s := start(t, func(ctx context.Context, d *Daemon) error {
		select {
		case <-release:
		case <-ctx.Done():
			return nil
		}
		d.Ready.Add("data-path", func(context.Context) error { return nil })
		<-ctx.Done()
		return nil
	})
	if code, body := get(t, s, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]started failed") {
		t.Fatalf("/readyz before Run registered its checks = %d %q, want 503 naming started", code, body)
	}
	close(release)
	testkit.EventuallyNil(t, "/readyz 200 after registration", func() error {
		if code, body := get(t, s, "/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
}

func TestEndpoints(t *testing.T) {
	gate := NewGate()
	s := start(t, func(ctx context.Context, d *Daemon) error {
		d.Ready.Add("data-path", gate.Check)
		<-ctx.Done()
		return nil
	})
	// Run registers the check right after it started; poll until it shows.
	testkit.EventuallyNil(t, "/readyz 503 naming data-path", func() error {
		if code, body := get(t, s, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "[-]data-path failed: not ready yet") {
			return fmt.Errorf("/readyz = %d %q", code, body)
		}
		return nil
	})
	if code, body := get(t, s, "/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}
	gate.Set(nil)
	if code, body := get(t, s, "/readyz?verbose"); code != 200 || !strings.Contains(body, "[+]data-path ok") || !strings.Contains(body, "[+]shutdown ok") {
		t.Fatalf("/readyz?verbose = %d %q", code, body)
	}
	gate.Set(errors.New("upstream gone"))
	if code, body := get(t, s, "/readyz"); code != 503 || !strings.Contains(body, "upstream gone") {
		t.Fatalf("/readyz after failure = %d %q", code, body)
	}
	code, body := get(t, s, "/metrics")
	for _, want := range []string{"trellis_test_daemon_build_info{", "go_goroutines ", "process_start_time_seconds "} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q (status %d)", want, code)
		}
	}
	if code, _ := get(t, s, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("pprof served without --web.pprof: %d", code)
	}
	s.cancel()
	if code := s.wait(t); code != 0 {
		t.Fatalf("exit code after cancel = %d, want 0; logs:\n%s", code, s.logs)
	}
}

func TestStartupLogsEveryFlagAndRedactsSecrets(t *testing.T) {
	s := start(t, func(ctx context.Context, d *Daemon) error {
		klog.Info("from client-go")
		return nil
	}, "--test.token=hunter2", "--test.count=3")
	if code := s.wait(t); code != 0 {
		t.Fatalf("exit code %d; logs:\n%s", code, s.logs)
	}
	logs := s.logs.String()
	if strings.Contains(logs, "hunter2") {
		t.Fatalf("secret flag value logged:\n%s", logs)
	}
	type line struct {
		Msg, Name, Value, Logger string
	}
	flags := map[string]string{}
	sawKlog := false
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var ln line
		if err := json.Unmarshal([]byte(l), &ln); err != nil {
			t.Fatalf("log line is not JSON: %q", l)
		}
		if ln.Msg == "flag" {
			flags[ln.Name] = ln.Value
		}
		if ln.Logger == "klog" && strings.Contains(l, "from client-go") {
			sawKlog = true
		}
	}
	if flags["test.token"] != "<redacted>" || flags["test.count"] != "3" || flags["log.level"] != "info" || len(flags) != 7 {
		t.Fatalf("logged flags = %v", flags)
	}
	if !sawKlog {
		t.Fatalf("klog output not routed into slog:\n%s", logs)
	}
}

func TestRunErrorStopsEverything(t *testing.T) {
	workerStopped := make(chan struct{})
	s := start(t, func(ctx context.Context, d *Daemon) error {
		d.Go("worker", func(ctx context.Context) error {
			<-ctx.Done()
			close(workerStopped)
			return ctx.Err()
		})
		d.Go("failing", func(context.Context) error { return errors.New("boom") })
		<-ctx.Done()
		return ctx.Err()
	})
	if code := s.wait(t); code != 1 {
		t.Fatalf("exit code = %d, want 1", code)
	}
	select {
	case <-workerStopped:
	default:
		t.Fatal("worker was not cancelled")
	}
	if !strings.Contains(s.logs.String(), "Error: failing: boom") {
		t.Fatalf("error not reported:\n%s", s.logs)
	}
}

func TestShutdownIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := start(t, func(ctx context.Context, d *Daemon) error {
		<-release // ignores ctx: a stuck component
		return nil
	}, "--shutdown.timeout=200ms")
	s.cancel()
	if code := s.wait(t); code != 1 {
		t.Fatalf("exit code = %d, want 1", code)
	}
	if !strings.Contains(s.logs.String(), ErrShutdownTimeout.Error()) {
		t.Fatalf("timeout not reported:\n%s", s.logs)
	}
}

func TestListenFailureIsAnError(t *testing.T) {
	s := start(t, func(ctx context.Context, d *Daemon) error { <-ctx.Done(); return nil })
	addr := s.d.WebAddr().String()
	code, _, stderr := execute(context.Background(), Spec{Name: "test-daemon", Run: func(context.Context, *Daemon) error { return nil }}, "--web.listen-address="+addr)
	if code != 1 || !strings.Contains(stderr, "listen on --web.listen-address") {
		t.Fatalf("second daemon on %s: code %d, stderr %q", addr, code, stderr)
	}
}

// The signal tests run the daemon in a child process: the test binary itself, with
// helperEnv set, so real signals reach a real process.
const helperEnv = "TRELLIS_DAEMON_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		Main(NewCommand(Spec{Name: "helper", Run: func(ctx context.Context, d *Daemon) error {
			fmt.Println("running")
			<-ctx.Done()
			if mode == "stuck" {
				select {} // never finishes shutdown
			}
			return nil
		}}))
	}
	os.Exit(m.Run())
}

func runHelper(t *testing.T, mode string, signals int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "--web.listen-address=", "--shutdown.timeout=1m")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode)
	stdout, _ := cmd.StdoutPipe()
	var stderr testkit.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "running\n" {
		t.Fatalf("helper did not start: %q %v; stderr:\n%s", line, err, stderr.String())
	}
	for i := 0; i < signals; i++ {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if i == 0 && signals > 1 {
			// The second signal must come after the first was handled.
			if !testkit.Until(testkit.Timeout, func() bool { return strings.Contains(stderr.String(), `"msg":"shutting down"`) }) {
				t.Fatalf("first signal not handled; stderr:\n%s", stderr.String())
			}
		}
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", err)
	return -1
}

func TestFirstSignalShutsDownCleanly(t *testing.T) {
	if code := runHelper(t, "clean", 1); code != 0 {
		t.Fatalf("exit code = %d, want 0", code)
	}
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	if code := runHelper(t, "stuck", 2); code != ExitCodeSecondSignal {
		t.Fatalf("exit code = %d, want %d", code, ExitCodeSecondSignal)
	}
}

func TestBytesFlag(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	var v int64
	BytesVar(fs, &v, "queue.max-size", 256<<20, "")
	if got := fs.Lookup("queue.max-size").DefValue; got != "256Mi" || v != 256<<20 {
		t.Fatalf("default %q, %d", got, v)
	}
	for in, want := range map[string]int64{"4Mi": 4 << 20, "1G": 1e9, "1024": 1024, "0": 0, "1.5Ki": 1536} {
		if err := fs.Set("queue.max-size", in); err != nil || v != want {
			t.Errorf("%s: %d, %v; want %d", in, v, err, want)
		}
	}
	for _, in := range []string{"-1Mi", "lots", "", "1.5", "100m", "1e30"} {
		if err := fs.Set("queue.max-size", in); err == nil {
			t.Errorf("%q accepted as %d", in, v)
		}
	}
}
