package wggateway

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/trellis-garden/trellis/internal/udpbatch"
)

// TestConfigErrorsNameFieldsOptionsNameFlags: the library reports Config fields,
// never flags; the command's options turn each into its flag.
func TestConfigErrorsNameFieldsOptionsNameFlags(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shards, cfg.BatchSize, cfg.IdleTimeout, cfg.HandshakeBurst = 300, 0, 0, 0
	err := cfg.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	if strings.Contains(err.Error(), "--") {
		t.Errorf("library error names a flag: %v", err)
	}
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Field != "Shards" {
		t.Errorf("first error %v is not a *ConfigError for Shards", err)
	}
	for _, f := range []string{"Shards", "BatchSize", "IdleTimeout", "HandshakeBurst"} {
		if !strings.Contains(err.Error(), f+": ") {
			t.Errorf("no error for %s in %v", f, err)
		}
	}
	o := NewOptions()
	o.Gateway = cfg
	o.Source, o.File = "file", "/backends.yaml"
	oerr := o.Validate()
	for _, flag := range []string{"--gateway.shards: 300", "--gateway.batch-size: 0", "--sessions.idle-timeout: 0s", "--handshake.burst: 0"} {
		if oerr == nil || !strings.Contains(oerr.Error(), flag) {
			t.Errorf("options error %v lacks %q", oerr, flag)
		}
	}
	// Every Config field the library can report has a flag.
	for _, f := range []string{"ListenAddress", "Shards", "BatchSize", "MaxSessions", "MaxClientsPerBackend", "Cookies", "PendingTimeout", "IdleTimeout", "HandshakeRate", "HandshakeBurst", "MaxRateLimitedSources"} {
		if configFlags[f] == "" {
			t.Errorf("no flag for Config.%s", f)
		}
	}
}

// TestUpstreamErrorRateLimited: every failed upstream socket open is counted, but
// logged at most once a minute.
func TestUpstreamErrorRateLimited(t *testing.T) {
	var buf bytes.Buffer
	gw, err := New(DefaultConfig(), slog.New(slog.NewTextHandler(&buf, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		gw.upstreamError(errors.New("too many open files"), 0)
	}
	if n := gw.upstreamErrors.Load(); n != 100 {
		t.Errorf("counted %d failures, want 100", n)
	}
	if n := strings.Count(buf.String(), "cannot open upstream socket"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, buf.String())
	}
	reg := newTestRegistry(gw)
	rg := &runningGateway{gw: gw, reg: reg}
	if v := rg.metric(t, "trellis_wg_gateway_upstream_socket_errors_total"); v != 100 {
		t.Errorf("upstream_socket_errors_total = %v, want 100", v)
	}
}

// TestSplitterZeroAllocs: cutting coalesced buffers into runs allocates nothing.
func TestSplitterZeroAllocs(t *testing.T) {
	var buf []byte
	for i := range 40 {
		buf = append(buf, transportSeg(uint32(1+i/20), 1400, byte(i))...)
	}
	ms := []udpbatch.Message{{Buf: buf, N: len(buf), Addr: ap("192.0.2.1:1"), Seg: 1400}, {Buf: buf[:100], N: 100, Addr: ap("192.0.2.1:1")}}
	items := make([]udpbatch.Message, 0, 8)
	if a := testing.AllocsPerRun(100, func() {
		var sp splitter
		for !sp.done(len(ms)) {
			items = sp.fill(ms, items[:0])
		}
	}); a != 0 {
		t.Errorf("%v allocations per split", a)
	}
}
