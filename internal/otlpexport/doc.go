// Package otlpexport delivers OTLP metrics (already converted from scrapes) to an
// OTLP receiver over gRPC or HTTP/protobuf without losing samples across receiver
// outages and process restarts.
//
// # Flow
//
// Enqueue splits a scrape batch into records of at most Config.MaxBatchBytes,
// compresses each once, writes them to a bounded queue and returns; it never waits for the network. Run sends the
// queue in order, one request at a time, merging consecutive records up to
// MaxBatchBytes: a marshalled ExportMetricsServiceRequest is a sequence of
// resource_metrics fields, so concatenated records are a valid, merged request, sent
// as stored without decoding. A record leaves the queue only when the receiver
// acknowledged it (at-least-once), when the receiver rejected it permanently, or when
// the queue is full and it is the oldest.
//
// Retries follow the OTLP specification: gRPC Canceled, DeadlineExceeded, Aborted,
// OutOfRange, Unavailable, DataLoss (ResourceExhausted only with RetryInfo), HTTP
// 429, 502, 503, 504 and transport errors are retried with exponential backoff and
// jitter, honouring Retry-After and RetryInfo up to RetryMax. Unlike the
// specification, authentication failures (Unauthenticated, PermissionDenied, 401,
// 403) and 408 are retried too: an expired credential is an outage, not bad data.
// Any other error drops the batch, counted; if it held several merged records they
// are first resent one by one, so only the record the receiver refuses is dropped.
//
// Shut down by cancelling Run's context, waiting for Run to return, then calling
// Close. A request acknowledged after Close is not recorded and is sent again after a
// restart.
//
// # Queue format (QueueDir set)
//
// The queue directory holds append-only segment files named "<20-digit id>.seg", an
// "ack" file and a "lock" file (flock: one exporter per directory). A segment starts
// with the 8-byte header "TOTQSEG1" followed by records:
//
//	offset size field
//	0      4    magic: "OTQR", "OTQG" or "OTQZ" (the payload's encoding)
//	4      4    CRC-32C (Castagnoli) of bytes [8, 28+length)
//	8      4    payload length, uint32 little endian (at most 256 MiB)
//	12     8    data points in the payload, uint64 little endian
//	20     8    enqueue time, Unix nanoseconds, int64 little endian
//	28     n    payload
//
// The payload of "OTQR" is a marshalled ExportMetricsServiceRequest. Records are
// compressed once, when queued, with Config.Compression: "OTQG" holds a gzip
// segment of the request (raw DEFLATE ended by a sync flush,
// otlpcompress.AppendSegment), "OTQZ" a zstd frame, each followed by an 8-byte
// trailer: the CRC-32 (IEEE) and the length of the uncompressed request, uint32
// little endian. Run merges consecutive records of one encoding (up to
// MaxBatchBytes uncompressed) and sends them as stored: gzip segments joined into
// one gzip member (header, segments, final empty block, combined CRC-32, length),
// zstd frames one after the other. Records of another encoding than the
// configured one (the flag changed across a restart) are recompressed when sent.
//
// The ack file (20 bytes: segment id and offset, both uint64 little endian, and a
// CRC-32C of the two) says that every record before that position has been consumed
// (sent, rejected or dropped). Segments wholly before it are deleted. A missing or
// damaged ack file means "nothing consumed": records are sent again, none is lost.
//
// Recovery on New reads every segment, checks each record's magic, length and CRC,
// skips records before the ack position, and on a bad record counts it
// (queue_corrupt_records_total, and its data points in
// queue_dropped_data_points_total{reason="corrupt"} when its header is plausible) and
// resynchronises at the next record magic that starts a valid record, so a torn tail
// or a damaged record in the middle costs only that record. A damaged tail is cut
// off, so it is counted once; damage in the middle of a segment is counted again if
// the process restarts before the segment is consumed. After a restart writes go to a
// new segment, never behind a torn record. A record that fails its checks when read
// for sending is dropped and counted the same way.
//
// # Durability
//
// Enqueue writes all records of a batch with one write and one fsync before it
// returns (creating a segment also fsyncs the directory): once Enqueue returned nil,
// neither a process crash nor a power loss loses the batch. At a 15 s scrape interval
// one fsync per batch is negligible, so there is no group commit. A failed write or
// fsync returns an error and leaves the batch out of the queue. The ack file is
// rewritten after every acknowledged request without fsync (Close syncs it): a
// process crash loses nothing and resends nothing; a power loss may resend batches
// acknowledged shortly before it (duplicates, never loss). A record being sent when
// the full queue drops it is counted as dropped even if that send succeeds.
//
// Disk use stays below QueueMaxBytes plus one partly consumed segment
// (QueueMaxBytes/16, at least 64 KiB, at most 64 MiB) plus 8 bytes per segment. Without
// QueueDir the same bound applies to memory and a restart loses the queue.
//
// # Metrics
//
// With namespace ns (series names "<ns>_<name>"; without namespace just "<name>"):
//
//	export_requests_total{result=success|retryable_error|permanent_error}  export attempts
//	export_duration_seconds                    histogram of export attempt durations
//	export_data_points_total                   data points acknowledged by the receiver
//	queue_entries                              records in the queue
//	queue_bytes                                bytes of those records, headers included
//	queue_oldest_age_seconds                   age of the oldest queued record, 0 if none
//	queue_dropped_data_points_total{reason=full|permanent_error|corrupt}
//	queue_corrupt_records_total                damaged records skipped
//	partial_success_rejected_data_points_total data points a receiver rejected in a partial success
//
// The generated go.opentelemetry.io/proto/otlp/collector/metrics/v1 package is not
// used: it also holds a grpc-gateway handler, which would link grpc-gateway into the
// daemon. Requests are built as metricspb.MetricsData (the same wire format) and the
// two-field response is decoded by hand.
package otlpexport
