package wggateway

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trellis-garden/trellis/internal/testbin"
	"github.com/trellis-garden/trellis/internal/testkit"
)

// TestBinary builds cmd/wg-gateway and runs it as operators do: a backends file,
// web endpoints, SIGTERM. It checks the flags' validation, readiness following
// the backend source, the metrics, and a clean exit.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped in -short mode")
	}
	dir := t.TempDir()
	bin := testbin.Build(t, "wg-gateway")

	// Bad flags: exit code 2, every problem named.
	testbin.UsageError(t, bin, []string{"--backends.source=file", "--gateway.batch-size=0"}, "--backends.file: required", "--gateway.batch-size")

	key, _ := sourceTestKey(3)
	file := filepath.Join(dir, "backends.yaml")
	content := "backends:\n  - name: shoot-a\n    publicKey: " + base64.StdEncoding.EncodeToString(key[:]) + "\n    endpoint: 127.0.0.1:51999\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--backends.source=file", "--backends.file="+file,
		"--wireguard.listen-address=127.0.0.1:0", "--web.listen-address=127.0.0.1:0", "--log.format=json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	// Read the log until both addresses are known.
	var web, udp string
	logs := bufio.NewScanner(stderr)
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	for (web == "" || udp == "") && logs.Scan() {
		var l struct{ Msg, Address string }
		if json.Unmarshal(logs.Bytes(), &l) == nil {
			switch l.Msg {
			case "serving web endpoints":
				web = l.Address
			case "listening":
				udp = l.Address
			}
		}
	}
	deadline.Stop()
	if web == "" || udp == "" {
		t.Fatalf("addresses not logged (web %q, udp %q)", web, udp)
	}
	go io.Copy(io.Discard, stderr)

	fetch := func(path string) (int, string) { return testkit.Get("http://" + web + path) }
	testkit.EventuallyNil(t, "readiness", func() error {
		if code, body := fetch("/readyz"); code != 200 {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	})
	_, metrics := fetch("/metrics")
	for _, want := range []string{
		"trellis_wg_gateway_backends 1",
		`trellis_wg_gateway_backend_sessions{backend="shoot-a"} 0`,
		`trellis_wg_gateway_dropped_packets_total{reason="no_backend"} 0`,
		"trellis_wg_gateway_build_info{",
		`trellis_wg_gateway_backend_source_updates_total{source="file"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	testbin.Terminate(t, cmd)
}
