package wggateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/trellis-garden/trellis/internal/testkit"
)

// --- helpers shared by the source tests ---

// sourceTestKey returns a distinct valid key and its base64 form.
func sourceTestKey(i byte) ([32]byte, string) {
	var k [32]byte
	for j := range k {
		k[j] = i + byte(j)
	}
	k[0] = i | 0x80 // never all zero
	return k, base64.StdEncoding.EncodeToString(k[:])
}

// sourceUpdates records what a source hands to update.
type sourceUpdates struct {
	mu    sync.Mutex
	lists [][]Backend
}

func (u *sourceUpdates) update(bs []Backend) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.lists = append(u.lists, bs)
}

func (u *sourceUpdates) snapshot() [][]Backend {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.lists)
}

func (u *sourceUpdates) count() int { return len(u.snapshot()) }

// waitFor polls until the latest list equals want, or fails after a deadline.
func (u *sourceUpdates) waitFor(t *testing.T, want []Backend) {
	t.Helper()
	var latest []Backend
	ok := testkit.Until(testkit.Timeout, func() bool {
		lists := u.snapshot()
		if len(lists) == 0 {
			return false
		}
		latest = lists[len(lists)-1]
		return slices.Equal(latest, want)
	})
	if !ok {
		t.Fatalf("backends never became\n  %v\nlatest\n  %v", want, latest)
	}
}

// checkNoRepeats fails when two consecutive updates carried the same list, or a
// list was not sorted by name.
func (u *sourceUpdates) checkNoRepeats(t *testing.T) {
	t.Helper()
	lists := u.snapshot()
	for i, l := range lists {
		if !slices.IsSortedFunc(l, func(a, b Backend) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("update %d not sorted by name: %v", i, l)
		}
		if i > 0 && slices.Equal(lists[i-1], l) {
			t.Errorf("update %d repeats the previous list: %v", i, l)
		}
	}
}

// sourceMetric returns the value of one series, or -1 when it does not exist.
func sourceMetric(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	if v, ok := testkit.Metric(t, reg, name, labels...); ok {
		return v
	}
	return -1
}

func sourceTestLogger() (*slog.Logger, *testkit.SyncBuffer) {
	buf := &testkit.SyncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// runSource runs src until the test ends; the returned channel gets Run's result.
func runSource(t *testing.T, src Source, u *sourceUpdates) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, u.update) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after cancel = %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return done
}

func newFileSourceForTest(t *testing.T, path string) (*FileSource, *prometheus.Registry, *testkit.SyncBuffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	log, buf := sourceTestLogger()
	return NewFileSource(path, 10*time.Millisecond, log, NewSourceMetrics(reg, "test")), reg, buf
}

// --- parsePublicKey and metrics ---

func TestSourceParsePublicKey(t *testing.T) {
	key, b64 := sourceTestKey(7)
	urlSafe := strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)))
	for _, tc := range []struct {
		in      string
		want    [32]byte
		wantErr string
	}{
		{in: b64, want: key},
		{in: "  " + b64 + "\n", want: key}, // as `wg pubkey > file` leaves it
		{in: "", wantErr: "empty"},
		{in: b64[:43], wantErr: "44 characters"},
		{in: b64 + "A", wantErr: "44 characters"},
		{in: base64.StdEncoding.EncodeToString(make([]byte, 32)), wantErr: "all zeros"},
		{in: urlSafe, wantErr: "not standard base64"},
		{in: strings.Repeat("!", 44), wantErr: "not standard base64"},
		// 44 characters but 33 or 31 bytes.
		{in: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 33)), wantErr: "32 bytes"},
		{in: base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 31)), wantErr: "32 bytes"},
		// Non-canonical last character (padding bits set) is rejected by Strict.
		{in: b64[:42] + "B=", wantErr: "not standard base64"},
	} {
		got, err := parsePublicKey(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parsePublicKey(%q) = %v, want error containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parsePublicKey(%q) = %x, %v; want %x", tc.in, got, err, tc.want)
		}
	}
}

func TestSourceMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewSourceMetrics(reg, "trellis_wg_gateway")
	b := NewSourceMetrics(reg, "trellis_wg_gateway") // shares a's series
	a.init(sourceLabelFile)
	b.updated(sourceLabelFile)
	a.updated(sourceLabelFile)
	if got := sourceMetric(t, reg, "trellis_wg_gateway_backend_source_updates_total", "source", "file"); got != 2 {
		t.Errorf("updates = %v, want 2 (shared series)", got)
	}
	for _, r := range allSkipReasons {
		if got := sourceMetric(t, reg, "trellis_wg_gateway_backend_problems_total", "source", "file", "reason", string(r)); got != 0 {
			t.Errorf("backend_problems_total{reason=%s} = %v, want 0 from the start", r, got)
		}
	}
	for _, name := range []string{"trellis_wg_gateway_invalid_backends", "trellis_wg_gateway_backend_source_errors_total"} {
		if got := sourceMetric(t, reg, name, "source", "file"); got != 0 {
			t.Errorf("%s = %v, want 0", name, got)
		}
	}
	// Unregistered and nil metrics are usable.
	NewSourceMetrics(nil, "x").failed(sourceLabelFile)
	var none *SourceMetrics
	none.init(sourceLabelKube)
	none.failed(sourceLabelKube)
	none.updated(sourceLabelKube)
	none.setInvalid(sourceLabelKube, 3)
	none.invalidSeen(sourceLabelKube, skipInvalidKey)
}

// A problem is logged and counted when it appears or changes, not on every pass.
func TestSourceProblemTrackerReportsChangesOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	log, buf := sourceTestLogger()
	tr := problemTracker{source: sourceLabelFile, nameKey: "backend", log: log, metrics: NewSourceMetrics(reg, "t")}
	bad := sourceProblem{skipInvalidKey, "x"}
	if got := tr.set(map[string]sourceProblem{"a": bad}); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("first set = %v", got)
	}
	if got := tr.set(map[string]sourceProblem{"a": bad}); got != nil {
		t.Fatalf("same problem again = %v, want none", got)
	}
	if got := tr.set(map[string]sourceProblem{"a": {skipMissingKey, "y"}, "b": bad}); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("changed problem = %v", got)
	}
	if got := sourceMetric(t, reg, "t_backend_problems_total", "source", "file", "reason", "invalid_key"); got != 2 {
		t.Errorf("invalid_key total = %v, want 2", got)
	}
	if got := sourceMetric(t, reg, "t_invalid_backends", "source", "file"); got != 2 {
		t.Errorf("invalid_backends = %v, want 2", got)
	}
	tr.set(nil)
	if got := sourceMetric(t, reg, "t_invalid_backends", "source", "file"); got != 0 {
		t.Errorf("invalid_backends after recovery = %v, want 0", got)
	}
	if n := strings.Count(buf.String(), "skipping invalid backend"); n != 3 {
		t.Errorf("logged %d problems, want 3:\n%s", n, buf)
	}
	if !strings.Contains(buf.String(), "backend no longer skipped") {
		t.Errorf("recovery not logged:\n%s", buf)
	}
}

// --- file source ---

func TestFileSourceLoadsAndReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "backends.yaml")
	ka, a := sourceTestKey(1)
	kb, b := sourceTestKey(2)
	kc, c := sourceTestKey(3)
	testkit.WriteAtomic(t, path, fmt.Sprintf(`backends:
  - name: shoot-b
    publicKey: %s
    endpoint: "[fd00::5]:51820"
  - name: shoot-a
    publicKey: %s
    endpoint: 10.0.0.5:51820
`, b, a))
	src, reg, logs := newFileSourceForTest(t, path)
	u := &sourceUpdates{}
	runSource(t, src, u)
	u.waitFor(t, []Backend{
		{Name: "shoot-a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.5:51820")},
		{Name: "shoot-b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("[fd00::5]:51820")},
	})
	if !src.HasSynced() {
		t.Error("HasSynced false after the first update")
	}

	// A change is picked up: b moves, c arrives.
	testkit.WriteAtomic(t, path, fmt.Sprintf(`backends:
  - {name: shoot-a, publicKey: %s, endpoint: "10.0.0.5:51820"}
  - {name: shoot-b, publicKey: %s, endpoint: "[fd00::6]:51821"}
  - {name: shoot-c, publicKey: %s, endpoint: "[::ffff:10.0.0.7]:51820"}
`, a, b, c))
	second := []Backend{
		{Name: "shoot-a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.5:51820")},
		{Name: "shoot-b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("[fd00::6]:51821")},
		{Name: "shoot-c", PublicKey: kc, Endpoint: netip.MustParseAddrPort("10.0.0.7:51820")}, // unmapped
	}
	u.waitFor(t, second)

	// Invalid YAML, an unknown top-level field, an empty file (a write caught half
	// way) and a missing file each keep the last good list and count an error.
	updates := u.count()
	for i, bad := range []string{"backends: [ {name: x\n", "backend: []\n", "", "# only a comment\n"} {
		testkit.WriteAtomic(t, path, bad)
		if !testkit.Until(testkit.Timeout, func() bool {
			return sourceMetric(t, reg, "test_backend_source_errors_total", "source", "file") == float64(i+1)
		}) {
			t.Fatalf("error %d (%q) not counted", i+1, bad)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if !testkit.Until(testkit.Timeout, func() bool {
		return sourceMetric(t, reg, "test_backend_source_errors_total", "source", "file") == 5
	}) {
		t.Fatal("missing file not counted")
	}
	if u.count() != updates {
		t.Fatalf("a bad file changed the list: %v", u.snapshot()[updates:])
	}
	for _, msg := range []string{"backends file invalid, keeping the last good list", "backends file unreadable, keeping the last good list"} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("log lacks %q:\n%s", msg, logs)
		}
	}

	// The file comes back with the content of the list in use: loaded, but nothing
	// to update. Then a real change.
	loads := strings.Count(logs.String(), "backends file loaded")
	testkit.WriteAtomic(t, path, fmt.Sprintf(`backends:
  - {name: shoot-c, publicKey: %s, endpoint: "10.0.0.7:51820"}
  - {name: shoot-b, publicKey: %s, endpoint: "[fd00::6]:51821"}
  - {name: shoot-a, publicKey: %s, endpoint: "10.0.0.5:51820"}
`, c, b, a))
	if !testkit.Until(testkit.Timeout, func() bool { return strings.Count(logs.String(), "backends file loaded") > loads }) {
		t.Fatal("restored file not loaded")
	}
	if u.count() != updates {
		t.Fatalf("the same list was handed over again: %v", u.snapshot()[updates:])
	}
	testkit.WriteAtomic(t, path, fmt.Sprintf("backends:\n  - {name: shoot-a, publicKey: %s, endpoint: 10.0.0.9:51820}\n", a))
	u.waitFor(t, []Backend{{Name: "shoot-a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.9:51820")}})
	if got := sourceMetric(t, reg, "test_backend_source_updates_total", "source", "file"); got != float64(u.count()) {
		t.Errorf("updates_total = %v, update called %d times", got, u.count())
	}
	testkit.WriteAtomic(t, path, "backends: []\n")
	u.waitFor(t, []Backend{})
	u.checkNoRepeats(t)
}

