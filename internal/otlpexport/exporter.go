package otlpexport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/trellis-garden/trellis/internal/otlpexport/otlpcompress"
)

// Exporter queues OTLP metrics and sends them to one receiver. Enqueue and QueueLen
// may be called from any goroutine; Run from one.
type Exporter struct {
	cfg    Config
	log    *slog.Logger
	m      *metrics
	q      *queue
	sender sender

	running   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, opens (and recovers) the queue and registers the exporter's
// metrics on reg (nil: none) under namespace. It does not connect: Run does.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer, namespace string) (*Exporter, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("otlp export configuration: %w", err)
	}
	cfg.Headers = maps.Clone(cfg.Headers)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(namespace)

	var st store = memStore{}
	var recovered []entry
	if cfg.QueueDir != "" {
		ds, ents, rec, err := openDiskStore(cfg.QueueDir, segmentTarget(cfg.QueueMaxBytes), log)
		if err != nil {
			return nil, err
		}
		st, recovered = ds, ents
		m.corruptRecords.Add(float64(rec.corruptRecords))
		m.dropped.WithLabelValues(reasonCorrupt).Add(float64(rec.corruptPoints))
		log.Info("opened export queue", "queueDir", cfg.QueueDir, "entries", len(ents),
			"segments", rec.segments, "corruptRecords", rec.corruptRecords)
	}
	q := newQueue(st, recovered, cfg.QueueMaxBytes, m, log)

	var s sender
	switch cfg.Protocol {
	case ProtocolGRPC:
		gs, err := newGRPCSender(&cfg)
		if err != nil {
			return nil, errors.Join(err, q.close())
		}
		s = gs
	default:
		s = newHTTPSender(&cfg)
	}
	if err := register(reg, append(m.collectors(), queueGauges(namespace, q)...)); err != nil {
		return nil, errors.Join(err, q.close(), s.close())
	}
	return &Exporter{cfg: cfg, log: log, m: m, q: q, sender: s}, nil
}

// segmentTarget is the size at which a new segment file is started: small enough
// that consumed records in a partly consumed segment waste little disk, large enough
// to keep the number of files small.
func segmentTarget(queueMax int64) int64 {
	return min(max(queueMax/16, 64<<10), 64<<20)
}

// Enqueue adds one scrape batch to the queue and returns without waiting for the
// network. With a QueueDir the batch is written and fsynced before Enqueue returns:
// a crash afterwards loses nothing. A batch larger than MaxBatchBytes is split into
// several records (one write, one fsync). Each record is compressed once, here, as
// the configured Compression (see encoding). When the queue is full the oldest
// records are dropped and their data points counted.
func (e *Exporter) Enqueue(rms []*metricspb.ResourceMetrics) error {
	if len(rms) == 0 {
		return nil
	}
	chunks := [][]*metricspb.ResourceMetrics{rms}
	// Measured afresh (the caller may have changed the messages since an earlier
	// Enqueue); splitting and marshalling below reuse the sizes cached here.
	size := proto.Size(&metricspb.MetricsData{ResourceMetrics: rms})
	if size > e.cfg.MaxBatchBytes {
		chunks = splitResourceMetrics(rms, e.cfg.MaxBatchBytes)
		size += len(chunks) * 64 // repeated resource and scope fields; a guess for the buffer
	}
	now := time.Now().UnixNano()
	buf := make([]byte, 0, size)
	recs := make([]record, 0, len(chunks))
	ents := make([]entry, 0, len(chunks))
	var sb sealBuffers
	defer sb.release()
	for _, c := range chunks {
		start := len(buf)
		// MetricsData and ExportMetricsServiceRequest have the same wire format: a
		// repeated resource_metrics field 1.
		var err error
		buf, err = cached.MarshalAppend(buf, &metricspb.MetricsData{ResourceMetrics: c})
		if err != nil {
			return fmt.Errorf("marshalling metrics: %w", err)
		}
		rec, ent, err := e.seal([][]byte{buf[start:len(buf):len(buf)]}, countPoints(c), now, &sb)
		if err != nil {
			return err
		}
		recs, ents = append(recs, rec), append(ents, ent)
	}
	return e.q.appendRecords(recs, ents)
}

