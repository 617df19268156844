package otlpexport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// ErrClosed is returned by Enqueue after Close.
var ErrClosed = errors.New("otlpexport: exporter closed")

// errCorrupt marks a record that failed its checks when read back.
var errCorrupt = errors.New("corrupt queue record")

// entry is one queued record.
type entry struct {
	seq      uint64 // position in this process's queue, for acknowledgements
	seg      uint64 // disk: segment id
	off      int64  // disk: offset of the record in its segment
	size     int64  // record bytes, header included
	points   uint64
	enqueued int64    // Unix nanoseconds
	enc      encoding // of the payload
	rawSize  int      // bytes of the marshalled request the payload holds
	payload  []byte   // memory store only
}

func (e *entry) payloadLen() int { return int(e.size) - recordHeaderSize }

// store keeps the records of a queue; the queue serialises all calls.
type store interface {
	// append durably writes recs, the records described by ents in order, and
	// sets their location fields. The store does not keep recs' parts unless they
	// are whole records of one part (see record).
	append(recs []record, ents []entry) error
	// readPayload appends the checked payload of e to dst. A damaged record gives
	// an error wrapping errCorrupt.
	readPayload(dst []byte, e *entry) ([]byte, error)
	// consumed records that every record up to and including last is consumed;
	// next is the first record still queued, nil if none.
	consumed(last, next *entry) error
	close() error
}

// queue is the bounded, ordered record queue shared by Enqueue and Run.
type queue struct {
	mu       sync.Mutex
	st       store
	maxBytes int64
	entries  []entry
	bytes    int64
	nextSeq  uint64
	closed   bool
	m        *metrics
	log      *slog.Logger

	notify chan struct{} // a record was appended (capacity 1)
	done   chan struct{} // closed by close
}

func newQueue(st store, recovered []entry, maxBytes int64, m *metrics, log *slog.Logger) *queue {
	q := &queue{
		st: st, maxBytes: maxBytes, m: m, log: log, nextSeq: 1,
		notify: make(chan struct{}, 1), done: make(chan struct{}),
	}
	for _, e := range recovered {
		e.seq = q.nextSeq
		q.nextSeq++
		q.entries = append(q.entries, e)
		q.bytes += e.size
	}
	q.dropOldestLocked(0) // QueueMaxBytes may have shrunk since the last run
	return q
}

// append adds the records in buf (described by ents) after dropping the oldest
// records beyond maxBytes. If the new records alone exceed maxBytes, the oldest of
// them are dropped too.
func (q *queue) append(buf []byte, ents []entry) error {
	recs := make([]record, len(ents))
	var off int64
	for i := range ents {
		recs[i] = record{buf[off : off+ents[i].size : off+ents[i].size]}
		off += ents[i].size
	}
	return q.appendRecords(recs, ents)
}

