package otlpexport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
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
		log.Info("Opened export queue", "queueDir", cfg.QueueDir, "entries", len(ents),
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
// several records (one write, one fsync). When the queue is full the oldest records
// are dropped and their data points counted.
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
	buf := make([]byte, 0, size+len(chunks)*recordHeaderSize)
	ents := make([]entry, 0, len(chunks))
	for _, c := range chunks {
		start := len(buf)
		buf = append(buf, make([]byte, recordHeaderSize)...)
		// MetricsData and ExportMetricsServiceRequest have the same wire format: a
		// repeated resource_metrics field 1.
		var err error
		buf, err = cached.MarshalAppend(buf, &metricspb.MetricsData{ResourceMetrics: c})
		if err != nil {
			return fmt.Errorf("marshalling metrics: %w", err)
		}
		if len(buf)-start-recordHeaderSize > maxPayload {
			return fmt.Errorf("a single data point of %d bytes exceeds the queue record limit", len(buf)-start-recordHeaderSize)
		}
		points := countPoints(c)
		sealRecord(buf[start:], points, now)
		ents = append(ents, entry{size: int64(len(buf) - start), points: points, enqueued: now})
	}
	return e.q.append(buf, ents)
}

// EnqueueEncoded is Enqueue for a batch the caller has already encoded:
// metricsData is a MetricsData (or ExportMetricsServiceRequest) message holding
// dataPoints data points. It is queued as is, with the same durability, bounds and
// metrics as Enqueue; a batch larger than MaxBatchBytes is split at data point
// boundaries without decoding the points. metricsData is copied: the caller may
// reuse it once EnqueueEncoded returns.
func (e *Exporter) EnqueueEncoded(metricsData []byte, dataPoints int) error {
	if len(metricsData) == 0 {
		return nil
	}
	now := time.Now().UnixNano()
	// The records are written from metricsData and the split framing without
	// building a copy of the batch: a disk queue writes them out before returning,
	// the memory queue copies them.
	if len(metricsData) <= e.cfg.MaxBatchBytes {
		points := uint64(max(dataPoints, 0))
		var hdr [recordHeaderSize]byte
		rec := sealParts(&hdr, [][]byte{metricsData}, points, now)
		return e.q.appendRecords([]record{rec}, []entry{{size: int64(recordHeaderSize + len(metricsData)), points: points, enqueued: now}})
	}
	chunks, err := splitEncoded(metricsData, e.cfg.MaxBatchBytes)
	if err != nil {
		return fmt.Errorf("splitting encoded metrics: %w", err)
	}
	hdrs := make([][recordHeaderSize]byte, len(chunks))
	recs := make([]record, 0, len(chunks))
	ents := make([]entry, 0, len(chunks))
	for i, c := range chunks {
		parts := chunkParts(c)
		rec := sealParts(&hdrs[i], parts, c.points, now)
		size := 0
		for _, p := range parts {
			size += len(p)
		}
		if size > maxPayload {
			return fmt.Errorf("a single data point of %d bytes exceeds the queue record limit", size)
		}
		recs = append(recs, rec)
		ents = append(ents, entry{size: int64(recordHeaderSize + size), points: c.points, enqueued: now})
	}
	return e.q.appendRecords(recs, ents)
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
			e.log.Error("Reading the export queue failed, retrying", "error", err)
			if !sleep(ctx, e.q.done, bo.next(0)) {
				return nil
			}
			continue
		}
		if b.lastSeq >= isolateUntil {
			isolateUntil = 0
		}
		out := e.export(ctx, b)
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

// export sends b once and removes it from the queue when acknowledged or rejected.
func (e *Exporter) export(ctx context.Context, b batch) outcome {
	start := time.Now()
	ps, err := e.sender.send(ctx, b.payload)
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
			e.log.Warn("Receiver rejected part of an export", "rejectedDataPoints", ps.rejected, "message", ps.message)
		} else if ps.message != "" {
			e.log.Info("Receiver accepted an export with a warning", "message", ps.message)
		}
		return outcome{done: true}
	}
	retry, hint := isRetryable(err)
	if retry {
		e.m.requests.WithLabelValues(resultRetryableError).Inc()
		e.log.Warn("Export failed, retrying", "error", err, "dataPoints", b.points)
		return outcome{retryAfter: hint}
	}
	e.m.requests.WithLabelValues(resultPermanentError).Inc()
	if b.records > 1 {
		e.log.Warn("Receiver rejected a merged export, resending its records one by one", "error", err, "records", b.records)
		return outcome{isolate: true}
	}
	e.q.remove(b, reasonPermanentError)
	e.log.Error("Receiver rejected an export, dropping it", "error", err, "dataPoints", b.points)
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
