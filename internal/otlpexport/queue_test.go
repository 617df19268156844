package otlpexport

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// testPayload is the payload of record i; every record has i+1 data points.
func testPayload(i int) []byte {
	return fmt.Appendf(nil, "record-%06d-%s", i, "padding-padding-padding")
}

// appendTestRecords appends records from..to-1, one append each.
func appendTestRecords(t *testing.T, q *queue, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		rec := appendRecord(nil, testPayload(i), uint64(i+1), time.Now().UnixNano())
		if err := q.append(rec, []entry{{size: int64(len(rec)), points: uint64(i + 1), enqueued: time.Now().UnixNano()}}); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
}

var testRecordSize = int64(recordHeaderSize + len(testPayload(0)))

type testQueue struct {
	*queue
	m   *metrics
	dir string
}

func openTestQueue(t *testing.T, dir string, maxBytes, segTarget int64) *testQueue {
	t.Helper()
	m := newMetrics("test")
	var st store = memStore{}
	var ents []entry
	if dir != "" {
		ds, recovered, rec, err := openDiskStore(dir, segTarget, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("openDiskStore: %v", err)
		}
		st, ents = ds, recovered
		m.corruptRecords.Add(float64(rec.corruptRecords))
		m.dropped.WithLabelValues(reasonCorrupt).Add(float64(rec.corruptPoints))
	}
	q := newQueue(st, ents, maxBytes, m, slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = q.close() })
	return &testQueue{queue: q, m: m, dir: dir}
}

// takeAll reads and removes the whole queue one record at a time, returning the
// payloads.
func (q *testQueue) takeAll(t *testing.T) []string {
	t.Helper()
	var got []string
	for {
		if n, _ := q.len(); n == 0 {
			return got
		}
		b, err := q.next(context.Background(), 0)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		got = append(got, string(b.payload))
		q.remove(b, "")
	}
}

func wantPayloads(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, string(testPayload(i)))
	}
	return out
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segmentSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiskQueueReopen(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20, 1<<20)
	appendTestRecords(t, q.queue, 0, 10)
	b, err := q.next(context.Background(), 3*len(testPayload(0)))
	if err != nil || b.records != 3 || b.points != 1+2+3 {
		t.Fatalf("next = %d records, %d points, %v; want 3 records, 6 points", b.records, b.points, err)
	}
	if want := string(testPayload(0)) + string(testPayload(1)) + string(testPayload(2)); string(b.payload) != want {
		t.Fatalf("payload %q, want %q", b.payload, want)
	}
	q.remove(b, "")
	if err := q.close(); err != nil {
		t.Fatal(err)
	}

	q = openTestQueue(t, dir, 1<<20, 1<<20)
	if n, bytes := q.len(); n != 7 || bytes != 7*testRecordSize {
		t.Fatalf("reopened queue holds %d records / %d bytes, want 7 / %d", n, bytes, 7*testRecordSize)
	}
	appendTestRecords(t, q.queue, 10, 12) // goes to a new segment
	if got, want := q.takeAll(t), wantPayloads(3, 12); !equalSlices(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if err := q.close(); err != nil {
		t.Fatal(err)
	}
	q = openTestQueue(t, dir, 1<<20, 1<<20)
	if n, _ := q.len(); n != 0 {
		t.Fatalf("queue holds %d records after everything was consumed", n)
	}
	if segs := segmentFiles(t, dir); len(segs) != 0 {
		t.Errorf("consumed segments left behind: %v", segs)
	}
}

func TestDiskQueueRollsAndDeletesSegments(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20, 3*testRecordSize)
	appendTestRecords(t, q.queue, 0, 20)
	if segs := segmentFiles(t, dir); len(segs) < 6 {
		t.Fatalf("%d segments for 20 records of a third of a segment each", len(segs))
	}
	got := q.takeAll(t)
	if want := wantPayloads(0, 20); !equalSlices(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if segs := segmentFiles(t, dir); len(segs) != 1 {
		t.Errorf("%d segments after consuming everything, want only the active one", len(segs))
	}
}

func TestQueueDropsOldestWhenFull(t *testing.T) {
	for _, disk := range []bool{false, true} {
		t.Run(fmt.Sprintf("disk=%v", disk), func(t *testing.T) {
			dir := ""
			if disk {
				dir = t.TempDir()
			}
			q := openTestQueue(t, dir, 5*testRecordSize, 2*testRecordSize)
			appendTestRecords(t, q.queue, 0, 8)
			if n, bytes := q.len(); n != 5 || bytes != 5*testRecordSize {
				t.Fatalf("queue holds %d records / %d bytes, want 5 / %d", n, bytes, 5*testRecordSize)
			}
			if got := testutil.ToFloat64(q.m.dropped.WithLabelValues(reasonFull)); got != 1+2+3 {
				t.Errorf("dropped full = %v, want 6 (records 0-2)", got)
			}
			if got, want := q.takeAll(t), wantPayloads(3, 8); !equalSlices(got, want) {
				t.Fatalf("payloads %q, want %q", got, want)
			}
			if disk && len(segmentFiles(t, dir)) > 2 {
				t.Errorf("segments of dropped records left behind: %v", segmentFiles(t, dir))
			}
		})
	}
}