// appendRecords is append for records given as parts.
func (q *queue) appendRecords(recs []record, ents []entry) error {
	var total int64
	for _, e := range ents {
		total += e.size
	}
	var droppedNew uint64
	for len(ents) > 0 && total > q.maxBytes {
		droppedNew += ents[0].points
		total -= ents[0].size
		recs = recs[1:]
		ents = ents[1:]
	}
	if droppedNew > 0 {
		q.m.dropped.WithLabelValues(reasonFull).Add(float64(droppedNew))
	}
	if len(ents) == 0 {
		return nil
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	q.dropOldestLocked(total)
	if err := q.st.append(recs, ents); err != nil {
		return err
	}
	for _, e := range ents {
		if e.enc == encIdentity {
			e.rawSize = e.payloadLen()
		}
		e.seq = q.nextSeq
		q.nextSeq++
		q.entries = append(q.entries, e)
		q.bytes += e.size
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

// takeLocked removes the first n records and tells the store. It returns their data
// points.
func (q *queue) takeLocked(n int) uint64 {
	if n == 0 {
		return 0
	}
	var points uint64
	last := q.entries[n-1]
	for i := range n {
		points += q.entries[i].points
		q.bytes -= q.entries[i].size
		q.entries[i] = entry{} // release memory-store payloads now
	}
	q.entries = q.entries[n:]
	var next *entry
	if len(q.entries) > 0 {
		next = &q.entries[0]
	}
	if err := q.st.consumed(&last, next); err != nil {
		// The records are gone from memory either way; a stale ack position only
		// means they may be sent again after a restart.
		q.log.Warn("persisting the queue position failed, records may be sent twice after a restart", "err", err)
	}
	return points
}

// dropOldestLocked drops records from the head until incoming more bytes fit.
func (q *queue) dropOldestLocked(incoming int64) {
	n, bytes := 0, q.bytes
	for n < len(q.entries) && bytes+incoming > q.maxBytes {
		bytes -= q.entries[n].size
		n++
	}
	q.m.dropped.WithLabelValues(reasonFull).Add(float64(q.takeLocked(n)))
}

// batch is a run of consecutive records of one encoding read for one export
// request.
type batch struct {
	lastSeq uint64
	records int
	points  uint64
	// payload is one ExportMetricsServiceRequest in encoding enc: the
	// concatenated record payloads (encIdentity), their gzip segments joined into
	// one gzip member (encGzip), or their zstd frames (encZstd).
	payload []byte
	enc     encoding
	rawSize int // bytes of the request uncompressed
}

// next waits until the queue holds records and returns the oldest ones whose
// payloads together fit maxBytes (at least one). Records that fail their checks are
// dropped and counted. It returns ctx.Err() when ctx ends and ErrClosed after close.
func (q *queue) next(ctx context.Context, maxBytes int) (batch, error) {
	return q.nextInto(ctx, maxBytes, nil)
}

// nextInto is next reading the payload into dst's memory when it is large enough.
func (q *queue) nextInto(ctx context.Context, maxBytes int, dst []byte) (batch, error) {
	for {
		b, err := q.tryNext(maxBytes, dst)
		if err != nil || b.records > 0 {
			return b, err
		}
		select {
		case <-ctx.Done():
			return batch{}, ctx.Err()
		case <-q.done:
			return batch{}, ErrClosed
		case <-q.notify:
		}
	}
}

// tryNext is next without waiting: an empty batch means an empty queue.
func (q *queue) tryNext(maxBytes int, dst []byte) (batch, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			return batch{}, ErrClosed
		}
		// At most maxBytes of uncompressed request (what receivers bound), one
		// encoding (it changes only with the configuration).
		n, size, raw := 0, 0, 0
		for n < len(q.entries) && (n == 0 ||
			(q.entries[n].enc == q.entries[0].enc && raw+q.entries[n].rawSize <= maxBytes)) {
			size += q.entries[n].payloadLen()
			raw += q.entries[n].rawSize
			n++
		}
		if n == 0 {
			return batch{}, nil
		}
		b, err := q.readLocked(n, size, dst)
		if !errors.Is(err, errCorrupt) {
			return b, err
		}
		// The head record is damaged: drop it and try again.
		points := q.takeLocked(1)
		q.m.corruptRecords.Inc()
		q.m.dropped.WithLabelValues(reasonCorrupt).Add(float64(points))
		q.log.Warn("dropping damaged queue record", "err", err, "dataPoints", points)
	}
}

// readLocked reads the first n records (size payload bytes). If a later record is
// damaged, the batch ends before it; errCorrupt means the first one is.
func (q *queue) readLocked(n, size int, dst []byte) (batch, error) {
	enc := q.entries[0].enc
	if need := size + gzipFraming; cap(dst) < need {
		dst = make([]byte, 0, need)
	}
	b := batch{payload: dst[:0], enc: enc}
	if enc == encGzip {
		b.payload = otlpcompress.AppendGzipHeader(b.payload)
	}
	var crc uint32
	for i := range n {
		e := &q.entries[i]
		p, err := q.st.readPayload(b.payload, e)
		if errors.Is(err, errCorrupt) && i > 0 {
			break // dropped when it reaches the head
		}
		if err != nil {
			return batch{}, fmt.Errorf("reading queued record: %w", err)
		}
		if enc != encIdentity {
			// Joined without the segment trailers.
			t := p[len(p)-segmentTrailerSize:]
			crc = otlpcompress.CombineCRC32(crc, binary.LittleEndian.Uint32(t), uint64(binary.LittleEndian.Uint32(t[4:])))
			p = p[:len(p)-segmentTrailerSize]
		}
		b.payload = p
		b.lastSeq = e.seq
		b.records++
		b.points += e.points
		b.rawSize += e.rawSize
	}
	if enc == encGzip {
		b.payload = otlpcompress.AppendGzipTrailer(b.payload, crc, uint64(b.rawSize))
	}
	return b, nil
}

// gzipFraming is what joining gzip segments adds: header, final block, trailer.
const gzipFraming = 10 + 5 + 8

// remove removes the records of b that are still queued (a full queue may have
// dropped some meanwhile). With a reason their data points are counted as dropped.
func (q *queue) remove(b batch, reason string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	n := 0
	for n < len(q.entries) && q.entries[n].seq <= b.lastSeq {
		n++
	}
	points := q.takeLocked(n)
	if reason != "" {
		q.m.dropped.WithLabelValues(reason).Add(float64(points))
	}
}

// len returns the number of queued records and their bytes.
func (q *queue) len() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries), q.bytes
}

// oldestAge is the age of the oldest queued record, 0 when empty.
func (q *queue) oldestAge() time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) == 0 {
		return 0
	}
	return max(0, time.Since(time.Unix(0, q.entries[0].enqueued)))
}

// close closes the store; later calls fail with ErrClosed.
func (q *queue) close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	close(q.done)
	return q.st.close()
}