// EnqueueEncoded is Enqueue for a batch the caller has already encoded:
// metricsData is a MetricsData (or ExportMetricsServiceRequest) message holding
// dataPoints data points. It is queued with the same durability, bounds,
// compression and metrics as Enqueue; a batch larger than MaxBatchBytes is split
// at data point boundaries without decoding the points. metricsData is not kept:
// the caller may reuse it once EnqueueEncoded returns.
func (e *Exporter) EnqueueEncoded(metricsData []byte, dataPoints int) error {
	if len(metricsData) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	// The records are built from metricsData and the split framing without
	// copying the batch first: compressed, or written out by a disk queue before
	// returning (the memory queue copies them).
	var sb sealBuffers
	defer sb.release()
	if len(metricsData) <= e.cfg.MaxBatchBytes {
		rec, ent, err := e.seal([][]byte{metricsData}, uint64(max(dataPoints, 0)), now, &sb)
		if err != nil {
			return err
		}
		return e.q.appendRecords([]record{rec}, []entry{ent})
	}
	chunks, err := splitEncoded(metricsData, e.cfg.MaxBatchBytes)
	if err != nil {
		return fmt.Errorf("splitting encoded metrics: %w", err)
	}
	recs := make([]record, 0, len(chunks))
	ents := make([]entry, 0, len(chunks))
	for _, c := range chunks {
		rec, ent, err := e.seal(chunkParts(c), c.points, now, &sb)
		if err != nil {
			return err
		}
		recs, ents = append(recs, rec), append(ents, ent)
	}
	return e.q.appendRecords(recs, ents)
}

// sealBuffers are the buffers that compressed records of one Enqueue are
// built in, taken from a pool and given back once the queue has written or
// copied the records: a scrape compresses some megabytes a second, and
// allocating (and zeroing) a fresh buffer for each record cost more CPU than
// the queue's writes.
type sealBuffers []*[]byte

var sealPool = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledSeal bounds the buffers kept in the pool.
const maxPooledSeal = 4 << 20

// get returns an empty buffer of at least n bytes' capacity.
func (sb *sealBuffers) get(n int) *[]byte {
	b := sealPool.Get().(*[]byte)
	if cap(*b) < n {
		*b = make([]byte, 0, n)
	}
	*sb = append(*sb, b)
	return b
}

// release gives the buffers back; the records built in them must no longer
// be used.
func (sb *sealBuffers) release() {
	for _, b := range *sb {
		if cap(*b) <= maxPooledSeal {
			*b = (*b)[:0]
			sealPool.Put(b)
		}
	}
	*sb = nil
}

// seal builds the record of one marshalled request, the concatenation of parts,
// in the exporter's encoding: compressed into a buffer of sb (valid until sb is
// released), or (uncompressed) referencing parts.
func (e *Exporter) seal(parts [][]byte, points uint64, now int64, sb *sealBuffers) (record, entry, error) {
	raw := 0
	for _, p := range parts {
		raw += len(p)
	}
	if raw > maxPayload {
		return nil, entry{}, fmt.Errorf("a single data point of %d bytes exceeds the queue record limit", raw)
	}
	hdr := new([recordHeaderSize]byte)
	enc := compressionEncoding(e.cfg.Compression)
	if enc != encIdentity {
		buf := sb.get(raw/8 + 64)
		seg, crc, err := otlpcompress.AppendSegment(*buf, e.cfg.Compression, parts...)
		if err != nil {
			return nil, entry{}, fmt.Errorf("compressing metrics: %w", err)
		}
		seg = binary.LittleEndian.AppendUint32(seg, crc)
		seg = binary.LittleEndian.AppendUint32(seg, uint32(raw))
		*buf = seg
		parts = [][]byte{seg}
	}
	rec := sealParts(hdr, enc, parts, points, now)
	size := recordHeaderSize
	for _, p := range parts {
		size += len(p)
	}
	return rec, entry{size: int64(size), points: points, enqueued: now, enc: enc, rawSize: raw}, nil
}

// Run sends the queue in order until ctx ends or the exporter is closed, and then
// returns nil. Retryable failures are retried with backoff; a permanently rejected
// batch is dropped and counted (first narrowed down to the record the receiver
// rejects, when several records were merged). Run must not be called concurrently.
func (e *Exporter) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("otlpexport: Run is already running")
	}
	defer e.running.Store(false)
	bo := backoff{initial: e.cfg.RetryInitial, max: e.cfg.RetryMax}
	var isolateUntil uint64 // send one record at a time up to this sequence number
	// The payload buffer is reused across requests when the sender is done with
	// the payload once send returns.
	reuse := false
	if r, ok := e.sender.(interface{ reusesPayload() bool }); ok {
		reuse = r.reusesPayload()
	}
	var buf []byte
	for {
		maxBytes := e.cfg.MaxBatchBytes
		if isolateUntil > 0 {
			maxBytes = 0 // one record
		}
		b, err := e.q.nextInto(ctx, maxBytes, buf)
		switch {
		case ctx.Err() != nil || errors.Is(err, ErrClosed):
			return nil
		case err != nil:
			e.log.Error("reading the export queue failed, retrying", "err", err)
			if !sleep(ctx, e.q.done, bo.next(0)) {
				return nil
			}
			continue
		}
		if b.lastSeq >= isolateUntil {
			isolateUntil = 0
		}
		payload, err := e.wire(b)
		if err != nil {
			// Records that do not decompress: damaged in a way the checksums missed.
			e.q.remove(b, reasonCorrupt)
			e.m.corruptRecords.Add(float64(b.records))
			e.log.Error("dropping queue records that do not decompress", "err", err, "dataPoints", b.points)
			continue
		}
		out := e.export(ctx, b, payload)
		if reuse {
			buf = b.payload[:0]
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case out.done:
			bo.reset()
		case out.isolate:
			isolateUntil = b.lastSeq
		default:
			if !sleep(ctx, e.q.done, bo.next(out.retryAfter)) {
				return nil
			}
		}
	}
}