// A ConfigMap volume swaps a "..data" symlink; the file's own path never changes.
func TestFileSourceFollowsConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	ka, a := sourceTestKey(1)
	version := func(name, endpoint string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		content := fmt.Sprintf("backends:\n  - {name: a, publicKey: %s, endpoint: %q}\n", a, endpoint)
		if err := os.WriteFile(filepath.Join(dir, name, "backends.yaml"), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(name, filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", "192.0.2.1:51820")
	path := filepath.Join(dir, "backends.yaml")
	if err := os.Symlink(filepath.Join("..data", "backends.yaml"), path); err != nil {
		t.Fatal(err)
	}
	src, _, _ := newFileSourceForTest(t, path)
	u := &sourceUpdates{}
	runSource(t, src, u)
	u.waitFor(t, []Backend{{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("192.0.2.1:51820")}})
	version("..v2", "[2001:db8::1]:51820")
	u.waitFor(t, []Backend{{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("[2001:db8::1]:51820")}})
}

func TestFileSourceSkipsInvalidEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backends.yaml")
	k1, b1 := sourceTestKey(1)
	k2, b2 := sourceTestKey(2)
	k3, b3 := sourceTestKey(3)
	zero := base64.StdEncoding.EncodeToString(make([]byte, 32))
	content := fmt.Sprintf(`backends:
  - {name: good, publicKey: %[1]s, endpoint: "10.1.0.1:51820"}
  - {name: v6, publicKey: %[2]s, endpoint: "[fd00::1]:443"}
  - {name: no-key, endpoint: "10.1.0.2:51820"}
  - {name: short-key, publicKey: abc, endpoint: "10.1.0.3:51820"}
  - {name: zero-key, publicKey: %[4]s, endpoint: "10.1.0.4:51820"}
  - {name: no-endpoint, publicKey: %[3]s}
  - {name: bare-ipv6, publicKey: %[3]s, endpoint: "fd00::1:51820"}
  - {name: port-zero, publicKey: %[3]s, endpoint: "10.1.0.5:0"}
  - {name: port-big, publicKey: %[3]s, endpoint: "10.1.0.5:70000"}
  - {name: unspecified, publicKey: %[3]s, endpoint: "0.0.0.0:51820"}
  - {name: typo, publicKey: %[3]s, endpoint: "10.1.0.6:51820", port: 1}
  - {name: wrong-case, PublicKey: %[3]s, endpoint: "10.1.0.7:51820"}
  - {name: good, publicKey: %[3]s, endpoint: "10.1.0.8:51820"}
  - {name: "has space", publicKey: %[3]s, endpoint: "10.1.0.9:51820"}
  - {publicKey: %[3]s, endpoint: "10.1.0.10:51820"}
  - null
  - just-a-string
  - {name: same-key-later, publicKey: %[1]s, endpoint: "10.1.0.11:51820"}
  - {name: a-same-key-first, publicKey: %[3]s, endpoint: "10.1.0.12:51820"}
  - {name: z-same-key, publicKey: %[3]s, endpoint: "10.1.0.13:51820"}
`, b1, b2, b3, zero)
	testkit.WriteAtomic(t, path, content)
	src, reg, logs := newFileSourceForTest(t, path)
	u := &sourceUpdates{}
	runSource(t, src, u)
	want := []Backend{
		{Name: "a-same-key-first", PublicKey: k3, Endpoint: netip.MustParseAddrPort("10.1.0.12:51820")},
		{Name: "good", PublicKey: k1, Endpoint: netip.MustParseAddrPort("10.1.0.1:51820")},
		{Name: "v6", PublicKey: k2, Endpoint: netip.MustParseAddrPort("[fd00::1]:443")},
	}
	u.waitFor(t, want)

	reasons := map[skipReason]float64{
		skipMissingKey:   1, // no-key
		skipInvalidKey:   2, // short-key, zero-key
		skipNoAddress:    3, // no-endpoint, bare-ipv6, unspecified
		skipInvalidPort:  2, // port-zero, port-big
		skipInvalidEntry: 7, // typo, wrong-case, second good, has space, no name, null, string
		skipDuplicateKey: 2, // same-key-later (after good), z-same-key (after a-same-key-first)
	}
	check := func() {
		t.Helper()
		var total float64
		for r, want := range reasons {
			total += want
			if got := sourceMetric(t, reg, "test_backend_problems_total", "source", "file", "reason", string(r)); got != want {
				t.Errorf("backend_problems_total{reason=%s} = %v, want %v", r, got, want)
			}
		}
		if got := sourceMetric(t, reg, "test_invalid_backends", "source", "file"); got != total {
			t.Errorf("invalid_backends = %v, want %v", got, total)
		}
	}
	check()
	for _, line := range []string{
		`backend=same-key-later reason=duplicate_key detail="public key already used by good`,
		`backend=z-same-key reason=duplicate_key detail="public key already used by a-same-key-first`,
		`backend=backends[12] reason=invalid_entry detail="name \"good\" already used by backends[0]"`,
		`backend=backends[10] reason=invalid_entry detail="unknown field \"port\""`,
		`backend=short-key reason=invalid_key`,
	} {
		if !strings.Contains(logs.String(), line) {
			t.Errorf("log lacks %s:\n%s", line, logs)
		}
	}

	// A change elsewhere in the file does not count the same problems again.
	_, b4 := sourceTestKey(4)
	testkit.WriteAtomic(t, path, content+fmt.Sprintf("  - {name: zz-new, publicKey: %s, endpoint: \"10.1.0.14:51820\"}\n", b4))
	k4, _ := sourceTestKey(4)
	u.waitFor(t, append(slices.Clone(want), Backend{Name: "zz-new", PublicKey: k4, Endpoint: netip.MustParseAddrPort("10.1.0.14:51820")}))
	check()
	u.checkNoRepeats(t)
}

func TestFileSourceFirstLoadFailureIsFatal(t *testing.T) {
	dir := t.TempDir()
	_, key := sourceTestKey(1)
	for name, content := range map[string]string{
		"invalid-yaml":  "backends:\n  - name: [\n",
		"unknown-top":   "backend:\n  - {name: a}\n",
		"wrong-type":    "backends: {name: a}\n",
		"duplicate-top": "backends: []\nbackends: []\n",
		"empty":         "",
		"list":          "- {name: a, publicKey: " + key + ", endpoint: 10.0.0.1:1}\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".yaml")
			testkit.WriteAtomic(t, path, content)
			reg := prometheus.NewRegistry()
			src := NewFileSource(path, time.Millisecond, nil, NewSourceMetrics(reg, "test"))
			called := false
			err := src.Run(context.Background(), func([]Backend) { called = true })
			if err == nil || !strings.Contains(err.Error(), path) {
				t.Fatalf("Run = %v, want an error naming the file", err)
			}
			if called || src.HasSynced() {
				t.Error("update called for a bad file")
			}
			if got := sourceMetric(t, reg, "test_backend_source_errors_total", "source", "file"); got != 1 {
				t.Errorf("errors_total = %v, want 1", got)
			}
		})
	}
	err := NewFileSource(filepath.Join(dir, "missing.yaml"), 0, nil, nil).Run(context.Background(), func([]Backend) {})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: Run = %v", err)
	}
}

