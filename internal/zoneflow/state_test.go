package zoneflow

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var testSelf = identity{bootID: "bd54ecd1-8108-4351-96e9-6b3407f05b2d", netns: 4026531840}

// TestStateCarriesAcrossRestart: a processor's state, saved after a final dump
// and restored into a new one, makes the first dump count what open flows sent
// in between (not a baseline, not their history), counts flows that started in
// between whole, drops flows that ended in between, and carries what was
// counted after the last scrape.
func TestStateCarriesAcrossRestart(t *testing.T) {
	p := newTestProcessor("n1")
	p.BaselineFirstDump()
	dumpOf(p, fl(1, 1<<40), fl(2, 500))     // open at start: baselines
	dumpOf(p, fl(1, 1<<40+100), fl(2, 600)) // +100 +100
	p.markScraped(p.recs)                   // a scrape saw 200
	dumpOf(p, fl(1, 1<<40+130), fl(2, 650)) // final dump: +30 +50, unscraped
	s := p.saveState(DefaultStateMaxFlows)
	s.bootID, s.netns, s.written = testSelf.bootID, testSelf.netns, time.Now()

	path := filepath.Join(t.TempDir(), "state")
	if err := writeState(path, encodeState(s)); err != nil {
		t.Fatal(err)
	}
	got, result, err := readState(path, DefaultStateMaxFlows, time.Hour, testSelf, time.Now())
	if err != nil || result != loadRestored {
		t.Fatalf("read: %s, %v", result, err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the state file was not removed after reading: a crash later would restore it twice")
	}
	q := newTestProcessor("n1")
	q.BaselineFirstDump()
	q.restoreState(got)
	wantSum(t, q, 80, "after restore: what the old run counted after its last scrape")
	// Meanwhile flow 1 sent 1000 more, flow 2 ended, flow 3 started.
	dumpOf(q, fl(1, 1<<40+1130), fl(3, 40))
	wantSum(t, q, 80+1000+40, "after the first dump")
	if q.stats.restoredSeen != 1 || q.stats.restoredGone != 1 {
		t.Fatalf("restored seen %d, gone %d", q.stats.restoredSeen, q.stats.restoredGone)
	}
}

// TestStateBounded: beyond --state.max-flows the file is incomplete, and then
// entries unknown to it set a baseline as without a file.
func TestStateBounded(t *testing.T) {
	p := newTestProcessor("n1")
	dumpOf(p, fl(1, 10), fl(2, 20), fl(3, 30))
	p.markScraped(p.recs)
	s := p.saveState(2)
	if s.complete || len(s.flows) != 2 {
		t.Fatalf("complete %v with %d flows", s.complete, len(s.flows))
	}
	q := newTestProcessor("n1")
	q.BaselineFirstDump()
	q.restoreState(s)
	dumpOf(q, fl(1, 15), fl(2, 25), fl(3, 35))
	// Two of the three continue (+5 each); the third is unknown: a baseline.
	if got := sumAll(q); got != 10 {
		t.Fatalf("counted %d, want 10", got)
	}
}

// TestStateRejected: damaged, other-boot, other-namespace, stale and oversized
// files are ignored with their reason, and removed; a missing file is fine.
func TestStateRejected(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	valid := func(mod func(*stateFile)) []byte {
		s := &stateFile{complete: true, bootID: testSelf.bootID, netns: testSelf.netns, written: now.Add(-time.Minute),
			records: []savedRecord{{key: recordKey{srcZone: "a", dstZone: "b", class: ClassCrossZone}, bytes: 5, packets: 1}},
			flows:   []savedFlow{{key: keyOf(new(fl(1, 1))), origBytes: 1}, {key: keyOf(new(fl(2, 1))), origBytes: 2}}}
		if mod != nil {
			mod(s)
		}
		return encodeState(s)
	}
	flip := valid(nil)
	flip[len(flip)/2] ^= 0x40
	for _, tc := range []struct {
		name   string
		data   []byte
		max    int
		result string
	}{
		{"valid", valid(nil), 10, loadRestored},
		{"bit flip", flip, 10, loadDamaged},
		{"truncated", valid(nil)[:40], 10, loadDamaged},
		{"empty", []byte{}, 10, loadDamaged},
		{"not ours", []byte("{\"flows\": []}\n"), 10, loadDamaged},
		{"other boot", valid(func(s *stateFile) { s.bootID = "00000000-0000-0000-0000-000000000000" }), 10, loadOtherBoot},
		{"other netns", valid(func(s *stateFile) { s.netns++ }), 10, loadOtherNetNS},
		{"stale", valid(func(s *stateFile) { s.written = now.Add(-2 * time.Hour) }), 10, loadStale},
		{"from the future", valid(func(s *stateFile) { s.written = now.Add(time.Hour) }), 10, loadStale},
		{"more flows than allowed", valid(nil), 1, loadDamaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "state")
			if err := os.WriteFile(path, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			s, result, err := readState(path, tc.max, time.Hour, testSelf, now)
			if result != tc.result {
				t.Fatalf("result %s (%v), want %s", result, err, tc.result)
			}
			if (result == loadRestored) != (s != nil) || (result != loadRestored && err == nil) {
				t.Fatalf("state %v, err %v for %s", s, err, result)
			}
			if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("file not removed")
			}
		})
	}
	if _, result, err := readState(filepath.Join(dir, "none"), 10, time.Hour, testSelf, now); result != loadMissing || err != nil {
		t.Fatalf("missing: %s, %v", result, err)
	}
}

// FuzzDecodeState: the state file is read from a host path at start; whatever
// it holds, decoding returns a state or an error, never panics, and allocates
// no more than the input can describe. The checksum is fixed up so that the
// fuzzer reaches the parser behind it.
func FuzzDecodeState(f *testing.F) {
	s := &stateFile{complete: true, bootID: testSelf.bootID, netns: testSelf.netns, written: time.Unix(1700000000, 0),
		records: []savedRecord{{key: recordKey{srcZone: "a", dstZone: "b", class: ClassCrossZone, namespace: "shop", workload: "deployment/web"}, bytes: 1 << 40, packets: 7}},
		flows:   []savedFlow{{key: flowKey{id: 7, sport: 40000, dport: 443, proto: 6}, origBytes: 1 << 33, origPkts: 9, replyBytes: 3, replyPkts: 1}}}
	b := encodeState(s)
	f.Add(b[:len(b)-4])
	f.Add([]byte("TZFS\x01\x01"))
	f.Add([]byte("TZFS\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\x0f"))
	f.Fuzz(func(t *testing.T, body []byte) {
		in := binary.BigEndian.AppendUint32(append([]byte(nil), body...), crc32.Checksum(body, castagnoli))
		s, err := decodeState(in, 1000)
		if err != nil {
			return
		}
		if len(s.flows) > 1000 || len(s.records) > maxStateRecords {
			t.Fatalf("bounds: %d flows, %d records", len(s.flows), len(s.records))
		}
		// What decodes re-encodes to a file that decodes to the same state.
		again, err := decodeState(encodeState(s), 1000)
		if err != nil || len(again.flows) != len(s.flows) || len(again.records) != len(s.records) || again.bootID != s.bootID {
			t.Fatalf("round trip: %v", err)
		}
		for i := range s.flows {
			if again.flows[i] != s.flows[i] {
				t.Fatalf("flow %d: %+v != %+v", i, again.flows[i], s.flows[i])
			}
		}
	})
}