// outcome is what Run does after one export attempt.
type outcome struct {
	done       bool          // the batch left the queue
	isolate    bool          // resend its records one by one
	retryAfter time.Duration // the receiver's delay hint for a retry
}

// wire returns the request of b as the sender sends it: compressed as
// configured. Records queued with another compression (before the configuration
// changed) are decompressed and compressed again; that is the only compression
// at send time.
func (e *Exporter) wire(b batch) ([]byte, error) {
	want := compressionEncoding(e.cfg.Compression)
	if b.enc == want {
		return b.payload, nil
	}
	raw := b.payload
	if b.enc != encIdentity {
		name := CompressionGzip
		if b.enc == encZstd {
			name = CompressionZstd
		}
		r, release, err := otlpcompress.NewReader(name, bytes.NewReader(b.payload))
		if err != nil {
			return nil, err
		}
		defer release()
		// At most one byte more than the records say they hold.
		if raw, err = readAppend(make([]byte, 0, b.rawSize), io.LimitReader(r, int64(b.rawSize)+1)); err != nil {
			return nil, fmt.Errorf("decompressing %s records: %w", name, err)
		}
		if len(raw) != b.rawSize {
			return nil, fmt.Errorf("decompressing %s records: %d bytes, the records say %d", name, len(raw), b.rawSize)
		}
	}
	if want == encIdentity {
		return raw, nil
	}
	return otlpcompress.Append(nil, e.cfg.Compression, raw)
}

// readAppend appends what r holds to dst.
func readAppend(dst []byte, r io.Reader) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// export sends payload, the request of b, once and removes b from the queue when
// acknowledged or rejected.
func (e *Exporter) export(ctx context.Context, b batch, payload []byte) outcome {
	start := time.Now()
	ps, err := e.sender.send(ctx, payload)
	if err != nil && ctx.Err() != nil {
		return outcome{} // shutting down: neither success nor failure
	}
	e.m.duration.Observe(time.Since(start).Seconds())
	if err == nil {
		e.q.remove(b, "")
		e.m.requests.WithLabelValues(resultSuccess).Inc()
		e.m.pointsSent.Add(float64(b.points))
		if ps.rejected > 0 {
			e.m.partialRejected.Add(float64(ps.rejected))
			e.log.Warn("receiver rejected part of an export", "rejectedDataPoints", ps.rejected, "message", ps.message)
		} else if ps.message != "" {
			e.log.Info("receiver accepted an export with a warning", "message", ps.message)
		}
		return outcome{done: true}
	}
	retry, hint := isRetryable(err)
	if retry {
		e.m.requests.WithLabelValues(resultRetryableError).Inc()
		e.log.Warn("export failed, retrying", "err", err, "dataPoints", b.points)
		return outcome{retryAfter: hint}
	}
	e.m.requests.WithLabelValues(resultPermanentError).Inc()
	if b.records > 1 {
		e.log.Warn("receiver rejected a merged export, resending its records one by one", "err", err, "records", b.records)
		return outcome{isolate: true}
	}
	e.q.remove(b, reasonPermanentError)
	e.log.Error("receiver rejected an export, dropping it", "err", err, "dataPoints", b.points)
	return outcome{done: true}
}

// QueueLen returns the number of queued records and their bytes (headers included).
func (e *Exporter) QueueLen() (entries int, bytes int64) { return e.q.len() }

// Close writes the queue position to disk, closes the queue and the connection.
// Run returns after Close; Enqueue fails with ErrClosed.
func (e *Exporter) Close() error {
	e.closeOnce.Do(func() { e.closeErr = errors.Join(e.q.close(), e.sender.close()) })
	return e.closeErr
}