func TestQueueBatchLargerThanQueue(t *testing.T) {
	q := openTestQueue(t, "", 2*testRecordSize, 0)
	var buf []byte
	var ents []entry
	for i := range 4 {
		buf = appendRecord(buf, testPayload(i), uint64(i+1), 0)
		ents = append(ents, entry{size: testRecordSize, points: uint64(i + 1)})
	}
	if err := q.append(buf, ents); err != nil {
		t.Fatal(err)
	}
	if got, want := q.takeAll(t), wantPayloads(2, 4); !equalSlices(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if got := testutil.ToFloat64(q.m.dropped.WithLabelValues(reasonFull)); got != 1+2 {
		t.Errorf("dropped full = %v, want 3", got)
	}
}

func TestDiskQueueIsLocked(t *testing.T) {
	dir := t.TempDir()
	openTestQueue(t, dir, 1<<20, 1<<20)
	if _, _, _, err := openDiskStore(dir, 1<<20, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a second exporter opened the same queue directory")
	}
}

func TestDiskQueueRecordDamagedWhileQueued(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20, 1<<20)
	appendTestRecords(t, q.queue, 0, 3)
	segs := segmentFiles(t, dir)
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(len(segmentHeader)) + testRecordSize + recordHeaderSize + 3 // payload of record 1
	if _, err := f.WriteAt([]byte{'X'}, off); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	if got, want := q.takeAll(t), []string{string(testPayload(0)), string(testPayload(2))}; !equalSlices(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
	if got := testutil.ToFloat64(q.m.corruptRecords); got != 1 {
		t.Errorf("corrupt records = %v, want 1", got)
	}
	if got := testutil.ToFloat64(q.m.dropped.WithLabelValues(reasonCorrupt)); got != 2 {
		t.Errorf("dropped corrupt = %v, want 2 (record 1)", got)
	}
}

func TestDiskQueueTornTailIsCountedOnce(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20, 1<<20)
	appendTestRecords(t, q.queue, 0, 3)
	_ = q.close()
	seg := segmentFiles(t, dir)[0]
	torn := appendRecord(nil, testPayload(3), 4, 0)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn[:len(torn)-5]); err != nil { // a crash during write
		t.Fatal(err)
	}
	_ = f.Close()

	q = openTestQueue(t, dir, 1<<20, 1<<20)
	if n, _ := q.len(); n != 3 {
		t.Fatalf("recovered %d records, want 3", n)
	}
	if got := testutil.ToFloat64(q.m.corruptRecords); got != 1 {
		t.Errorf("corrupt records = %v, want 1", got)
	}
	if got := testutil.ToFloat64(q.m.dropped.WithLabelValues(reasonCorrupt)); got != 4 {
		t.Errorf("dropped corrupt = %v, want 4 (from the torn header)", got)
	}
	_ = q.close()
	q = openTestQueue(t, dir, 1<<20, 1<<20)
	if got := testutil.ToFloat64(q.m.corruptRecords); got != 0 {
		t.Errorf("torn tail counted again after a second restart: %v", got)
	}
	if got, want := q.takeAll(t), wantPayloads(0, 3); !equalSlices(got, want) {
		t.Fatalf("payloads %q, want %q", got, want)
	}
}

func TestDiskQueueDamagedAckFile(t *testing.T) {
	dir := t.TempDir()
	q := openTestQueue(t, dir, 1<<20, 1<<20)
	appendTestRecords(t, q.queue, 0, 4)
	q.takeAll(t)
	appendTestRecords(t, q.queue, 4, 5)
	_ = q.close()
	if err := os.WriteFile(filepath.Join(dir, ackFileName), []byte("garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	q = openTestQueue(t, dir, 1<<20, 1<<20)
	// Without a position everything still on disk is queued again: duplicates, no loss.
	got := q.takeAll(t)
	if len(got) == 0 || got[len(got)-1] != string(testPayload(4)) {
		t.Fatalf("payloads %q, want ... %q", got, testPayload(4))
	}
}

func TestQueueNextWaits(t *testing.T) {
	q := openTestQueue(t, "", 1<<20, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := q.next(ctx, 1<<20); err != context.DeadlineExceeded {
		t.Fatalf("next on an empty queue = %v, want deadline exceeded", err)
	}
	done := make(chan batch)
	go func() {
		b, _ := q.next(context.Background(), 1<<20)
		done <- b
	}()
	appendTestRecords(t, q.queue, 0, 1)
	select {
	case b := <-done:
		if b.records != 1 {
			t.Fatalf("next returned %d records", b.records)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("next did not wake up on append")
	}
	_ = q.close()
	if _, err := q.next(context.Background(), 1<<20); err != ErrClosed {
		t.Fatalf("next after close = %v, want ErrClosed", err)
	}
}
