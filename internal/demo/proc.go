package demo

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one daemon process started by the demo. Its stderr (JSON logs) goes to
// a file under the work folder; the addresses it logs are picked up from it.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string

	mu      sync.Mutex
	addrs   map[string]string // log message -> "address" of its first line
	changed chan struct{}     // closed and replaced whenever addrs grows

	done    chan struct{} // closed when the process has exited
	waitErr error
}

// starter runs start (exec.Cmd.Start) and, if it succeeded, wait (which
// blocks until the process exits) in the background, and returns start's
// error. nil means d.spawner.start.
//
// Every daemon gets Pdeathsig (SIGKILL when the demo dies), which Linux sends
// when the parent *thread* ends. Go ends an OS thread when a goroutine that
// locked it returns (netnstest and the zone-flow scenario do that to enter
// network namespaces), and LockOSThread pins whichever thread the goroutine is
// on, possibly one that started a daemon earlier. So processes are started only
// from threads that live as long as their children: the spawner's, and for
// zone-flow-tracer a thread locked into its node's namespace (inNetns).
type starter func(start func() error, wait func()) error

// spawner owns one OS thread, locked for the demo's lifetime, that starts
// processes.
type spawner struct {
	reqs chan func()
	done chan struct{}
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func()), done: make(chan struct{})}
	go func() {
		runtime.LockOSThread()
		for f := range s.reqs {
			f()
		}
		// Unlocking returns the thread to the runtime's pool instead of ending it.
		runtime.UnlockOSThread()
		close(s.done)
	}()
	return s
}

// do runs f on the spawner's thread.
func (s *spawner) do(f func()) {
	ran := make(chan struct{})
	s.reqs <- func() { defer close(ran); f() }
	<-ran
}

// start is the default starter.
func (s *spawner) start(start func() error, wait func()) error {
	var err error
	s.do(func() { err = start() })
	if err == nil {
		go wait()
	}
	return err
}

// close ends the spawner once its children are gone.
func (s *spawner) close() {
	close(s.reqs)
	<-s.done
}

// launch starts bin with args (plus --log.format=json) and returns once every
// message in waitFor has been logged with an address, or fails with the log's
// tail if the process exits or 60 s pass first.
func (d *Demo) launch(ctx context.Context, name, bin string, args []string, in starter, waitFor ...string) (*proc, error) {
	logPath := filepath.Join(d.dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append(args, "--log.format=json")...)
	cmd.Stdout = logFile
	// The daemon gets SIGKILL if the demo dies, so nothing is left running. Its
	// own process group keeps a terminal's Ctrl-C (sent to the whole foreground
	// group) away from it: the demo alone decides when it gets SIGTERM, once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, addrs: map[string]string{}, changed: make(chan struct{}), done: make(chan struct{})}
	if in == nil {
		in = d.spawner.start
	}
	if err := in(cmd.Start, func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	go p.readLogs(stderr, logFile)

	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		missing := ""
		for _, m := range waitFor {
			if p.addrs[m] == "" {
				missing = m
				break
			}
		}
		changed := p.changed
		p.mu.Unlock()
		if missing == "" {
			return p, nil
		}
		select {
		case <-changed:
		case <-p.done:
			return nil, fmt.Errorf("%s exited before logging %q (%v); log tail:\n%s", name, missing, p.waitErr, tail(logPath, 20))
		case <-deadline.C:
			return nil, fmt.Errorf("%s did not log %q within 60 s; log tail:\n%s", name, missing, tail(logPath, 20))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (p *proc) readLogs(r io.Reader, out *os.File) {
	defer out.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = out.Write(append(line, '\n'))
		var l struct{ Msg, Address string }
		if json.Unmarshal(line, &l) == nil && l.Address != "" {
			p.mu.Lock()
			if p.addrs[l.Msg] == "" {
				p.addrs[l.Msg] = l.Address
				close(p.changed)
				p.changed = make(chan struct{})
			}
			p.mu.Unlock()
		}
	}
	_, _ = io.Copy(out, r)
}

// addr returns the address logged with msg.
func (p *proc) addr(msg string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[msg]
}

// exited reports how the process ended, or "" while it runs.
func (p *proc) exited() string {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return "exited 0"
		}
		return p.waitErr.Error()
	default:
		return ""
	}
}

// stop sends SIGTERM and waits up to timeout for the exit (then SIGKILL). It
// returns the exit error (nil: exit code 0).
func (p *proc) stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("no exit within %s of SIGTERM: killed", timeout)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// metrics is a scraped /metrics page.
type metrics string

var httpClient = &http.Client{Timeout: 3 * time.Second}

// scrape fetches http://addr/metrics; an unreachable daemon gives an empty page.
func scrape(ctx context.Context, addr string) metrics {
	body, _ := get(ctx, "http://"+addr+"/metrics")
	return metrics(body)
}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// ready reports whether http://addr/readyz answers 200.
func ready(ctx context.Context, addr string) bool {
	_, err := get(ctx, "http://"+addr+"/readyz")
	return err == nil
}

// sum adds the values of every series of name whose labels include all of
// labels ("key", "value" pairs). Text format only, which every daemon serves.
func (m metrics) sum(name string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(string(m), "\n") {
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbls string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			lbls, rest = rest[1:end], rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // a longer name with this prefix
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(","+lbls+",", ","+labels[i]+"="+strconv.Quote(labels[i+1])+",") {
				match = false
				break
			}
		}
		if !match {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
			total += v
		}
	}
	return total
}

// errSkipped marks a scenario that cannot run here (wrapped with the reason).
var errSkipped = errors.New("skipped")