// An empty list is a valid first load and is handed over once.
func TestFileSourceEmptyListIsUpdated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backends.yaml")
	testkit.WriteAtomic(t, path, "backends: []\n")
	src, _, _ := newFileSourceForTest(t, path)
	u := &sourceUpdates{}
	runSource(t, src, u)
	u.waitFor(t, []Backend{})
}

// fakeResolver answers host lookups from a map and counts them.
type fakeResolver struct {
	mu    sync.Mutex
	hosts map[string][]netip.Addr
	err   error
	calls int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if network != "ip" {
		return nil, fmt.Errorf("network %q", network)
	}
	if r.err != nil {
		return nil, r.err
	}
	addrs, ok := r.hosts[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	return slices.Clone(addrs), nil
}

func (r *fakeResolver) set(host string, addrs []netip.Addr, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.hosts == nil {
		r.hosts = map[string][]netip.Addr{}
	}
	r.hosts[host] = addrs
	r.err = err
}

func (r *fakeResolver) callCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func TestFileSourceResolvesHostNames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "backends.yaml")
	ka, a := sourceTestKey(1)
	kb, b := sourceTestKey(2)
	testkit.WriteAtomic(t, path, fmt.Sprintf(`backends:
  - {name: a, publicKey: %s, endpoint: "vpn-a.example:51820"}
  - {name: b, publicKey: %s, endpoint: "vpn-b.example:51821"}
`, a, b))
	res := &fakeResolver{}
	res.set("vpn-a.example", []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("fd00::9"), netip.MustParseAddr("10.0.0.3")}, nil)
	src, reg, _ := newFileSourceForTest(t, path)
	src.resolver = res
	u := &sourceUpdates{}
	runSource(t, src, u)
	// b does not resolve: skipped; a gets its lowest address.
	u.waitFor(t, []Backend{{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.3:51820")}})
	if got := sourceMetric(t, reg, "test_backend_problems_total", "source", "file", "reason", "no_address"); got != 1 {
		t.Errorf("no_address = %v, want 1", got)
	}

	// Names are resolved again at every poll: b appears once it resolves.
	res.set("vpn-b.example", []netip.Addr{netip.MustParseAddr("fd00::b")}, nil)
	u.waitFor(t, []Backend{
		{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.3:51820")},
		{Name: "b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("[fd00::b]:51821")},
	})

	// Round-robin order or a new lower address does not move a backend whose
	// address is still answered; a failing lookup keeps the addresses.
	res.set("vpn-a.example", []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.3"), netip.MustParseAddr("10.0.0.1")}, nil)
	updates := u.count()
	calls := res.callCount()
	if !testkit.Until(testkit.Timeout, func() bool { return res.callCount() >= calls+6 }) {
		t.Fatal("names not resolved again")
	}
	res.set("vpn-a.example", nil, errors.New("temporary failure"))
	calls = res.callCount()
	if !testkit.Until(testkit.Timeout, func() bool { return res.callCount() >= calls+6 }) {
		t.Fatal("names not resolved again")
	}
	if u.count() != updates {
		t.Fatalf("list changed without need: %v", u.snapshot()[updates:])
	}

	// The address goes away: the backend moves to the remaining lowest one.
	res.set("vpn-a.example", []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.4")}, nil)
	u.waitFor(t, []Backend{
		{Name: "a", PublicKey: ka, Endpoint: netip.MustParseAddrPort("10.0.0.4:51820")},
		{Name: "b", PublicKey: kb, Endpoint: netip.MustParseAddrPort("[fd00::b]:51821")},
	})
	u.checkNoRepeats(t)
}

func TestFileSourceParseEndpoint(t *testing.T) {
	for _, tc := range []struct {
		in     string
		addr   string // want an address
		host   string // or a host to resolve
		reason skipReason
	}{
		{in: "10.0.0.5:51820", addr: "10.0.0.5:51820"},
		{in: " [fd00::5]:51820 ", addr: "[fd00::5]:51820"},
		{in: "[::ffff:192.0.2.1]:1", addr: "192.0.2.1:1"},
		{in: "[fe80::1%eth0]:51820", addr: "[fe80::1%eth0]:51820"},
		{in: "vpn.example.com:51820", host: "vpn.example.com"},
		{in: "localhost:65535", host: "localhost"},
		{in: "", reason: skipNoAddress},
		{in: "10.0.0.5", reason: skipNoAddress},
		{in: "fd00::5:51820", reason: skipNoAddress},
		{in: ":51820", reason: skipNoAddress},
		{in: "[::]:51820", reason: skipNoAddress},
		{in: "[bad%host]:1", reason: skipNoAddress},
		{in: "10.0.0.5:0", reason: skipInvalidPort},
		{in: "10.0.0.5:65536", reason: skipInvalidPort},
		{in: "10.0.0.5:-1", reason: skipInvalidPort},
		{in: "10.0.0.5:wireguard", reason: skipInvalidPort},
	} {
		ap, host, _, p := parseEndpoint(tc.in)
		switch {
		case tc.reason != "":
			if p == nil || p.reason != tc.reason {
				t.Errorf("parseEndpoint(%q) = %v %q %v, want %s", tc.in, ap, host, p, tc.reason)
			}
		case tc.host != "":
			if p != nil || host != tc.host {
				t.Errorf("parseEndpoint(%q) = %v %q %v, want host %s", tc.in, ap, host, p, tc.host)
			}
		default:
			if p != nil || ap != netip.MustParseAddrPort(tc.addr) {
				t.Errorf("parseEndpoint(%q) = %v %q %v, want %s", tc.in, ap, host, p, tc.addr)
			}
		}
	}
}

// The file is untrusted input: no content makes the parser panic, and every entry
// it returns is either valid or carries a problem.
func FuzzFileSourceParse(f *testing.F) {
	_, key := sourceTestKey(1)
	f.Add([]byte("backends:\n  - {name: a, publicKey: " + key + ", endpoint: \"[fd00::1]:51820\"}\n"))
	f.Add([]byte("backends: [null, 1, x, {name: b, endpoint: h:1, publicKey: " + key + "}]\n"))
	f.Add([]byte("backends:\n  - name: &a x\n    publicKey: *a\n"))
	f.Add([]byte("{backends: [{name: a, name: b}]}"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseBackendsFile(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.name == "" {
				t.Fatalf("entry without a name: %+v", e)
			}
			if e.problem == nil && e.host == "" && !e.addrPort.IsValid() {
				t.Fatalf("valid entry without an address: %+v", e)
			}
		}
		_, _ = parsePublicKey(string(data))
		_, _, _, _ = parseEndpoint(string(data))
	})
}
